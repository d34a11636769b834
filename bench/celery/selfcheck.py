"""Checks workloads.py against the reference vectors of docs/task-types.md; exits 1 on a mismatch.

    /usr/bin/python3 bench/celery/selfcheck.py          (bench-compare runs it before the Celery bench)
"""

import sys

import workloads

# (workload, payload, expected output): the reference vectors of docs/task-types.md
SHA = {"size_kb": 1024, "rounds": 32}
VECTORS = [
    ("noop", {}, {}),
    ("sleep", {"ms": 1}, {}),
    ("sha256", dict(SHA, seed=0), {"digest": "1371ec7492f973e17aa9165d10539ad9c3a4700c6fe5488f36e0df07370ebfe9"}),
    ("sha256", dict(SHA, seed=7), {"digest": "1031ff50e74edab1206d326f41a90b9132aed13d5e613a77aaac89d57a379128"}),
    ("sieve", {"limit": 2_000_000}, {"count": 148933}),
    ("heat", {"n": 32, "steps": 50, "seed": 0}, {"mean": 0.32640884227560912, "max": 0.5090895074556907}),
    ("heat", {"n": 32, "steps": 50, "seed": 7}, {"mean": 0.32615876684385936, "max": 0.51067139924105542}),
    ("heat", {"n": 256, "steps": 1000, "seed": 0}, {"mean": 0.4116977725986532, "max": 0.49960706784880227}),
    ("heat", {"n": 256, "steps": 1000, "seed": 7}, {"mean": 0.41170440981450385, "max": 0.49960706784880221}),
]

# The bench's own tasks 0 and 7 of each run are checked against these too (bench.py).
EXPECTED_BY_SEED = {
    (name, p.get("seed")): out
    for name, p, out in VECTORS
    if name in ("sha256", "heat") and p == workloads.payload(name, p["seed"])
}


def matches(name, got, expected):
    """Exact for everything; heat to a relative 1e-12 (this Python matches bit for bit)."""
    if name != "heat":
        return got == expected
    return set(got) == set(expected) and all(abs(got[k] - expected[k]) <= 1e-12 * abs(expected[k]) for k in expected)


def main():
    failures = 0
    for name, p, expected in VECTORS:
        got = workloads.HANDLERS[name](p)
        ok = matches(name, got, expected)
        exact = got == expected
        print(f"{'ok  ' if ok else 'FAIL'} {name} {p} -> {got}" + ("" if exact or not ok else " (within 1e-12, not bit-exact)"))
        failures += not ok
    print(f"{len(VECTORS) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
