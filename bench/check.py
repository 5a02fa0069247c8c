"""Linearizability checking speed on a simulated history.

    python bench/check.py [--ops 20000] [--keys 50] [--processes 10] [--unknown 0.02] [--seed 1] [--runs 3]

Generates a linearizable history from a seeded simulation of a key-value
store (``raftnet.check.simulate``: concurrent clients, 2% unknown and 1%
failed ops by default), writes it as JSON Lines to a temporary file, then
times ``load_history`` on it and ``check`` on the loaded ops; then makes
one read stale (``with_stale_read``) and times finding that violation.
Each is run ``--runs`` times; the median is reported. The last line is:

    ops=<n> keys=<k> load_s=<s> check_s=<s> violation_s=<s> ops_per_s=<x>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from raftnet.check import check, load_history
from raftnet.check.simulate import linearizable_history, with_stale_read


def timed(fn, runs: int) -> tuple[float, list[float], object]:
    seconds, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), seconds, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--processes", type=int, default=10)
    ap.add_argument("--unknown", type=float, default=0.02, help="fraction of ops whose outcome is unknown")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    history = linearizable_history(args.seed, ops=args.ops, keys=args.keys, processes=args.processes,
                                   unknown=args.unknown)
    counts = {o: sum(op.outcome == o for op in history) for o in ("ok", "unknown", "fail")}
    print(f"history: {len(history)} ops on {args.keys} keys from {args.processes} concurrent clients, "
          f"seed {args.seed}: {counts}")
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "w") as f:
            for op in history:
                f.write(json.dumps(op.to_dict()) + "\n")
        load_s, load_runs, loaded = timed(lambda: load_history(path), args.runs)
    finally:
        os.unlink(path)
    check_s, check_runs, result = timed(lambda: check(loaded), args.runs)
    if result.status != "ok":
        print(f"error: the simulated history is not found linearizable ({result.status})", file=sys.stderr)
        return 1
    stale, key = with_stale_read(loaded)
    violation_s, violation_runs, found = timed(lambda: check(stale), args.runs)
    if (found.status, found.key) != ("violation", key):
        print(f"error: the injected stale read on {key!r} was not found ({found.status})", file=sys.stderr)
        return 1

    def runs(xs: list[float]) -> str:
        return " ".join(f"{x:.3f}" for x in xs)

    print(f"load       runs {runs(load_runs)} s")
    print(f"check      runs {runs(check_runs)} s: linearizable")
    print(f"violation  runs {runs(violation_runs)} s: stale read on key {key!r} found, "
          f"prefix of {len(found.prefix)} ops")
    print(f"ops={len(history)} keys={args.keys} load_s={load_s:.3f} check_s={check_s:.3f} "
          f"violation_s={violation_s:.3f} ops_per_s={len(history) / check_s:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
