#!/usr/bin/python3
"""One table of Fleet against Celery from the JSON reports of `fleet-bench` and bench/celery/bench.py: per workload
and metric the median over the runs (with the range when there are several), and the ratio Fleet / Celery.

    /usr/bin/python3 bench/celery/compare.py --celery A.json B.json --fleet C.json D.json \\
        --json bench/results/X-compare.json --markdown bench/results/X-compare.md
"""

import argparse
import datetime
import json
import statistics
import sys

ORDER = ("noop", "sha256", "sieve", "heat", "sleep")

# (key, label, better, value of one run or None); "better" says which way the ratio favours Fleet.
METRICS = [
    ("throughput", "tasks/s", "higher", lambda r: r["throughput"]),
    ("notSucceeded", "tasks not succeeded", "lower", lambda r: r["notSucceeded"]),
    ("latencyP50Ms", "latency p50 ms", "lower", lambda r: r["latencyP50Ms"]),
    ("latencyP95Ms", "latency p95 ms", "lower", lambda r: r["latencyP95Ms"]),
    ("latencyP99Ms", "latency p99 ms", "lower", lambda r: r["latencyP99Ms"]),
    ("efficiency", "parallel efficiency", "higher", lambda r: r.get("efficiency")),
    ("usefulWorkerCpuFraction", "task share of worker CPU", "higher", lambda r: r.get("usefulWorkerCpuFraction")),
    ("workerPeakRssMb", "worker peak RSS MB (sum of processes)", "lower",
     lambda r: sum(w["peakRssBytes"] for w in r["workers"] if w.get("peakRssBytes")) / 1048576 or None),
    ("workerCpuPer1000", "worker CPU s per 1,000 tasks", "lower", lambda r: per_1000(r, ("workers",))),
    ("allCpuPer1000", "CPU s per 1,000 tasks, workers + RabbitMQ + PostgreSQL + producer", "lower",
     lambda r: per_1000(r, ("workers", "rabbitmq", "postgres", "bench"))),
]


def per_1000(run, components):
    cpu = run.get("cpuSeconds") or {}
    if not run.get("tasks") or not all(c in cpu for c in components):
        return None
    return sum(cpu[c] for c in components) * 1000 / run["tasks"]


def closed_loop(paths):
    """workload -> (closed-loop WorkloadResult, report) from the given reports (Fleet's noop also has an open loop)."""
    found = {}
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        for w in report["workloads"]:
            if w["mode"] == "closed":
                found[w["workload"]] = (w, report)
    return found


def summary(workload_result, metric):
    values = [v for v in (metric(r) for r in workload_result["runs"]) if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def fmt(value):
    if value is None:
        return "-"
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def cell(s):
    if s is None:
        return "-"
    if len(s["runs"]) > 1 and s["min"] != s["max"]:
        return f"{fmt(s['median'])} ({fmt(s['min'])} to {fmt(s['max'])})"
    return fmt(s["median"])


def compare(celery_paths, fleet_paths):
    celery, fleet = closed_loop(celery_paths), closed_loop(fleet_paths)
    rows = []
    for name in [w for w in ORDER if w in celery or w in fleet]:
        c, f = celery.get(name), fleet.get(name)
        for key, label, better, metric in METRICS:
            cs = summary(c[0], metric) if c else None
            fs = summary(f[0], metric) if f else None
            if cs is None and fs is None:
                continue
            ratio = fs["median"] / cs["median"] if cs and fs and cs["median"] else None
            rows.append({"workload": name, "count": (f or c)[0]["count"], "metric": key, "label": label,
                         "better": better, "celery": cs, "fleet": fs, "fleetOverCelery": ratio})
    raw = next((r.get("rawBrokerMedianRate") for _, r in fleet.values() if r.get("rawBrokerMedianRate")), None)
    noop = {side: summary(d["noop"][0], METRICS[0][3]) for side, d in (("celery", celery), ("fleet", fleet))
            if "noop" in d}
    fractions = {side: s["median"] / raw for side, s in noop.items() if raw and s}
    machine = next(iter(fleet.values() or celery.values()))[1]["machine"] if (fleet or celery) else {}
    return {
        "createdAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": machine,
        "celeryRuntime": next(iter(celery.values()))[1]["machine"]["runtime"] if celery else None,
        "fleetRuntime": next(iter(fleet.values()))[1]["machine"]["runtime"] if fleet else None,
        "pools": {name: r.get("pool") for name, (_, r) in celery.items()},
        "rows": rows,
        "rawBrokerMedianRate": raw,
        "noopFractionOfRawBroker": fractions,
        "sources": {"celery": list(celery_paths), "fleet": list(fleet_paths)},
    }


def markdown(result):
    m = result["machine"]
    out = [f"# Fleet / Celery, {result['createdAt'][:16].replace('T', ' ')} UTC", "",
           f"Host `{m.get('host')}`: {m.get('processorCount')} logical CPUs ({m.get('cpuModel') or 'unknown CPU'}). "
           f"Fleet: {result['fleetRuntime']}. Celery: {result['celeryRuntime']}. "
           "Medians over the runs, the range in parentheses; closed loop (all tasks submitted at once).", "",
           "| workload | N | metric | better | Celery | Fleet | Fleet / Celery |",
           "|---|---:|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        ratio = "-" if r["fleetOverCelery"] is None else f"{r['fleetOverCelery']:.2f}"
        out.append(f"| {r['workload']} | {r['count']} | {r['label']} | {r['better']} | {cell(r['celery'])} | "
                   f"{cell(r['fleet'])} | {ratio} |")
    pools = ", ".join(f"{w}: {p['name']} x {p['concurrency']}" for w in ORDER if (p := result["pools"].get(w)))
    out += ["", f"Celery pools: {pools}."]
    if result["rawBrokerMedianRate"]:
        fr = result["noopFractionOfRawBroker"]
        out += [f"Raw broker (RabbitMQ.Client, confirms + acks, measured by fleet-bench before each noop run): median "
                f"{result['rawBrokerMedianRate']:,.0f} msg/s; noop as a fraction of it: Fleet "
                f"{fmt(fr.get('fleet'))}, Celery {fmt(fr.get('celery'))}."]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--celery", nargs="+", default=[])
    parser.add_argument("--fleet", nargs="+", default=[])
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    if not args.celery and not args.fleet:
        parser.error("give --celery and/or --fleet reports")
    result = compare(args.celery, args.fleet)
    md = markdown(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
