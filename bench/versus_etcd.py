"""raftnet against etcd 3.4 on this machine, in one run, on the same workloads.

    python bench/versus_etcd.py [--rounds 3] [--workloads put_seq_c1,put_c64,range_lin_c64]

Needs etcd and etcd's own Go ``benchmark`` tool, installed by
``../shared/etcd-reference/setup.sh`` (it says how). Each round runs every
workload on a fresh 3-member etcd (``cluster.sh``, fsync on) driven by
``etcd-benchmark``, then on a fresh 3-node raftnet (``raftnet bench
--local 3``, fsync on) driven by the trio client: 16-byte keys from
100,000, 100-byte values; one sequential client; 64 clients over 8
connections. etcd's range benchmark reads one key ("foo"), so raftnet's
linearizable gets read one prefilled key too.

Server CPU per op is all three members' user+system time (``/proc``) over
the workload divided by its operations; client CPU per op is the load
generator's (``getrusage`` of the benchmark child for etcd, ``raftnet
bench``'s own measurement for raftnet). Printed: one line per run, then a
table of medians [min..max] and the raftnet/etcd ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "etcd-reference"
CACHE = Path(os.environ.get("CACHE", "/tmp/etcd-reference"))
ETCD_BENCH = CACHE / "bin" / "etcd-benchmark"
ENDPOINTS = "127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379"
COMMON = ["--key-size=16", "--val-size=100", "--key-space-size=100000"]

# name -> (etcd-benchmark arguments, raftnet bench arguments)
WORKLOADS = {
    "put_seq_c1": (["--conns=1", "--clients=1", "put", *COMMON, "--total=5000"],
                   ["put", "--clients", "1", "--conns", "1", "--total", "5000"]),
    "put_c64": (["--conns=8", "--clients=64", "put", *COMMON, "--total=40000"],
                ["put", "--clients", "64", "--conns", "8", "--total", "40000"]),
    "range_lin_c64": (["--conns=8", "--clients=64", "range", "foo", "--consistency=l", "--total=50000"],
                      ["get", "--clients", "64", "--conns", "8", "--total", "50000", "--key-space", "1", "--prefill"]),
}


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        fields = raw[raw.rindex(b")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def etcd_round(names: list[str]) -> dict[str, dict]:
    env = {**os.environ, "BASE": str(CACHE / "etcd")}
    cluster = str(REFERENCE / "cluster.sh")
    subprocess.run([cluster, "wipe"], env=env, capture_output=True)
    subprocess.run([cluster, "start"], env=env, capture_output=True, check=True)
    out = {}
    try:
        pids = [int((CACHE / "etcd" / f"e{i}.pid").read_text()) for i in (1, 2, 3)]
        subprocess.run(["etcdctl", f"--endpoints={ENDPOINTS}", "put", "foo", "bar"], env={**env, "ETCDCTL_API": "3"},
                       capture_output=True, check=True)
        for name in names:
            args = WORKLOADS[name][0]
            before_server = cpu_of(pids)
            before_client = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run([str(ETCD_BENCH), "--precise", f"--endpoints={ENDPOINTS}", *args],
                               capture_output=True, text=True, timeout=300)
            after_client = resource.getrusage(resource.RUSAGE_CHILDREN)
            server = cpu_of(pids) - before_server
            client = (after_client.ru_utime - before_client.ru_utime) + (after_client.ru_stime - before_client.ru_stime)
            text = r.stdout + r.stderr
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])
            total = int(re.search(r"--total=(\d+)", " ".join(args))[1])
            pct = {p: float(re.search(rf"{p}% in ([\d.]+) secs", text)[1]) * 1000 for p in ("50", "99")}
            out[name] = {"ops_per_s": rps, "p50_ms": pct["50"], "p99_ms": pct["99"],
                         "server_us": server / total * 1e6, "client_us": client / total * 1e6}
    finally:
        subprocess.run([cluster, "stop"], env=env, capture_output=True)
        subprocess.run([cluster, "wipe"], env=env, capture_output=True)
    return out


def raftnet_run(name: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "raftnet", "bench", *WORKLOADS[name][1], "--local", "3",
                        "--key-size", "16", "--value-size", "100", "--json", "-"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    if r.returncode:
        raise SystemExit(f"raftnet bench failed: {r.stderr}")
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    res, cpu = rec["result"], rec["cpu"]["per_op_us"]
    return {"ops_per_s": res["ops_per_s"], "p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"],
            "server_us": cpu["all_nodes"], "client_us": cpu["generator"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    args = p.parse_args()
    names = args.workloads.split(",")
    if not ETCD_BENCH.exists():
        raise SystemExit(f"{ETCD_BENCH} is missing: run {REFERENCE}/setup.sh first (its README says how)")
    runs: dict[str, dict[str, list[dict]]] = {n: {"etcd": [], "raftnet": []} for n in names}
    for k in range(args.rounds):
        for name, res in etcd_round(names).items():
            runs[name]["etcd"].append(res)
            print(f"round {k + 1} etcd    {name}: {_line(res)}", flush=True)
        for name in names:
            res = raftnet_run(name)
            runs[name]["raftnet"].append(res)
            print(f"round {k + 1} raftnet {name}: {_line(res)}", flush=True)
        time.sleep(1)
    print()
    print("| workload | raftnet | etcd | ratio | server CPU/op raftnet / etcd | client CPU/op raftnet / etcd |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r, e = runs[name]["raftnet"], runs[name]["etcd"]
        m = {who: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for who, rs in (("r", r), ("e", e))}
        print(f"| {name} | {_cell(r)} | {_cell(e)} | {m['r']['ops_per_s'] / m['e']['ops_per_s']:.2f}× ops, "
              f"{m['r']['p50_ms'] / m['e']['p50_ms']:.2f}× p50 | {m['r']['server_us']:,.0f} / {m['e']['server_us']:,.0f} µs "
              f"| {m['r']['client_us']:,.0f} / {m['e']['client_us']:,.0f} µs |")


def _line(res: dict) -> str:
    return (f"{res['ops_per_s']:,.0f} ops/s, p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
            f"server {res['server_us']:,.0f} µs/op, client {res['client_us']:,.0f} µs/op")


def _cell(rs: list[dict]) -> str:
    ops = [x["ops_per_s"] for x in rs]
    return (f"{statistics.median(ops):,.0f} [{min(ops):,.0f}..{max(ops):,.0f}] ops/s, "
            f"p50 {statistics.median(x['p50_ms'] for x in rs):.2f} ms")


if __name__ == "__main__":
    main()
