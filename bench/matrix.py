"""``make bench``: a fixed matrix of ``raftnet bench`` runs, after etcd's
benchmark documentation, each configuration several times on a fresh local
cluster, summarized as median [min..max].

    python bench/matrix.py [--runs 3] [--duration 10] [--only SUBSTRING] [--out FILE.jsonl]

The matrix: for 3 and 5 nodes, and 100 B and 4 KiB values:

* put, 1 client (sequential);
* put, 64 clients over 8 connections and 1,000 over 100, each to the
  leader only and to every node (followers redirect: what it costs);
* linearizable and stale gets, 64 and 1,000 clients, from a key space of
  10,000 keys written before the run (``--prefill``).

Keys are 16 bytes from 100,000 (10,000 for gets). Each run warms up for a
second first. Every run's record is appended to ``--out`` (default
``bench/results/matrix-<time>.jsonl``, not tracked by git); the table goes
to stdout as Markdown. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def matrix() -> list[tuple[str, list[str]]]:
    out = []
    for nodes in (3, 5):
        for value in (100, 4096):
            base = ["--local", str(nodes), "--value-size", str(value)]
            tag = f"{nodes} nodes, {value} B"
            out.append((f"put, 1 client ({tag})", ["put", "--clients", "1", "--conns", "1", *base]))
            for clients, conns in ((64, 8), (1000, 100)):
                for where, flag in (("leader", ["--leader-only"]), ("all nodes", [])):
                    out.append((f"put, {clients} clients, {where} ({tag})",
                                ["put", "--clients", str(clients), "--conns", str(conns), *flag, *base]))
            for clients, conns in ((64, 8), (1000, 100)):
                for kind, flag in (("linearizable", []), ("stale", ["--stale"])):
                    out.append((f"{kind} get, {clients} clients ({tag})",
                                ["get", "--clients", str(clients), "--conns", str(conns), "--key-space", "10000",
                                 "--prefill", *flag, *base]))
    return out


def run(args: list[str], duration: float) -> dict:
    r = subprocess.run([sys.executable, "-m", "raftnet", "bench", *args, "--duration", str(duration),
                        "--warmup", "1", "--json", "-"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    if r.returncode:
        raise RuntimeError(r.stderr.strip() or r.stdout.strip())
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--only", help="run only the configurations whose name contains this")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"matrix-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    configs = [(name, a) for name, a in matrix() if not args.only or args.only in name]
    print(f"{len(configs)} configurations x {args.runs} runs of {args.duration:g} s; records in {out}",
          file=sys.stderr)
    rows = []
    for name, bench_args in configs:
        records = []
        for k in range(args.runs):
            try:
                rec = run(bench_args, args.duration)
            except RuntimeError as exc:
                print(f"{name}, run {k + 1}: failed: {exc}", file=sys.stderr)
                continue
            rec["config"] = name
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            records.append(rec)
            r = rec["result"]
            print(f"{name}, run {k + 1}: {r['ops_per_s']:,.0f} ops/s, p50 {r['p50_ms']:.2f} ms", file=sys.stderr,
                  flush=True)
        rows.append((name, records))
    print("| configuration | ops/s | p50 ms | p99 ms | errors | CPU µs/op: nodes | client | entries/fsync |")
    print("|---|---|---|---|---|---|---|---|")
    for name, records in rows:
        if not records:
            print(f"| {name} | failed | | | | | | |")
            continue
        print(f"| {name} | {_spread([r['result']['ops_per_s'] for r in records], ',.0f')} "
              f"| {_spread([r['result']['p50_ms'] for r in records], '.2f')} "
              f"| {_spread([r['result']['p99_ms'] for r in records], '.2f')} "
              f"| {sum(sum(r['result']['errors'].values()) for r in records)} "
              f"| {_median([r['cpu']['per_op_us']['all_nodes'] for r in records], ',.0f')} "
              f"| {_median([r['cpu']['per_op_us']['generator'] for r in records], ',.0f')} "
              f"| {_median([_per_fsync(r) for r in records], '.1f')} |")


def _per_fsync(record: dict) -> float | None:
    wal = record["leader_wal"]
    return wal["entries_per_fsync"] if wal and wal["fsyncs"] else None


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}..{max(values):{fmt}}]"


def _median(values: list, fmt: str) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):{fmt}}" if values else "-"


if __name__ == "__main__":
    main()
