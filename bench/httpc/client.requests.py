# N GETs of a small page with C in flight: requests in a ThreadPoolExecutor
# of C threads, a requests.Session per thread (so connections are reused).
# Prints "secs=<s> ok=<n>".
import sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import requests

url, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
local = threading.local()

def get(_):
    s = getattr(local, "s", None)
    if s is None:
        s = local.s = requests.Session()
    r = s.get(url)
    return r.status_code == 200 and len(r.content) > 0

with ThreadPoolExecutor(c) as ex:
    list(ex.map(get, range(c)))          # warm: every thread's connection up
    t0 = time.perf_counter()
    ok = sum(ex.map(get, range(n)))
    print("secs=%.4f ok=%d" % (time.perf_counter() - t0, ok))
