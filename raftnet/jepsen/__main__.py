"""``python -m raftnet.jepsen``: one run, or a campaign of runs.

    python -m raftnet.jepsen [--nodes 3] [--duration 30] [--nemesis all|kill,pause,...]
                             [--seed S] [--runs N | --minutes M] [--dir D] [--broken stale-reads]

A campaign (``--runs`` or ``--minutes``) alternates 3 and 5 nodes unless
``--nodes`` is given, draws a new seed per run from the first, and ends
with a table: runs, operations, faults of each kind, failures. Exit 0 when
every run passed, 1 otherwise (each failing run names its directory, which
keeps the history, the nodes' logs and a summary); 64 on bad arguments.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import trio

from .nemesis import NEMESES
from .run import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raftnet.jepsen", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, choices=[3, 5], default=None, help="cluster size (default 3; "
                   "a campaign alternates 3 and 5)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load and faults per run")
    p.add_argument("--nemesis", default="all", help=f"comma-separated faults, or all: {', '.join(NEMESES)}")
    p.add_argument("--seed", type=int, default=None, help="replay a run (default: random, printed)")
    p.add_argument("--runs", type=int, default=None, help="a campaign of this many runs")
    p.add_argument("--minutes", type=float, default=None, help="a campaign of runs until this much time passed")
    p.add_argument("--dir", type=Path, default=None, help="where runs keep their files (default: a temp dir)")
    p.add_argument("--broken", choices=["stale-reads"], default=None,
                   help="run a deliberately broken build (to see the harness fail)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 64 if exc.code == 2 else int(exc.code or 0)
    kinds = list(NEMESES) if args.nemesis == "all" else args.nemesis.split(",")
    unknown = [k for k in kinds if k not in NEMESES]
    if unknown:
        print(f"error: unknown nemesis {', '.join(unknown)}: choose from {', '.join(NEMESES)}", file=sys.stderr)
        return 64
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    base = args.dir or Path(tempfile.mkdtemp(prefix="raftnet-jepsen-"))
    campaign = args.runs is not None or args.minutes is not None
    print(f"jepsen: seed {seed}, files in {base}", flush=True)
    rng = random.Random(seed)
    stop_at = time.monotonic() + 60 * args.minutes if args.minutes else None
    results = []
    k = 0
    while True:
        k += 1
        run_seed = seed if not campaign else rng.randrange(1 << 30)
        nodes = args.nodes or (3 if not campaign or k % 2 else 5)
        result = trio.run(lambda: run(base / f"run-{k:03d}-seed-{run_seed}", nodes=nodes, duration=args.duration,
                                      nemeses=kinds, seed=run_seed, broken=args.broken))
        results.append(result)
        print(result.summary(), flush=True)
        if result.problems:
            print(f"  kept in {result.directory}; replay: python -m raftnet.jepsen --nodes {nodes} "
                  f"--duration {args.duration:g} --nemesis {args.nemesis} --seed {run_seed}", flush=True)
        if not campaign or (args.runs is not None and k >= args.runs) or \
                (stop_at is not None and time.monotonic() >= stop_at):
            break
    if campaign:
        _table(results)
    return 1 if any(r.problems for r in results) else 0


def _table(results) -> None:
    faults: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults)
    by_size = Counter(r.nodes for r in results)
    print(f"campaign: {len(results)} runs ({', '.join(f'{n} nodes: {c}' for n, c in sorted(by_size.items()))}), "
          f"{sum(r.duration for r in results):.0f}s of faults, {sum(r.ops for r in results)} operations, "
          f"{sum(1 for r in results if r.problems)} failed")
    print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))


if __name__ == "__main__":
    sys.exit(main())
