# N GETs of a small page with C in flight, as a gevent user writes it:
# the standard library monkey-patched, requests on one shared Session
# (its connection pool sized to C, so connections are reused), a
# gevent.pool.Pool of C greenlets. Prints "secs=<s> ok=<n>".
from gevent import monkey
monkey.patch_all()

import sys, time
import gevent.pool
import requests
from requests.adapters import HTTPAdapter

url, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = requests.Session()
s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=c))

def get(_):
    r = s.get(url)
    return r.status_code == 200 and len(r.content) > 0

pool = gevent.pool.Pool(c)
list(pool.imap_unordered(get, range(c)))      # warm: C connections up
t0 = time.perf_counter()
ok = sum(pool.imap_unordered(get, range(n)))
print("secs=%.4f ok=%d" % (time.perf_counter() - t0, ok))
