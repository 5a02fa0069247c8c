"""The client commands: ``put``, ``get``, ``del``, ``cas`` and ``status``.

Each finds the cluster from ``--cluster host:port,...`` or ``--config F``
(either wins over the ``RAFTNET_CLUSTER`` environment variable, which is
only a default), and the shared secret from ``--secret-file`` or
``RAFTNET_SECRET`` (never a bare argument: command lines are visible to
every user of the machine).

Values are bytes: a value given on the command line is stored as the bytes
the shell passed (``os.fsencode``), ``-`` reads it from stdin and
``--file`` from a file; ``get`` writes the stored bytes unchanged to a pipe
or to ``--output`` (on a terminal it adds a newline). ``--json`` prints one
JSON object on stdout, for errors too.

Exit codes (``exitcodes.py``): 0 success; 1 key not found, cas mismatch or
the request refused; 2 timeout or cluster unavailable (no leader known, for
``status``); 3 not the leader (with ``--target``); 64 usage error; 130
interrupted.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import sys
from pathlib import Path

import click
import trio

from ..client import Client, ClientError, NotLeader, Timeout, Unavailable
from ..config import ConfigError, load_config
from ..excgroups import leaf
from ..kv.store import check_key
from . import exitcodes


class Target:
    """Where the command connects, gathered from the shared options."""

    def __init__(self, addresses: list[str], ids: dict[str, int], secret: bytes | None, timeout: float,
                 target: int | None, as_json: bool):
        self.addresses = addresses
        self.ids = ids  # address -> node id, when a config named them
        self.secret = secret
        self.timeout = timeout
        self.target = target
        self.as_json = as_json

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
    source = "--cluster" if cluster else "RAFTNET_CLUSTER"
    cluster = cluster or os.environ.get("RAFTNET_CLUSTER")
    if not cluster:
        raise click.UsageError("no cluster given: use --cluster host:port,..., --config F or set RAFTNET_CLUSTER")
    addresses = [a.strip() for a in cluster.split(",") if a.strip()]
    if not addresses:
        raise click.UsageError(f"{source} names no address")
    for a in addresses:
        host, sep, port = a.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.UsageError(f"bad address {a!r} in {source}: expected host:port")
    return addresses, {}, None


def cluster_options(fn):
    """The options every client command shares, folded into one ``Target``."""

    @click.option("--cluster", metavar="HOST:PORT,...",
                  help="Node addresses (any subset; the leader is found from there). Default: $RAFTNET_CLUSTER.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Take the node addresses (and secret) from a cluster.toml.")
    @click.option("--target", type=click.IntRange(min=1), metavar="ID",
                  help="Send to this node only; do not follow redirects (exit 3 if it is not the leader).")
    @click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
                  help="Seconds for the whole command, retries included.")
    @click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
                  help="File holding the cluster's shared secret (or set RAFTNET_SECRET).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (errors too).")
    @functools.wraps(fn)
    def wrapper(cluster, config_path, target, timeout, secret_file, as_json, **kwargs):
        addresses, ids, config_secret = _addresses(cluster, config_path)
        secret = _read_secret(secret_file) or config_secret
        return fn(Target(addresses, ids, secret, timeout, target, as_json), **kwargs)

    return wrapper


def _emit(target: Target, obj: dict) -> None:
    if target.as_json:
        click.echo(json.dumps(obj, separators=(",", ":")))


def _fail(target: Target, code: int, line: str, **fields) -> None:
    """One line on stderr (and the same facts as JSON on stdout with --json), then exit."""
    _emit(target, {"ok": False, **fields, "message": line})
    click.echo(f"error: {line}", err=True)
    raise SystemExit(code)


def _run(target: Target, op):
    """Run ``op(client)`` and map client errors to exit codes."""

    async def main():
        async with target.client() as c:
            return await op(c)

    try:
        return trio.run(main)
    except BaseException as exc:  # noqa: BLE001 - unwrapped and mapped below; the rest re-raised
        cause = leaf(exc)
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        if isinstance(cause, NotLeader):
            click.echo(json.dumps({"error": "not_leader", "leader": cause.leader}, separators=(",", ":")))
            raise SystemExit(exitcodes.NOT_LEADER) from None
        if isinstance(cause, (Timeout, Unavailable)):
            _fail(target, exitcodes.UNAVAILABLE, str(cause), error=cause.code, maybe_applied=cause.maybe_applied)
        if isinstance(cause, ClientError):
            _fail(target, exitcodes.FAILURE, str(cause), error=cause.code, maybe_applied=cause.maybe_applied)
        raise


def _key(key: str) -> str:
    problem = check_key(key, 1 << 62)  # the node checks the length against its own limit
    if problem:
        raise click.UsageError(f"bad KEY: {problem}")
    return key


def _value(value: str | None, path: Path | None, what: str = "VALUE") -> bytes:
    """The bytes of a value: the argument as the shell passed it, ``-`` for
    stdin, or the contents of ``--file``."""
    if path is not None:
        if value is not None:
            raise click.UsageError(f"give {what} or --file, not both")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise click.UsageError(f"cannot read --file {path}: {exc.strerror}") from None
    if value is None:
        raise click.UsageError(f"give {what}, '-' to read it from stdin, or --file PATH")
    if value == "-":
        return sys.stdin.buffer.read()
    return os.fsencode(value)


def _json_value(value: bytes) -> dict:
    out: dict = {"value_base64": base64.b64encode(value).decode()}
    try:
        out["value"] = value.decode()
    except UnicodeDecodeError:
        out["value"] = None  # not text: use value_base64
    return out


@click.command("put")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the value from this file (any bytes).")
@cluster_options
def put(target: Target, key: str, value: str | None, path: Path | None) -> None:
    """Set KEY to VALUE (or '-' to read stdin, or --file PATH).

    Prints `OK leader=<id> index=<n>`."""
    key, data = _key(key), _value(value, path)
    r = _run(target, lambda c: c.put(key, data))
    _emit(target, {"ok": True, "key": key, "leader": r.leader, "index": r.index})
    if not target.as_json:
        click.echo(f"OK leader={r.leader} index={r.index}")


@click.command("get")
@click.argument("key")
@click.option("--stale", is_flag=True,
              help="Read the local state of the node asked, without confirming leadership: fast, possibly stale.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the value to this file instead of stdout.")
@cluster_options
def get(target: Target, key: str, stale: bool, output: Path | None) -> None:
    """Print the value of KEY (exit 1 if it does not exist). Linearizable unless --stale.

    To a pipe or --output the bytes are written exactly as stored; on a
    terminal a newline follows them."""
    key = _key(key)
    value = _run(target, lambda c: c.get(key, stale=stale))
    if value is None:
        _fail(target, exitcodes.FAILURE, f"not found: {key}", error="not_found", key=key, found=False)
    if output is not None:
        try:
            output.write_bytes(value)
        except OSError as exc:
            _fail(target, exitcodes.FAILURE, f"cannot write {output}: {exc.strerror}", error="output")
        _emit(target, {"ok": True, "key": key, "found": True, "bytes": len(value), "output": str(output)})
        return
    if target.as_json:
        _emit(target, {"ok": True, "key": key, "found": True, **_json_value(value)})
        return
    out = sys.stdout.buffer
    out.write(value + (b"\n" if sys.stdout.isatty() else b""))
    out.flush()


@click.command("del")
@click.argument("key")
@cluster_options
def delete(target: Target, key: str) -> None:
    """Delete KEY. Prints `OK`, or exits 1 if KEY did not exist."""
    key = _key(key)
    existed = _run(target, lambda c: c.delete(key))
    if not existed:
        _fail(target, exitcodes.FAILURE, f"not found: {key}", error="not_found", key=key, existed=False)
    _emit(target, {"ok": True, "key": key, "existed": True})
    if not target.as_json:
        click.echo("OK")


@click.command("cas")
@click.argument("key")
@click.argument("values", nargs=-1, metavar="OLD NEW")
@click.option("--absent", is_flag=True, help="Expect KEY not to exist (then give only NEW).")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Read NEW from this file (then give only OLD, or nothing with --absent).")
@cluster_options
def cas(target: Target, key: str, values: tuple[str, ...], absent: bool, path: Path | None) -> None:
    """Set KEY to NEW only if it currently holds OLD (or, with --absent, does not exist).

    '-' as NEW reads it from stdin. Prints `OK`, or exits 1 if the current
    value differs."""
    key = _key(key)
    wanted = (0 if absent else 1) + (0 if path else 1)
    if len(values) != wanted:
        usage = {(True, False): "KEY NEW", (True, True): "KEY --file PATH", (False, False): "KEY OLD NEW",
                 (False, True): "KEY OLD --file PATH"}[(absent, path is not None)]
        raise click.UsageError(f"give {usage}" + ("" if absent else " (or --absent)"))
    expected = None if absent else os.fsencode(values[0])
    new = _value(None if path else values[-1], path, "NEW")
    swapped = _run(target, lambda c: c.cas(key, expected, new))
    if not swapped:
        _fail(target, exitcodes.FAILURE, f"{key} does not hold the expected value", error="mismatch", key=key,
              swapped=False)
    _emit(target, {"ok": True, "key": key, "swapped": True})
    if not target.as_json:
        click.echo("OK")


@click.command("status")
@cluster_options
def status(target: Target) -> None:
    """Show every node: role, term, leader, commit, applied, last index, and
    for the leader each follower's match index and lag.

    Exits 2 when no node answered or none knows a leader."""
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
    leaders = {r["leader"] for r in rows if r["reachable"] and r.get("leader") is not None}
    if target.as_json:
        click.echo(json.dumps({"nodes": rows, "leader": next(iter(leaders)) if len(leaders) == 1 else None},
                              separators=(",", ":")))
    else:
        _print_table(rows)
    if not any(r["reachable"] for r in rows):
        click.echo("error: no node answered", err=True)
        raise SystemExit(exitcodes.UNAVAILABLE)
    if not leaders:
        click.echo("error: no leader known to any node that answered", err=True)
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
