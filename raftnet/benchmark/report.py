"""A benchmark run's result: the text a person reads, the JSON record a
tool reads (one line per run, appended), and an optional plot."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from typing import Any

from .load import LoadSpec

# The load generator is probably the bottleneck above this share of a core.
GENERATOR_BUSY = 0.5


def describe(spec: LoadSpec, target: str) -> str:
    what = spec.workload
    if spec.workload == "mixed":
        what += f" ({spec.read_ratio:.0%} gets)"
    if spec.workload in ("get", "mixed"):
        what += ", stale reads" if spec.stale else ", linearizable reads"
    bound = " and ".join(x for x in (f"{spec.total:,} ops" if spec.total else "",
                                     f"{spec.duration:g} s" if spec.duration else "") if x)
    loop = f"open loop at {spec.rate:,.0f} ops/s" if spec.rate else "closed loop"
    if spec.prefill:
        what += ", key space prefilled"
    return (f"{what}: {spec.clients} client{'s' if spec.clients > 1 else ''} over {spec.conns} "
            f"connection{'s' if spec.conns > 1 else ''}, {loop}, {spec.key_size} B keys from "
            f"{spec.key_space:,}, {spec.value_size} B values, at most {bound}"
            f"{f' after {spec.warmup:g} s of warmup' if spec.warmup else ''}; {target}")


def result_record(spec: LoadSpec, target: dict, summary: dict, cpu: dict, wal: dict | None,
                  series: list[dict]) -> dict:
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "spec": asdict(spec), "target": target,
            "result": summary, "cpu": cpu, "leader_wal": wal, "series": series}


def text(record: dict) -> list[str]:
    r, cpu, wal = record["result"], record["cpu"], record["leader_wal"]
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(r["errors"].items())) or "none"
    lines = [f"ops      {r['ops']:,} in {r['seconds']:.2f} s: {r['ops_per_s']:,.1f} ops/s; errors: {errors}",
             "latency  " + "  ".join(f"{name} {_ms(r[key])}" for name, key in
                                     (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"),
                                      ("p99.9", "p99.9_ms"), ("max", "max_ms"))) + f"  (mean {_ms(r['mean_ms'])})"]
    per_op = cpu.get("per_op_us", {})
    if per_op.get("nodes"):
        nodes = ", ".join(f"node {i}{' (leader)' if str(i) == str(cpu.get('leader')) else ''} {us:,.0f}"
                          for i, us in sorted(per_op["nodes"].items(), key=lambda kv: int(kv[0])))
        lines.append(f"cpu/op   {nodes}; all nodes {per_op['all_nodes']:,.0f} µs")
    rss = {i: v for i, v in cpu.get("node_rss_mib", {}).items() if None not in v}
    if rss:
        lines.append("memory   " + ", ".join(f"node {i} {a:,.0f} -> {b:,.0f} MiB"
                                           for i, (a, b) in sorted(rss.items(), key=lambda kv: int(kv[0])))
                     + " (resident, from the start of the measured run to its end)")
    lines.append(f"cpu/op   load generator {per_op.get('generator', math.nan):,.0f} µs "
                 f"({cpu['generator_cores']:.2f} of a core)")
    if cpu["generator_cores"] > GENERATOR_BUSY:
        lines.append(f"warning  the load generator used {cpu['generator_cores']:.2f} of a core (more than "
                     f"{GENERATOR_BUSY:g}): it may be the bottleneck; spread the load over more processes")
    if wal is not None and wal["fsyncs"]:
        lines.append(f"leader   {wal['fsyncs_per_s']:,.1f} fsyncs/s, {wal['entries_per_fsync']:.1f} entries per fsync")
    elif wal is not None:
        lines.append("leader   no fsyncs")
    return lines


def _ms(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.2f} ms"


def append_json(path: str, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(v: Any) -> Any:
    raise TypeError(f"not JSON: {type(v).__name__}")


def clean(obj: Any) -> Any:
    """NaN (no sample) as null, so the record is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


class PlotUnavailable(Exception):
    pass


def plot(record: dict, path: str) -> None:
    """Throughput and latency percentiles per second, to a PNG."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'raftnet[bench]' "
                              "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = record["series"]
    seconds = [s["second"] for s in series]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(seconds, [s["ops_per_s"] for s in series], color="tab:blue")
    top.set_ylabel("ops/s")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    for key, label, color in (("p50_ms", "p50", "tab:green"), ("p99_ms", "p99", "tab:orange"),
                              ("max_ms", "max", "tab:red")):
        bottom.plot(seconds, [math.nan if s[key] is None else s[key] for s in series], label=label, color=color)
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("second of the run")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    bottom.legend(loc="upper right")
    spec = record["spec"]
    fig.suptitle(f"raftnet bench: {spec['workload']}, {spec['clients']} clients, {spec['value_size']} B values "
                 f"({record['result']['ops_per_s']:,.0f} ops/s, p99 {_ms(record['result']['p99_ms'])})", fontsize=10)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
