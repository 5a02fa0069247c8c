"""``python -m raftnet.sim``: randomized runs over a range of seeds, the
catch-rate table of the deliberate bugs, or one named scenario.

    python -m raftnet.sim --nodes 5 --seeds 1-2000 [--duration TICKS] [--bug NAME] [--jobs N]
    python -m raftnet.sim --bug-table [--seeds 1-2000] [--nodes N]
    python -m raftnet.sim --nodes 5 --seeds 7 --trace --timeline run.svg
    python -m raftnet.sim --seeds 1-200 --state-machine mypkg.mod:MyMachine
    python -m raftnet.sim --nodes 5 --scenario NAME [--bug NAME]

Every seed of the range runs, failing or not. The last line is the summary,
``seeds=<n> steps=<total> violations=<seeds that failed>`` (a scenario
prints its figures; the table prints one ``bug=<name> seeds=<n>
caught=<k> rate=<k/n> nodes=<n>`` line per defect and cluster size).
Exit 0 when no invariant was violated, 1 when one was (after its report),
64 on a usage error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from ..core import Raft
from .bugs import BUGS
from .cluster import TICK
from .invariants import Violation
from .randomized import DEFAULT_DURATION, load_machine, run_many, run_seed
from .scenarios import SCENARIOS

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 64
FULL_REPORTS = 3  # failing seeds reported in full; the rest get one line each


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
    p.add_argument("--nodes", type=int, default=None, help="cluster size (default 5; the table runs 3 and 5)")
    p.add_argument("--seeds", type=parse_seeds, help="seed or range A-B of randomized runs")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--scenario", choices=sorted(SCENARIOS), help="run one named scenario")
    what.add_argument("--bug-table", action="store_true",
                      help="run every --bug over the seeds (default 1-2000) and print its catch rate")
    p.add_argument("--duration", type=int, default=DEFAULT_DURATION // TICK,
                   help=f"ticks of the faulty phase (default {DEFAULT_DURATION // TICK})")
    p.add_argument("--steps", type=int, help="also end the faulty phase after this many events")
    p.add_argument("--bug", choices=sorted(BUGS), help="run with one deliberate, classic Raft defect")
    p.add_argument("--state-machine", metavar="MODULE:CLASS",
                   help="replicate this state machine instead of the key-value store")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--trace", action="store_true", help="print every event (one seed)")
    p.add_argument("--timeline", metavar="FILE.svg",
                   help="draw the run of the (first) seed as SVG or HTML; a failing seed draws one anyway")
    args = p.parse_args(argv)
    nodes = args.nodes or 5
    if not 1 <= nodes <= 9:
        p.error("--nodes must be between 1 and 9")
    if args.duration < 1 or (args.steps is not None and args.steps < 1):
        p.error("--duration and --steps must be positive")
    if args.jobs < 1:
        p.error("--jobs must be positive")
    if args.timeline and not args.timeline.lower().endswith((".svg", ".html", ".htm")):
        p.error("--timeline must name a .svg or .html file")
    if args.state_machine:
        try:
            load_machine(args.state_machine)
        except ValueError as exc:
            p.error(str(exc))
    raft_class = BUGS[args.bug] if args.bug else Raft

    if args.scenario:
        try:
            figures = SCENARIOS[args.scenario](nodes=nodes, raft_class=raft_class)
        except ValueError as exc:
            p.error(str(exc))
        except Violation as v:
            print(f"VIOLATION scenario={args.scenario} invariant={v.invariant!r}\n  {v.detail}")
            print(f"scenario={args.scenario} violations=1")
            return EXIT_VIOLATION
        line = " ".join(f"{k}={v}" for k, v in figures.items())
        print(f"scenario={args.scenario} nodes={nodes} {line} violations=0")
        return EXIT_OK

    if args.bug_table:
        return _bug_table(args.seeds or range(1, 2001), [args.nodes] if args.nodes else [3, 5],
                          args.duration * TICK, args.jobs)
    if args.seeds is None:
        p.error("one of --seeds, --scenario or --bug-table is required")

    duration = args.duration * TICK
    if args.trace or args.timeline:
        return _one(args, nodes, duration, raft_class)
    total_steps = failed = 0
    committed: list[int] = []
    t0 = time.perf_counter()
    first_failure = None
    for o in run_many(args.seeds, nodes, duration, args.bug, args.state_machine, args.steps, args.jobs):
        total_steps += o.steps
        committed.append(o.committed)
        if o.invariant is None:
            continue
        failed += 1
        if failed <= FULL_REPORTS:
            print(o.report)
            print(f"replay: {_replay(args, nodes, o.seed)} --trace --timeline seed{o.seed}.svg")
        else:
            print(f"VIOLATION seed={o.seed} nodes={nodes} invariant={o.invariant!r}")
        first_failure = first_failure if first_failure is not None else o.seed
    elapsed = time.perf_counter() - t0
    if first_failure is not None:
        path = f"raftnet-sim-{nodes}n-seed{first_failure}.svg"
        _draw(first_failure, nodes, duration, raft_class, args, path)
        print(f"timeline of seed {first_failure}: {path}")
    print(f"elapsed={elapsed:.1f}s steps_per_s={total_steps / max(elapsed, 1e-9):.0f} "
          f"median_committed={statistics.median(committed):.0f}", file=sys.stderr)
    print(f"seeds={len(committed)} steps={total_steps} violations={failed}")
    return EXIT_VIOLATION if failed else EXIT_OK


def _replay(args, nodes: int, seed: int) -> str:
    extra = f" --duration {args.duration}" if args.duration != DEFAULT_DURATION // TICK else ""
    extra += f" --steps {args.steps}" if args.steps else ""
    extra += f" --bug {args.bug}" if args.bug else ""
    extra += f" --state-machine {args.state_machine}" if args.state_machine else ""
    return f"python -m raftnet.sim --nodes {nodes} --seeds {seed}{extra}"


def _one(args, nodes: int, duration: int, raft_class: type[Raft]) -> int:
    """Trace and/or draw each seed of the range (meant for one)."""
    failed = total = 0
    machine = load_machine(args.state_machine) if args.state_machine else None
    for seed in args.seeds:
        o = run_seed(seed, nodes, duration, raft_class, trace=print if args.trace else None, machine=machine,
                     timeline=bool(args.timeline), max_steps=args.steps)
        total += o.steps
        if o.violation is not None:
            failed += 1
            print(o.report)
        if args.timeline:
            from .timeline_svg import write_timeline

            write_timeline(args.timeline, o.cluster.timeline)
            print(f"timeline of seed {seed}: {args.timeline}")
        print(f"seed={seed} committed={o.committed} leaders={o.leaders} ops={o.ops}", file=sys.stderr)
    print(f"seeds={len(args.seeds)} steps={total} violations={failed}")
    return EXIT_VIOLATION if failed else EXIT_OK


def _draw(seed: int, nodes: int, duration: int, raft_class: type[Raft], args, path: str) -> None:
    from .timeline_svg import write_timeline

    machine = load_machine(args.state_machine) if args.state_machine else None
    o = run_seed(seed, nodes, duration, raft_class, machine=machine, timeline=True, max_steps=args.steps)
    write_timeline(path, o.cluster.timeline)


def _bug_table(seeds: range, sizes: list[int], duration: int, workers: int) -> int:
    for bug in sorted(BUGS):
        for nodes in sizes:
            caught = sum(1 for o in run_many(seeds, nodes, duration, bug, workers=workers) if o.invariant is not None)
            # The contract's fields first, in its order; the cluster size after them.
            print(f"bug={bug} seeds={len(seeds)} caught={caught} rate={caught / len(seeds):.3f} nodes={nodes}",
                  flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
