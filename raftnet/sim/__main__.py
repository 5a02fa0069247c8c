"""``python -m raftnet.sim``: randomized runs over a range of seeds, or one
named scenario.

    python -m raftnet.sim --nodes 5 --seeds 1-2000 [--steps N] [--bug NAME] [--trace]
    python -m raftnet.sim --nodes 5 --scenario NAME [--bug NAME]

The last line is the summary (``seeds=<n> steps=<total> violations=<v>``, or
a scenario's figures). Exit 0 when no invariant was violated, 1 at the first
violation (after its report), 64 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..core import Raft
from .bugs import BUGS
from .invariants import Violation
from .randomized import DEFAULT_STEPS, run_seed
from .scenarios import SCENARIOS

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2; the contract says 64
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def parse_seeds(text: str) -> range:
    lo, sep, hi = text.partition("-")
    try:
        first = int(lo)
        last = int(hi) if sep else first
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed range {text!r}: expected N or A-B") from None
    if first < 0 or last < first:
        raise argparse.ArgumentTypeError(f"bad seed range {text!r}: need 0 <= A <= B")
    return range(first, last + 1)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m raftnet.sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5, help="cluster size (default 5)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--seeds", type=parse_seeds, help="seed or range A-B of randomized runs")
    what.add_argument("--scenario", choices=sorted(SCENARIOS), help="run one named scenario")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"events per faulty phase (default {DEFAULT_STEPS})")
    p.add_argument("--bug", choices=sorted(BUGS), help="run with one deliberate, classic Raft defect")
    p.add_argument("--trace", action="store_true", help="print every event")
    args = p.parse_args(argv)
    if not 1 <= args.nodes <= 9:
        p.error("--nodes must be between 1 and 9")
    if args.steps < 1:
        p.error("--steps must be positive")
    raft_class = BUGS[args.bug] if args.bug else Raft

    if args.scenario:
        try:
            figures = SCENARIOS[args.scenario](nodes=args.nodes, raft_class=raft_class)
        except ValueError as exc:
            p.error(str(exc))
        except Violation as v:
            print(f"VIOLATION scenario={args.scenario} invariant={v.invariant!r}\n  {v.detail}")
            print(f"scenario={args.scenario} violations=1")
            return EXIT_VIOLATION
        line = " ".join(f"{k}={v}" for k, v in figures.items())
        print(f"scenario={args.scenario} nodes={args.nodes} {line} violations=0")
        return EXIT_OK

    trace = print if args.trace else None
    total_steps = 0
    runs = 0
    t0 = time.perf_counter()
    for seed in args.seeds:
        outcome = run_seed(seed, args.nodes, args.steps, raft_class, trace=trace)
        runs += 1
        total_steps += outcome.steps
        if outcome.violation is not None:
            print(outcome.report)
            bug = f" --bug {args.bug}" if args.bug else ""
            print(f"replay: python -m raftnet.sim --nodes {args.nodes} --seeds {seed} --steps {args.steps}{bug} --trace")
            print(f"seeds={runs} steps={total_steps} violations=1")
            return EXIT_VIOLATION
    elapsed = time.perf_counter() - t0
    print(f"elapsed={elapsed:.1f}s steps_per_s={total_steps / max(elapsed, 1e-9):.0f}", file=sys.stderr)
    print(f"seeds={runs} steps={total_steps} violations=0")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
