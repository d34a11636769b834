#!/usr/bin/python3
"""The Celery side of `make bench-compare`: runs one standard workload (docs/task-types.md) through a Celery worker that this
script starts and stops, and measures it the way `fleet-bench` measures Fleet (docs/benchmarks.md):

  throughput      N / (last date_done in Celery's result table - first submit)
  latency         date_done - submit time of that task: p50 / p95 / p99 (percentile_cont, linear)
  efficiency      CPU workloads: t1 x N / (wall x cores), t1 = the task function alone on one thread in this
                  process (1 warm-up + 5 runs, median; the smaller of wall and thread CPU)
  task share      t1(CPU) x N / CPU seconds of the worker processes
  peak RSS        VmHWM of every worker process (the main one and its pool children), reset at each run's start
  CPU seconds     utime+stime over the run: workers (main + children), rabbitmq and postgres (the processes
                  listening on the broker's and the database's ports, with their children), bench (this process)

It writes the same JSON shape and Markdown table as `fleet-bench` (bench/Fleet.Bench/BenchOutput.cs), so that
compare.py can put both side by side. Every task's result is checked: sieve/noop/sleep all of them, sha256 and heat
those of the reference seeds 0 and 7 (docs/task-types.md).

    . .fleet/env && /usr/bin/python3 bench/celery/bench.py --workload noop --count 2000 --runs 1 \\
        --json bench/results/x-celery-noop.json --markdown bench/results/x-celery-noop.md

Environment: FLEET_AMQP_URL and FLEET_PG_DSN (from .fleet/env, written by infra/local/services.sh).
"""

import argparse
import datetime
import json
import os
import pickle
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import celery  # noqa: E402
import kombu  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402
import sqlalchemy  # noqa: E402

import procstats  # noqa: E402
import selfcheck  # noqa: E402
import workloads  # noqa: E402

SCHEMA = "celery_bench"
QUEUE = "celery-bench"
RESULT_TABLE = f"{SCHEMA}.celery_taskmeta"
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")


def log(message):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM/SIGINT: leave through the finally blocks, which stop the worker this script started."""


def _on_signal(signum, _frame):
    raise Stop(f"signal {signum}")


# ------------------------------------------------------------------------------------------------ settings

def result_url(dsn):
    """db+postgresql://... (SQLAlchemy, psycopg2) from the libpq DSN in .fleet/env."""
    p = psycopg2.extensions.parse_dsn(dsn)
    user = urllib.parse.quote(p.get("user", ""), safe="")
    password = urllib.parse.quote(p.get("password", ""), safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"db+postgresql+psycopg2://{auth}{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{p['dbname']}"


def configure_environment():
    for key in ("FLEET_AMQP_URL", "FLEET_PG_DSN"):
        if not os.environ.get(key):
            sys.exit(f"bench.py: {key} is not set; source .fleet/env first (infra/local/services.sh start writes it)")
    os.environ["CELERY_BENCH_BROKER_URL"] = os.environ["FLEET_AMQP_URL"]
    os.environ["CELERY_BENCH_RESULT_URL"] = result_url(os.environ["FLEET_PG_DSN"])
    os.environ["CELERY_BENCH_SCHEMA"] = SCHEMA
    os.environ["CELERY_BENCH_QUEUE"] = QUEUE


def port_of(url_or_dsn, default):
    if "://" in url_or_dsn:
        return urllib.parse.urlsplit(url_or_dsn).port or default
    return int(psycopg2.extensions.parse_dsn(url_or_dsn).get("port", default))


# ------------------------------------------------------------------------------------------------- worker

class Worker:
    """A `celery worker` process of this script: started with a pool, found by pid, stopped by pid."""

    def __init__(self, pool, concurrency, pid_file, log_file):
        self.pool, self.concurrency, self.pid_file, self.log_file = pool, concurrency, pid_file, log_file
        self.process = None

    def start(self, timeout=120):
        ready = self.pid_file + ".ready"
        if os.path.exists(ready):
            os.unlink(ready)
        env = dict(os.environ, CELERY_BENCH_READY_FILE=ready, PYTHONPATH=HERE)
        cmd = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-P", self.pool, "-c", str(self.concurrency),
               "-Q", QUEUE, "-n", f"bench-{os.getpid()}@%h",
               # A lone worker: no gossip, mingle or heartbeat chatter with other workers (Celery's own advice
               # for a single node), and WARNING logs: no log line per task, as Fleet's workers write none.
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING", "-f", self.log_file]
        log(f"starting celery worker: -P {self.pool} -c {self.concurrency}")
        with open(self.log_file, "ab") as stderr:
            self.process = subprocess.Popen(cmd, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=stderr)
        self._write_pids()
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if self.process.poll() is not None:
                raise RuntimeError(f"the celery worker exited with {self.process.returncode}; log: {self.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker was not ready within {timeout} s; log: {self.log_file}")
            time.sleep(0.1)
        os.unlink(ready)
        self._write_pids()
        log(f"celery worker ready: pid {self.process.pid}, pool processes {self.children()}")

    def children(self):
        return procstats.children(self.process.pid) if self.process else []

    def pids(self):
        return [self.process.pid] + self.children()

    def _write_pids(self):
        # For the caller's trap (compare.sh): every pid of this worker, main first.
        with open(self.pid_file, "w") as f:
            f.write(" ".join(str(p) for p in self.pids()) + "\n")

    def stop(self, timeout=30):
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        pids = self.pids()
        log(f"stopping celery worker pid {self.process.pid} (warm shutdown)")
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log("the worker did not stop in time; SIGKILL to its pids")
        # Pool processes left behind (or all of them after the timeout) end by pid.
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.process = None
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------------------------- measuring

def percentile_cont(sorted_values, q):
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def single_task_time(name, repeats):
    """t1 of a CPU workload: the task function in this process on one thread, like SingleTaskTimer.cs."""
    handler = workloads.HANDLERS[name]
    wall, cpu = [], []
    for i in range(repeats + 1):
        p = workloads.payload(name, i)
        w0, c0 = time.perf_counter(), time.thread_time()
        handler(p)
        c1, w1 = time.thread_time(), time.perf_counter()
        if i > 0:  # the first run warms up (imports, first-touch allocations)
            wall.append((w1 - w0) * 1000)
            cpu.append((c1 - c0) * 1000)
    wall_ms, cpu_ms = statistics.median(wall), statistics.median(cpu)
    effective = min(wall_ms, cpu_ms) if cpu_ms > 0 else wall_ms
    return {"wallMs": wall_ms, "cpuMs": cpu_ms, "repeats": repeats, "effectiveMs": effective}


def bench_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def check_result(name, index, result):
    """True/False for a result that can be checked against a reference vector, None for one that cannot."""
    if name in ("noop", "sleep"):
        return result == {}
    if name == "sieve":
        return result == {"count": 148933}
    expected = selfcheck.EXPECTED_BY_SEED.get((name, index))
    return None if expected is None else selfcheck.matches(name, result, expected)


class Bench:
    def __init__(self, args):
        self.args = args
        self.cores = args.cores or os.cpu_count()
        self.db = psycopg2.connect(os.environ["FLEET_PG_DSN"])
        self.db.autocommit = True
        import tasks  # after configure_environment(): the app reads its settings at import
        self.tasks = tasks
        self.servers = {}
        for name, port in (("rabbitmq", port_of(os.environ["FLEET_AMQP_URL"], 5672)),
                           ("postgres", port_of(os.environ["FLEET_PG_DSN"], 5432))):
            pid = procstats.listener_pid(port)
            if pid is None:
                log(f"warning: no local process listens on {port}: {name} CPU is not measured")
            else:
                self.servers[name] = pid

    def prepare_database(self):
        with self.db.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        # Celery creates its tables on first use; create them here once, so no two pool processes race to do it.
        session = self.tasks.app.backend.ResultSession()
        session.close()

    def clear(self):
        with self.db.cursor() as cur:
            cur.execute(f"TRUNCATE {RESULT_TABLE}")

    def purge_queue(self):
        # Leftovers of an interrupted earlier run would be counted as this run's work; control.purge declares the
        # queue if needed and empties it (it does not need remote control).
        n = self.tasks.app.control.purge()
        if n:
            log(f"purged {n} leftover message(s) from queue {QUEUE}")

    def final_count(self, prefix):
        with self.db.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {RESULT_TABLE} WHERE task_id LIKE %s AND status = ANY(%s)",
                        (prefix + "%", list(FINAL_STATES)))
            return cur.fetchone()[0]

    def submit(self, name, count, prefix):
        task = self.tasks.TASKS[name]
        submitted = [0.0] * count
        for i in range(count):
            submitted[i] = time.time()
            task.apply_async((workloads.payload(name, i),), task_id=f"{prefix}{i:08d}")
        return submitted

    def warm_up(self, worker):
        # One round of noops through every pool slot: connections to RabbitMQ and PostgreSQL are open before
        # the clock starts (Fleet's workers are long-running and warm too).
        prefix = f"warmup-{uuid.uuid4().hex[:8]}-"
        n = min(worker.concurrency, 16) * 2
        self.submit("noop", n, prefix)
        self.wait(prefix, n, 120)
        self.clear()

    def wait(self, prefix, count, timeout):
        deadline = time.monotonic() + timeout
        while (done := self.final_count(prefix)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s with {done}/{count} tasks final")
            time.sleep(0.1)

    def run_once(self, worker, name, run, count, single):
        self.clear()
        pids = worker.pids()
        per_run_peak = all(procstats.try_reset_peak_rss(p) for p in pids)
        cpu_before = {p: procstats.cpu_seconds(p) or 0.0 for p in pids}
        worker_before = procstats.tree_cpu_seconds(worker.process.pid)
        servers_before = {k: procstats.tree_cpu_seconds(p) for k, p in self.servers.items()}
        bench_before = bench_cpu_seconds()

        prefix = f"{uuid.uuid4().hex[:12]}-"
        t0 = time.monotonic()
        submitted = self.submit(name, count, prefix)
        submit_seconds = time.monotonic() - t0
        self.wait(prefix, count, self.args.run_timeout)

        cpu = {"workers": max(0.0, procstats.tree_cpu_seconds(worker.process.pid) - worker_before)}
        for k, p in self.servers.items():
            cpu[k] = max(0.0, procstats.tree_cpu_seconds(p) - servers_before[k])
        cpu["bench"] = bench_cpu_seconds() - bench_before
        samples = [{"workerId": "celery-main" if i == 0 else f"celery-pool-{i}", "pid": p,
                    "peakRssBytes": procstats.peak_rss_bytes(p), "peakIsPerRun": per_run_peak,
                    "cpuSeconds": max(0.0, (procstats.cpu_seconds(p) or 0.0) - cpu_before[p])}
                   for i, p in enumerate(pids)]

        with self.db.cursor() as cur:
            cur.execute(f"SELECT task_id, status, date_done, result FROM {RESULT_TABLE} WHERE task_id LIKE %s",
                        (prefix + "%",))
            rows = cur.fetchall()
        done, latencies, ok, failed, checked, mismatches = [], [], 0, 0, 0, 0
        for task_id, status, date_done, result in rows:
            index = int(task_id[len(prefix):])
            finished = date_done.replace(tzinfo=datetime.timezone.utc).timestamp()
            done.append(finished)
            latencies.append((finished - submitted[index]) * 1000)
            if status != "SUCCESS":
                failed += 1
                continue
            ok += 1
            # Celery's database backend keeps the return value in a PickleType column (whatever the result
            # serializer): read it back the way Celery does.
            verdict = check_result(name, index, pickle.loads(bytes(result)))
            if verdict is not None:
                checked += 1
                mismatches += not verdict
        wall = max(done) - submitted[0] if done else 0.0
        latencies.sort()
        efficiency = single["effectiveMs"] / 1000 * len(rows) / (wall * self.cores) if single and wall > 0 else None
        useful = single["cpuMs"] / 1000 * len(rows) / cpu["workers"] if single and cpu["workers"] > 0 else None
        return {
            "run": run, "batchId": prefix.rstrip("-"), "tasks": len(rows), "succeeded": ok, "notSucceeded": failed,
            "wallSeconds": wall, "submitSeconds": submit_seconds, "throughput": len(rows) / wall if wall > 0 else 0.0,
            "latencyP50Ms": percentile_cont(latencies, 0.50), "latencyP95Ms": percentile_cont(latencies, 0.95),
            "latencyP99Ms": percentile_cont(latencies, 0.99), "efficiency": efficiency,
            "usefulWorkerCpuFraction": useful, "workers": samples, "cpuSeconds": cpu,
            "checkedResults": checked, "mismatchedResults": mismatches,
        }

    def run(self):
        a = self.args
        started = datetime.datetime.now(datetime.timezone.utc)
        single = None
        if a.workload in workloads.CPU_WORKLOADS:
            single = single_task_time(a.workload, a.single_runs)
            log(f"{a.workload}: single task on one thread: median {single['wallMs']:.2f} ms wall, "
                f"{single['cpuMs']:.2f} ms CPU ({single['repeats']} runs)")
        self.prepare_database()
        self.purge_queue()
        worker = Worker(a.pool, a.concurrency, a.pid_file, a.worker_log)
        runs = []
        try:
            worker.start()
            self.warm_up(worker)
            for run in range(1, a.runs + 1):
                r = self.run_once(worker, a.workload, run, a.count, single)
                runs.append(r)
                log(f"{a.workload} closed run {run}: {r['succeeded']}/{r['tasks']} ok in {r['wallSeconds']:.2f} s = "
                    f"{r['throughput']:.1f} tasks/s, latency p50 {r['latencyP50Ms']:.1f} / p95 {r['latencyP95Ms']:.1f} "
                    f"/ p99 {r['latencyP99Ms']:.1f} ms"
                    + (f", efficiency {r['efficiency']:.3f}" if r["efficiency"] is not None else "")
                    + (f" (task work {r['usefulWorkerCpuFraction']:.2f} of worker CPU)"
                       if r["usefulWorkerCpuFraction"] is not None else "")
                    + ", CPU s " + " ".join(f"{k} {v:.1f}" for k, v in r["cpuSeconds"].items())
                    + f", results checked {r['checkedResults']}, wrong {r['mismatchedResults']}")
            processes = len(worker.pids())
        finally:
            worker.stop()
        return {
            "startedAt": started.isoformat(),
            "machine": {"host": socket.gethostname(), "processorCount": os.cpu_count(), "coresUsed": self.cores,
                        "os": f"{platform.system()} {platform.release()}",
                        "runtime": f"CPython {platform.python_version()}, Celery {celery.__version__}, kombu "
                                   f"{kombu.__version__}, SQLAlchemy {sqlalchemy.__version__}, psycopg2 "
                                   f"{psycopg2.__version__.split()[0]}",
                        "cpuModel": procstats.cpu_model(), "workers": processes},
            "system": "celery",
            "pool": {"name": a.pool, "concurrency": a.concurrency},
            "workloads": [{"workload": a.workload, "mode": "closed", "count": a.count, "arrivalRate": None,
                           "singleTask": single, "runs": runs,
                           "medianThroughput": statistics.median(r["throughput"] for r in runs)}],
            "rawBroker": [],
            "rawBrokerMedianRate": None,
        }


def markdown(report):
    """The table of BenchOutput.ToMarkdown, for the Celery report."""
    m = report["machine"]
    started = datetime.datetime.fromisoformat(report["startedAt"])
    out = [f"# celery bench, {started:%Y-%m-%d %H:%M} UTC", "",
           f"Host `{m['host']}`: {m['processorCount']} logical CPUs ({m['cpuModel'] or 'unknown CPU'}), efficiency over "
           f"{m['coresUsed']} cores; {m['os']}; {m['runtime']}; one worker, pool {report['pool']['name']} x "
           f"{report['pool']['concurrency']}, {m['workers']} process(es).", "",
           "| workload | mode | N | run | ok | wall s | submit s | tasks/s | p50 ms | p95 ms | p99 ms | efficiency | "
           "task share of worker CPU | worker peak RSS MB | CPU s workers | CPU s rabbitmq | CPU s postgres | CPU s bench |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    for w in report["workloads"]:
        for r in w["runs"]:
            rss = " / ".join("?" if s["peakRssBytes"] is None else f"{s['peakRssBytes'] / 1048576:.0f}"
                             for s in r["workers"]) or "-"
            c = r["cpuSeconds"]
            out.append(f"| {w['workload']} | {w['mode']} | {w['count']} | {r['run']} | {r['succeeded']} | "
                       f"{r['wallSeconds']:.2f} | {r['submitSeconds']:.2f} | {r['throughput']:.1f} | "
                       f"{r['latencyP50Ms']:.1f} | {r['latencyP95Ms']:.1f} | {r['latencyP99Ms']:.1f} | "
                       f"{num(r['efficiency'], '.3f')} | {num(r['usefulWorkerCpuFraction'], '.2f')} | {rss} | "
                       f"{num(c.get('workers'), '.1f')} | {num(c.get('rabbitmq'), '.1f')} | "
                       f"{num(c.get('postgres'), '.1f')} | {num(c.get('bench'), '.1f')} |")
    singles = [w for w in report["workloads"] if w["singleTask"]]
    if singles:
        out += ["", "Single-task time (the task function in the bench process on one thread, median; efficiency "
                    "uses the smaller of wall and CPU):", "", "| workload | wall ms | CPU ms | runs |",
                "|---|---:|---:|---:|"]
        out += [f"| {w['workload']} | {w['singleTask']['wallMs']:.2f} | {w['singleTask']['cpuMs']:.2f} | "
                f"{w['singleTask']['repeats']} |" for w in singles]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", "-w", required=True, choices=workloads.NAMES)
    parser.add_argument("--count", "-n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool", default=None, help="celery pool (default: prefork; threads for sleep)")
    parser.add_argument("--concurrency", "-c", type=int, default=None,
                        help="pool size (default: the cores; 200 threads for sleep)")
    parser.add_argument("--cores", type=int, default=None, help="cores for parallel efficiency (default: all)")
    parser.add_argument("--single-runs", type=int, default=5)
    parser.add_argument("--run-timeout", type=int, default=3600)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--pid-file", default=os.path.join(tempfile.gettempdir(), f"celery-bench-{os.getpid()}.pids"))
    parser.add_argument("--worker-log", default=os.path.join(tempfile.gettempdir(), "celery-bench-worker.log"))
    args = parser.parse_args()
    if args.count < 1 or args.runs < 1:
        parser.error("--count and --runs must be at least 1")
    io_bound = args.workload == "sleep"
    args.pool = args.pool or ("threads" if io_bound else "prefork")
    args.concurrency = args.concurrency or (200 if io_bound else os.cpu_count())

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    configure_environment()
    report = Bench(args).run()
    md = markdown(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    print(md)
    wrong = sum(r["mismatchedResults"] + r["notSucceeded"] for r in report["workloads"][0]["runs"])
    if wrong:
        log(f"error: {wrong} task(s) failed or returned a wrong result")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Stop as stop:
        log(f"stopped by {stop}")
        sys.exit(130)
