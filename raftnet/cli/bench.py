"""``raftnet bench``: throughput and latency of a cluster under a workload.

It drives the cluster named by ``--cluster``/``--config`` (as the client
commands do), or starts its own with ``--local N`` (``raftnet serve``
processes on loopback, in a temporary directory, stopped and deleted after
the run; ``--keep DIR`` keeps them there). A run ends by itself after
``--total`` operations or ``--duration`` seconds. On a terminal it prints
progress once a second; piped, only the result.

Exit codes: 0 the run completed (operations that failed are counted in the
result, by kind); 1 the run could not be made (no operation succeeded, or a
local node exited); 2 no leader serving within ``--wait-leader`` seconds;
64 usage error; 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import trio

from ..benchmark import WORKLOADS, LocalCluster, LoadSpec, measure
from ..benchmark.report import PlotUnavailable, append_json, describe, plot, text
from . import exitcodes
from .kv import _addresses, _read_secret


@click.command("bench")
@click.argument("workload", type=click.Choice(WORKLOADS), default="put")
@click.option("--cluster", metavar="HOST:PORT,...", help="Node addresses of the cluster to drive.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Take the node addresses (and secret) from a cluster.toml.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the cluster's shared secret (or set RAFTNET_SECRET).")
@click.option("--local", "local_nodes", type=click.IntRange(1, 9), metavar="N",
              help="Start a cluster of N local nodes for the run, and stop it after.")
@click.option("--fsync", type=click.Choice(["batch", "always", "never"]), default="batch", show_default=True,
              help="With --local: the nodes' [storage] fsync.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="With --local: keep the nodes' config, data and logs in this directory.")
@click.option("--clients", type=click.IntRange(min=1), default=1, show_default=True,
              help="Concurrent logical clients.")
@click.option("--conns", type=click.IntRange(min=1), default=1, show_default=True,
              help="Client connections (each a session, shared by clients/conns logical clients).")
@click.option("--leader-only", is_flag=True, help="Connect to the leader only (default: to every node given).")
@click.option("--key-size", type=click.IntRange(min=1), default=16, show_default=True, help="Key length in bytes.")
@click.option("--value-size", type=click.IntRange(min=0), default=100, show_default=True,
              help="Value length in bytes.")
@click.option("--key-space", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Keys are drawn uniformly from this many.")
@click.option("--read-ratio", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="mixed: the share of operations that are gets.")
@click.option("--stale", is_flag=True, help="get, mixed: stale reads (any node, no ReadIndex round).")
@click.option("--prefill", is_flag=True, help="Put every key of the key space once before the run (for gets).")
@click.option("--total", type=click.IntRange(min=1), help="Stop after this many operations (after the warmup).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds (after the warmup). Default: 10, unless --total is given.")
@click.option("--warmup", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds of load before measuring starts.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="Open loop: this many operations per second, latency counted from when each was due.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds per operation, retries included; longer counts as a timeout error.")
@click.option("--seed", type=int, help="Seed of the keys drawn and the value's bytes.")
@click.option("--wait-leader", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for a leader that serves before giving up (exit 2).")
@click.option("--json", "json_path", metavar="FILE", help="Append the run's record to FILE as one JSON line (- : stdout).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Draw throughput and latency percentiles over time (needs matplotlib: pip install 'raftnet[bench]').")
def bench(workload, cluster, config_path, secret_file, local_nodes, fsync, keep, clients, conns, leader_only,
          key_size, value_size, key_space, read_ratio, stale, prefill, total, duration, warmup, rate, timeout, seed,
          wait_leader, json_path, plot_path) -> None:
    """Measure a cluster under WORKLOAD: put, get, mixed or cas.

    \b
    raftnet bench put --local 3 --clients 64 --conns 8 --duration 10
    raftnet bench get --cluster 127.0.0.1:7001,127.0.0.1:7002 --clients 64 --stale
    raftnet bench mixed --config cluster.toml --read-ratio 0.9 --rate 2000 --json runs.jsonl
    """
    if local_nodes is not None and (cluster or config_path):
        raise click.UsageError("give --local or --cluster/--config, not both")
    if local_nodes is None and (keep is not None or fsync != "batch"):
        raise click.UsageError("--keep and --fsync apply to --local clusters only")
    if duration is None and total is None:
        duration = 10.0
    spec = LoadSpec(workload=workload, clients=clients, conns=min(conns, clients), key_size=key_size,
                    value_size=value_size, key_space=key_space, read_ratio=read_ratio, stale=stale, total=total,
                    duration=duration, warmup=warmup, rate=rate, timeout=timeout, seed=seed, prefill=prefill)
    if plot_path:
        try:
            import matplotlib  # noqa: F401 - checked before a run that would waste its figures
        except ImportError:
            raise click.UsageError("--plot needs matplotlib: pip install 'raftnet[bench]' (or pip install matplotlib)")

    local = None
    if local_nodes is not None:
        local = LocalCluster(local_nodes, fsync=fsync, directory=keep)
        addresses, secret, where = local.addresses, None, f"a local {local_nodes}-node cluster (fsync {fsync})"
    else:
        addresses, _, config_secret = _addresses(cluster, config_path)
        secret = _read_secret(secret_file) or config_secret
        where = f"{len(addresses)} node{'s' if len(addresses) > 1 else ''} at {', '.join(addresses)}"
    click.echo(f"raftnet bench: {describe(spec, where)}")
    try:
        if local is not None:
            local.start()
        try:
            record = trio.run(lambda: measure(spec, addresses, secret=secret, local=local, leader_only=leader_only,
                                              progress=sys.stderr.isatty(), wait_leader=wait_leader))
        except TimeoutError as exc:
            click.echo(f"raftnet bench: error: {exc}", err=True)
            sys.exit(exitcodes.UNAVAILABLE)
        exited = local.exited() if local is not None else {}
    finally:
        if local is not None:
            local.stop()
    for line in text(record):
        click.echo(line)
    if json_path:
        if json_path == "-":
            import json
            click.echo(json.dumps(record))
        else:
            append_json(json_path, record)
    if plot_path:
        try:
            plot(record, plot_path)
        except PlotUnavailable as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(f"plot     {plot_path}")
    if exited:
        click.echo(f"raftnet bench: error: local nodes exited during the run (id: code): {exited}", err=True)
        sys.exit(exitcodes.FAILURE)
    if record["result"]["ops"] == 0:
        click.echo("raftnet bench: error: no operation succeeded", err=True)
        sys.exit(exitcodes.FAILURE)
