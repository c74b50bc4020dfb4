"""bench/broker/bench.py — the broker benchmark's driver (run it through
bench/broker/run, which checks the dependencies first). See bench/README.md,
"The broker (bench/broker/run)".

One redis-server (loopback, a free port, AOF with appendfsync everysec, no
RDB snapshots) serves every implementation; the data set is flushed before
each measurement. For each implementation, REPS times, interleaved:

  enqueue   the client program puts N no-op tasks, one call after another,
            while no worker runs; its own clock times the calls (not its
            start-up): tasks enqueued per second
  drain1    one worker process is started on that pre-filled queue; the
            driver polls Redis (every 2 ms) for the tasks left and times
            from the first poll that sees one gone to the first that sees
            none left: the tasks gone by then over that time (the worker's
            start-up is not in it)
  drain2    the same with two worker processes on a queue filled again
  latency   one worker, warmed up by one task; the client puts M tasks at
            RATE per second, each carrying the client's monotonic clock;
            each task pushes (its start - that stamp) onto a list: p50, p99.
            RATE is --lat-rate, or a quarter of what this implementation's
            one worker drained in this repetition when that is less (so it
            measures latency, not a backlog), and M at most 10 s of it (at
            least 20)

After each drain every task must have finished (its result stored): a run
that lost one fails.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Impl:
    """One implementation: its client command, its worker command, and how
    many of N tasks are left (from Redis, O(1))."""

    def __init__(self, name, label, n, client, worker, left, done_check):
        self.name, self.label, self.n = name, label, n
        self.client, self.worker = client, worker
        self.left, self.done_check = left, done_check


def impls(args, url):
    skein = os.environ.get("SKEIN", os.path.join(ROOT, "build/bin/release/skein")).split()
    out = []

    def sk(name, conc, n):
        def worker(i):
            return skein + ["worker", "--broker", url, "--tasks", os.path.join(HERE, "tasks.skein.lua"),
                            "--queue", "bench", "--name", "w%d" % i] + (["--concurrency", str(conc)] if conc else [])
        label = "skein worker" + (" --concurrency %d (prefetch %d)" % (conc, 4 * conc) if conc
                                  else " (defaults: concurrency 1, prefetch 4)")
        return Impl(name, label, n,
                    lambda *a: skein + [os.path.join(HERE, "client.skein.lua")] + list(a), worker,
                    lambda r, n: n - int(r.hget("skein:stats:bench", "done") or 0),
                    lambda r, n: int(r.hget("skein:stats:bench", "done") or 0) == n)

    def count_keys(r, pattern):
        return sum(1 for _ in r.scan_iter(match=pattern, count=1000))

    def celery(name, pool, n):
        def worker(i):
            return [PY, "-m", "celery", "-A", "celery_app", "worker", "-P", pool, "-c", "1",
                    "-n", "w%d@%%h" % i, "--loglevel", "WARNING",
                    "--without-gossip", "--without-mingle", "--without-heartbeat"]
        return Impl(name, "celery worker -P %s -c 1, acks_late, Redis results" % pool, n,
                    lambda *a: [PY, os.path.join(HERE, "celery_app.py")] + list(a), worker,
                    lambda r, n: r.llen("celery") + r.hlen("unacked"),
                    lambda r, n: count_keys(r, "celery-task-meta-*") == n)

    def rq(name, cls, n):
        def worker(i):
            return ["/usr/bin/rq", "worker", "--url", url, "--name", "w%d" % i, "--logging_level", "WARNING"] + \
                (["--worker-class", cls] if cls else [])
        return Impl(name, "rq worker" + (" -w " + cls if cls else " (forks per job)"), n,
                    lambda *a: [PY, os.path.join(HERE, "rq_app.py")] + list(a), worker,
                    lambda r, n: n - r.zcard("rq:finished:default"),
                    lambda r, n: r.zcard("rq:finished:default") == n)

    table = {
        "skein": lambda: sk("skein", None, args.n_skein),
        "skein16": lambda: sk("skein16", 16, args.n_skein),
        "celery": lambda: celery("celery", "prefork", args.n_celery),
        "celery_solo": lambda: celery("celery_solo", "solo", args.n_celery),
        "rq": lambda: rq("rq", None, args.n_rq),
        "rq_simple": lambda: rq("rq_simple", "rq.SimpleWorker", args.n_rq_simple),
    }
    for name in args.only.split(","):
        if name not in table:
            sys.exit("bench/broker: unknown implementation %r (known: %s)" % (name, ", ".join(table)))
        out.append(table[name]())
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="skein-brokerbench-")
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d" % self.port
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise SystemExit("bench/broker: redis-server did not start")
        self.env = dict(os.environ, BENCH_REDIS_URL=self.url, BENCH_REDIS_PORT=str(self.port),
                        PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.workers = []

    def close(self):
        self.stop_workers()
        self.redis_proc.terminate()
        try:
            self.redis_proc.wait(10)
        except subprocess.TimeoutExpired:
            self.redis_proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def flush(self):
        self.r.flushall()

    def client(self, impl, *argv, timeout=600):
        p = subprocess.run(impl.client(*[str(a) for a in argv]), cwd=HERE, env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        line = next((l for l in p.stdout.splitlines() if l.startswith("BENCH ")), None)
        if p.returncode != 0 or line is None:
            raise RuntimeError("%s client %s failed (exit %d): %s" % (impl.name, argv, p.returncode,
                                                                       p.stderr[-600:]))
        return dict(kv.split("=", 1) for kv in line.split()[1:])

    def start_workers(self, impl, k):
        for i in range(k):
            log = open(os.path.join(self.dir, "%s-w%d.log" % (impl.name, i)), "ab")
            self.workers.append(subprocess.Popen(impl.worker(i), cwd=HERE, env=self.env,
                                                 stdout=log, stderr=log, start_new_session=True))
            log.close()

    def stop_workers(self):
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.workers:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the worker's own children too
            except ProcessLookupError:
                pass
            p.wait()
        self.workers = []

    def check_workers(self, impl):
        for p in self.workers:
            if p.poll() is not None:
                raise RuntimeError("%s: a worker exited (%d); see its log in %s" % (impl.name, p.returncode,
                                                                                     self.dir))

    def enqueue(self, impl):
        self.flush()
        kv = self.client(impl, "enqueue", impl.n)
        return impl.n / float(kv["time"])

    def drain(self, impl, k):
        """Tasks/s of k worker processes draining a pre-filled queue."""
        n = impl.n
        self.flush()
        self.client(impl, "enqueue", n)
        if impl.left(self.r, n) != n:
            raise RuntimeError("%s: %d tasks queued, %d left before any worker ran" % (impl.name, n,
                                                                                       impl.left(self.r, n)))
        self.start_workers(impl, k)
        try:
            t0 = t1 = None
            gone0 = 0
            deadline = time.monotonic() + self.args.timeout
            while True:
                left = impl.left(self.r, n)
                t = time.monotonic()
                if t0 is None and left < n:
                    t0, gone0 = t, left
                if left <= 0:
                    t1 = t
                    break
                if t > deadline:
                    raise RuntimeError("%s: %d of %d tasks left after %d s" % (impl.name, left, n,
                                                                               self.args.timeout))
                self.check_workers(impl)
                time.sleep(0.002)
            # Every task ran and its result was stored (nothing lost).
            ok = False
            for _ in range(100):
                if impl.done_check(self.r, n):
                    ok = True
                    break
                time.sleep(0.05)
            if not ok:
                raise RuntimeError("%s: not every one of %d tasks finished" % (impl.name, n))
        finally:
            self.stop_workers()
        # gone0 = tasks left at the first poll that saw some gone.
        if t1 <= t0:
            raise RuntimeError("%s: drained between two polls; raise N" % impl.name)
        return gone0 / (t1 - t0)

    def wait_lat(self, impl, m):
        deadline = time.monotonic() + self.args.timeout
        while self.r.llen("bench:lat") < m:
            if time.monotonic() > deadline:
                raise RuntimeError("%s: %d of %d latency tasks ran" % (impl.name, self.r.llen("bench:lat"), m))
            self.check_workers(impl)
            time.sleep(0.01)

    def latency(self, impl, rate, m):
        self.flush()
        self.start_workers(impl, 1)
        try:
            self.client(impl, "latency", 1, 1)  # warm-up: the worker is up and ready
            self.wait_lat(impl, 1)
            self.r.delete("bench:lat")
            self.client(impl, "latency", m, rate)
            self.wait_lat(impl, m)
            lat = sorted(float(x) for x in self.r.lrange("bench:lat", 0, -1))
        finally:
            self.stop_workers()
        return lat[int(0.5 * (m - 1))] * 1e3, lat[int(0.99 * (m - 1))] * 1e3

    @staticmethod
    def latency_plan(args, drain1):
        rate = args.lat_rate if drain1 is None else min(args.lat_rate, drain1 / 4)
        return rate, min(args.lat_n, max(20, int(rate * 10)))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


METRICS = [  # key, header, higher is better
    ("enqueue", "enqueue/s", True),
    ("drain1", "1 worker tasks/s", True),
    ("drain2", "2 workers tasks/s", True),
    ("p50", "start p50 ms", False),
    ("p99", "start p99 ms", False),
]


def fmt(v):
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def main():
    ap = argparse.ArgumentParser(prog="bench/broker/run")
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--only", default="skein,skein16,celery,celery_solo,rq,rq_simple",
                    help="implementations, comma-separated")
    ap.add_argument("--n-skein", type=int, default=20000)
    ap.add_argument("--n-celery", type=int, default=2000)
    ap.add_argument("--n-rq", type=int, default=100)
    ap.add_argument("--n-rq-simple", type=int, default=2000)
    ap.add_argument("--lat-n", type=int, default=200, help="latency tasks per run")
    ap.add_argument("--lat-rate", type=float, default=20, help="latency tasks per second")
    ap.add_argument("--timeout", type=int, default=300, help="seconds a phase may take")
    ap.add_argument("--phases", default="enqueue,drain1,drain2,latency")
    args = ap.parse_args()
    phases = args.phases.split(",")

    b = Bench(args)
    todo = impls(args, b.url)
    res = {i.name: {m[0]: [] for m in METRICS} for i in todo}
    plans = {}
    load0 = loadavg()
    print("bench/broker: redis-server %s (AOF everysec), %d rep(s), load average %s" % (b.url, args.reps, load0),
          file=sys.stderr, flush=True)
    failed = False
    try:
        for rep in range(1, args.reps + 1):
            for impl in todo:
                try:
                    if "enqueue" in phases:
                        res[impl.name]["enqueue"].append(b.enqueue(impl))
                    if "drain1" in phases:
                        res[impl.name]["drain1"].append(b.drain(impl, 1))
                    if "drain2" in phases:
                        res[impl.name]["drain2"].append(b.drain(impl, 2))
                    if "latency" in phases:
                        d1 = res[impl.name]["drain1"]
                        rate, m = b.latency_plan(args, d1[-1] if len(d1) == rep else None)
                        plans.setdefault(impl.name, []).append("%d at %.3g/s" % (m, rate))
                        p50, p99 = b.latency(impl, rate, m)
                        res[impl.name]["p50"].append(p50)
                        res[impl.name]["p99"].append(p99)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    failed = True
                    print("bench/broker: %s rep %d FAILED: %s" % (impl.name, rep, e), file=sys.stderr, flush=True)
                    b.stop_workers()
                    continue
                print("bench/broker: rep %d %-11s %s" % (rep, impl.name, "  ".join(
                    "%s=%s" % (k, fmt(v[-1])) for k, v in res[impl.name].items() if v)), file=sys.stderr, flush=True)
    finally:
        b.close()
    load1 = loadavg()

    def med(v):
        return statistics.median(v) if v else None

    def best(v, hi):
        return (max(v) if hi else min(v)) if v else None

    print()
    print("Broker benchmark: %d rep(s); median (best); one redis-server, AOF everysec; load average %s at the "
          "start, %s at the end; %d cores" % (args.reps, load0, load1, os.cpu_count()))
    print("N: skein %d, celery %d, rq %d, rq SimpleWorker %d no-op tasks (drains: of a pre-filled queue)"
          % (args.n_skein, args.n_celery, args.n_rq, args.n_rq_simple))
    print()
    w = 20
    print("%-12s" % "" + "".join("%*s" % (w, h) for _, h, _ in METRICS))
    for impl in todo:
        row = "%-12s" % impl.name
        for key, _, hi in METRICS:
            v = res[impl.name][key]
            row += "%*s" % (w, "%s (%s)" % (fmt(med(v)), fmt(best(v, hi))) if v else "-")
        print(row)
    base = res.get("skein")
    if base:
        print()
        print("skein's advantage (median over median; rates: skein/peer, latencies: peer/skein; above 1: skein "
              "is better)")
        for impl in todo:
            if impl.name == "skein":
                continue
            row = "%-12s" % impl.name
            for key, _, hi in METRICS:
                a, p = med(base[key]), med(res[impl.name][key])
                row += "%*s" % (w, ("%.1fx" % ((a / p) if hi else (p / a))) if a and p else "-")
            print(row)
        targets = [("celery", 10), ("celery_solo", 10), ("rq", 20), ("rq_simple", 20)]
        print()
        for peer, k in targets:
            if peer in res and res[peer]["drain1"]:
                for sk in ("skein", "skein16"):
                    if sk in res and res[sk]["drain1"]:
                        x = med(res[sk]["drain1"]) / med(res[peer]["drain1"])
                        print("target: %s >= %dx %s per worker (1 worker tasks/s): %.1fx %s"
                              % (sk, k, peer, x, "ok" if x >= k else "MISS"))
    print()
    for impl in todo:
        print("  %-11s %s%s" % (impl.name, impl.label, "; latency tasks: " + ", ".join(plans[impl.name])
                                if impl.name in plans else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
