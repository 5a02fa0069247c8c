"""The client commands: ``put``, ``get``, ``del``, ``cas`` and ``status``.

Each finds the cluster from ``--cluster host:port,...``, ``--config F`` or the
``RAFTNET_CLUSTER`` environment variable, and the shared secret from
``--secret-file`` or ``RAFTNET_SECRET`` (never a bare argument: command lines
are visible to every user of the machine).

Exit codes (``exitcodes.py``): 0 success; 1 key not found, cas mismatch or
other failure; 2 timeout or cluster unavailable; 3 not the leader (with
``--target``); 64 usage error.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import trio

from ..client import Client, NotLeader, Timeout, Unavailable
from ..config import ConfigError, load_config
from . import exitcodes


class Target:
    """Where the command connects, gathered from the shared options."""

    def __init__(self, addresses: list[str], ids: dict[str, int], secret: bytes | None, timeout: float,
                 target: int | None):
        self.addresses = addresses
        self.ids = ids  # address -> node id, when a config named them
        self.secret = secret
        self.timeout = timeout
        self.target = target

    def client(self) -> Client:
        return Client(self.addresses, timeout=self.timeout, secret=self.secret, target=self.target)


def _read_secret(secret_file: Path | None) -> bytes | None:
    if secret_file is not None:
        try:
            text = secret_file.read_text()
        except OSError as exc:
            raise click.UsageError(f"cannot read --secret-file {secret_file}: {exc.strerror}") from None
        secret = text.strip()
        if not secret:
            raise click.UsageError(f"--secret-file {secret_file} is empty")
        return secret.encode()
    env = os.environ.get("RAFTNET_SECRET")
    return env.encode() if env else None


def _addresses(cluster: str | None, config_path: Path | None) -> tuple[list[str], dict[str, int], bytes | None]:
    if cluster and config_path:
        raise click.UsageError("give either --cluster or --config, not both")
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        secret = config.secret.encode() if config.secret else None
        return [n.address for n in config.nodes], {n.address: n.id for n in config.nodes}, secret
    cluster = cluster or os.environ.get("RAFTNET_CLUSTER")
    if not cluster:
        raise click.UsageError("no cluster given: use --cluster host:port,..., --config F or set RAFTNET_CLUSTER")
    addresses = [a.strip() for a in cluster.split(",") if a.strip()]
    for a in addresses:
        host, sep, port = a.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.UsageError(f"bad address {a!r} in the cluster list: expected host:port")
    return addresses, {}, None


def cluster_options(fn):
    """The options every client command shares, folded into one ``Target``."""

    @click.option("--cluster", envvar="RAFTNET_CLUSTER", show_envvar=True, metavar="HOST:PORT,...",
                  help="Node addresses (any subset; the leader is found from there).")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Take the node addresses (and secret) from a cluster.toml.")
    @click.option("--target", type=click.IntRange(min=1), metavar="ID",
                  help="Send to this node only; do not follow redirects (exit 3 if it is not the leader).")
    @click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
                  help="Seconds for the whole command, retries included.")
    @click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
                  help="File holding the cluster's shared secret (or set RAFTNET_SECRET).")
    @functools.wraps(fn)
    def wrapper(cluster, config_path, target, timeout, secret_file, **kwargs):
        addresses, ids, config_secret = _addresses(cluster, config_path)
        secret = _read_secret(secret_file) or config_secret
        return fn(Target(addresses, ids, secret, timeout, target), **kwargs)

    return wrapper


def _run(target: Target, op, write: bool = False):
    """Run ``op(client)`` and map client errors to exit codes."""

    async def main():
        async with target.client() as c:
            return await op(c)

    try:
        return trio.run(main)
    except NotLeader as exc:
        click.echo(json.dumps({"error": "not_leader", "leader": exc.leader}, separators=(",", ":")))
        raise SystemExit(exitcodes.NOT_LEADER) from None
    except Timeout as exc:
        unknown = "; the write may or may not have been applied" if write else ""
        click.echo(f"error: {exc}{unknown}", err=True)
        raise SystemExit(exitcodes.UNAVAILABLE) from None
    except Unavailable as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exitcodes.UNAVAILABLE) from None


def _show(value: bytes) -> None:
    out = sys.stdout.buffer
    out.write(value + b"\n")
    out.flush()


@click.command("put")
@click.argument("key")
@click.argument("value")
@cluster_options
def put(target: Target, key: str, value: str) -> None:
    """Set KEY to VALUE (UTF-8). Prints `OK leader=<id> index=<n>`."""
    r = _run(target, lambda c: c.put(key, value.encode()), write=True)
    click.echo(f"OK leader={r.leader} index={r.index}")


@click.command("get")
@click.argument("key")
@click.option("--stale", is_flag=True,
              help="Read the local state of the node asked, without confirming leadership: fast, possibly stale.")
@cluster_options
def get(target: Target, key: str, stale: bool) -> None:
    """Print the value of KEY (exit 1 if it does not exist). Linearizable unless --stale."""
    value = _run(target, lambda c: c.get(key, stale=stale))
    if value is None:
        click.echo(f"not found: {key}", err=True)
        raise SystemExit(exitcodes.FAILURE)
    _show(value)


@click.command("del")
@click.argument("key")
@cluster_options
def delete(target: Target, key: str) -> None:
    """Delete KEY. Prints `OK`, or exits 1 if KEY did not exist."""
    existed = _run(target, lambda c: c.delete(key), write=True)
    if not existed:
        click.echo(f"not found: {key}", err=True)
        raise SystemExit(exitcodes.FAILURE)
    click.echo("OK")


@click.command("cas")
@click.argument("key")
@click.argument("values", nargs=-1, metavar="OLD NEW")
@click.option("--absent", is_flag=True, help="Expect KEY not to exist (then give only NEW).")
@cluster_options
def cas(target: Target, key: str, values: tuple[str, ...], absent: bool) -> None:
    """Set KEY to NEW only if it currently holds OLD (or, with --absent, does not exist).

    Prints `OK`, or exits 1 if the current value differs."""
    if absent:
        if len(values) != 1:
            raise click.UsageError("with --absent give KEY NEW")
        expected, new = None, values[0]
    else:
        if len(values) != 2:
            raise click.UsageError("give KEY OLD NEW (or --absent KEY NEW)")
        expected, new = values[0].encode(), values[1]
    ok = _run(target, lambda c: c.cas(key, expected, new.encode()), write=True)
    if not ok:
        click.echo(f"FAILED: {key} does not hold the expected value", err=True)
        raise SystemExit(exitcodes.FAILURE)
    click.echo("OK")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@cluster_options
def status(target: Target, as_json: bool) -> None:
    """Show every node: role, term, leader, commit, applied, last index, and
    for the leader each follower's match index and lag.

    Exits 2 when no node answered."""
    nodes = _run(target, lambda c: c.status())
    rows = []
    for node_id, st in sorted(nodes.items(), key=lambda kv: (isinstance(kv[0], str), str(kv[0]))):
        if "error" in st:
            rows.append({"id": node_id, "address": st.get("address"), "reachable": False, "error": st["error"]})
            continue
        row = {"id": node_id, "address": st.get("address"), "reachable": True}
        for field in ("role", "term", "leader", "commit", "applied", "last_index"):
            row[field] = st.get(field)
        if st.get("followers"):
            row["followers"] = {
                str(f): {"match": m, "lag": max(0, (st.get("last_index") or 0) - m)}
                for f, m in sorted(st["followers"].items())
            }
        rows.append(row)
    if as_json:
        click.echo(json.dumps({"nodes": rows}, separators=(",", ":")))
    else:
        _print_table(rows)
    if not any(r["reachable"] for r in rows):
        raise SystemExit(exitcodes.UNAVAILABLE)


def _print_table(rows: list[dict]) -> None:
    header = ("ID", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST")
    table = [header]
    for r in rows:
        if not r["reachable"]:
            table.append((str(r["id"]), r["address"] or "-", f"unreachable: {r['error']}", "", "", "", "", ""))
            continue
        table.append(tuple("-" if v is None else str(v) for v in (
            r["id"], r["address"], r["role"], r["term"], r["leader"], r["commit"], r["applied"], r["last_index"])))
    widths = [max(len(row[i]) for row in table if len(row[i]) < 40) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in rows:
        for follower, f in r.get("followers", {}).items():
            click.echo(f"  leader {r['id']}: follower {follower} match={f['match']} lag={f['lag']}")
