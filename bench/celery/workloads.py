"""The standard workloads (docs/task-types.md) in Python: the same inputs, outputs and algorithms as Fleet's built-in handlers
(src/Fleet.Tasks/BuiltIn), so that the Celery side of `make bench-compare` does the same work.

Plain functions of a JSON-like dict to a JSON-like dict; tasks.py wraps them as Celery tasks, bench.py times them
alone for the single-task time, selfcheck.py checks them against the reference vectors of docs/task-types.md.
"""

import hashlib
import time

import numpy

NAMES = ("noop", "sha256", "sieve", "heat", "sleep")
CPU_WORKLOADS = ("sha256", "sieve", "heat")


def payload(name, index):
    """The payload of task `index` of a run, as StandardWorkloads.Payload (src/Fleet.Tasks/BuiltIn) builds it (seed = task index)."""
    if name == "noop":
        return {}
    if name == "sha256":
        return {"size_kb": 1024, "rounds": 32, "seed": index}
    if name == "sieve":
        return {"limit": 2_000_000}
    if name == "sleep":
        return {"ms": 50}
    if name == "heat":
        return {"n": 256, "steps": 1000, "seed": index}
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(NAMES)}")


def noop(_payload):
    return {}


def sha256(p):
    # The reference generator, as written: building the data is part of the task and, in CPython, most of it.
    size, rounds, seed = p["size_kb"] * 1024, p["rounds"], p["seed"]
    data = bytes((i * 31 + seed) & 0xFF for i in range(size))
    digest = b""
    for _ in range(rounds):
        h = hashlib.sha256()
        h.update(digest)
        h.update(data)
        digest = h.digest()
    return {"digest": digest.hex()}


def sieve(p):
    # Explicit loops, no slice assignment: the interpreter-bound work the workload is meant to measure.
    limit = p["limit"]
    composite = bytearray(limit)
    count = 0
    for i in range(2, limit):
        if not composite[i]:
            count += 1
            for j in range(i * i, limit, i):
                composite[j] = 1
    return {"count": count}


def sleep(p):
    time.sleep(p["ms"] / 1000)
    return {}


def heat(p):
    """The stencil with numpy slices, as a Python user would write it: a cell-by-cell loop in CPython takes about
    15 s of CPU per standard task (numpy: about 0.2 s). Every cell still gets exactly the reference's operations
    in the reference's order (numpy's elementwise add and multiply are plain IEEE operations, no fused
    multiply-add), so the result is the same to the last bit; the mean is summed sequentially, row by row, as the
    reference says (numpy.sum would sum pairwise and differ in the last bits). The ufuncs write into two scratch
    grids instead of a fresh temporary per operation: half-megabyte temporaries are mmap'd and page-faulted anew
    every step, which made the task about 20 times slower on the busy development machine."""
    n, steps, seed = p["n"], p["steps"], p["seed"]
    idx = numpy.arange(n, dtype=numpy.int64)
    u = ((idx[:, None] * 131 + idx[None, :] * 71 + seed * 17) % 1000) / 1000.0
    u[0, :] = u[-1, :] = u[:, 0] = u[:, -1] = 0.0
    v = numpy.zeros_like(u)
    total = numpy.empty((n - 2, n - 2))
    four_c = numpy.empty((n - 2, n - 2))
    for _ in range(steps):
        c = u[1:-1, 1:-1]
        # v = c + 0.1 * ((((up + down) + left) + right) - 4.0 * c)
        numpy.add(u[:-2, 1:-1], u[2:, 1:-1], out=total)
        numpy.add(total, u[1:-1, :-2], out=total)
        numpy.add(total, u[1:-1, 2:], out=total)
        numpy.multiply(4.0, c, out=four_c)
        numpy.subtract(total, four_c, out=total)
        numpy.multiply(0.1, total, out=total)
        numpy.add(c, total, out=v[1:-1, 1:-1])
        u, v = v, u
    grid_sum = 0.0
    for cell in u.ravel().tolist():
        grid_sum += cell
    return {"mean": grid_sum / (n * n), "max": float(u.max())}


HANDLERS = {"noop": noop, "sha256": sha256, "sieve": sieve, "heat": heat, "sleep": sleep}
