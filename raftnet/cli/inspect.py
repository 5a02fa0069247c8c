"""``raftnet inspect DATA_DIR``: what a node's data directory holds.

Read-only: every file is opened for reading only and nothing is created
(not even the lock file), so it is safe on a directory a crashed node left
behind (a torn last batch is reported, not repaired; the node repairs it
when it starts). While it reads it holds a shared lock on the lock file
(when there is one), so a node starting meanwhile waits for it; if a node
already holds the directory, it reads anyway and says the view is live.

Damage does not stop the dump: everything up to the first damage is shown,
and the damage is the one ``raftnet serve`` would refuse to start with.
``--verify`` turns any damage into exit 4. With ``--json`` every outcome,
errors included, is one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import cbor2
import click

from ..core.messages import Entry, EntryKind
from ..core.ready import HardState
from ..storage import Corruption, StorageError, read_meta, scan_tolerant
from ..storage.hardstate import NAME as HARDSTATE, read_hard_state
from ..storage.lock import read_lock
from ..storage.replay import SegmentScan, check_commit
from . import exitcodes


def _range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("..")
    try:
        a = int(lo) if lo else 1
        b = int(hi) if hi else (1 << 62)
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected A..B (either side may be empty)") from None
    if not sep or a < 1 or b < a:
        raise click.BadParameter(f"{text!r}: expected A..B with 1 <= A <= B")
    return a, b


def _show_command(data: bytes, kind: EntryKind) -> object:
    if kind is EntryKind.NOOP:
        return None
    try:
        value = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - not CBOR: show a preview
        return {"hex": data[:32].hex(), "bytes": len(data)}
    return _jsonable(value)


def _jsonable(v: object) -> object:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return {"hex": v[:32].hex(), "bytes": len(v)}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


@click.command("inspect")
@click.argument("data_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--entries", "entry_range", metavar="A..B", help="Also print the entries with A <= index <= B.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verify", is_flag=True,
              help="Check every checksum and index continuity; exit 4 naming the first problem.")
def inspect(data_dir: str, entry_range: str | None, as_json: bool, verify: bool) -> None:
    """Summarize (and optionally dump) the WAL in DATA_DIR without modifying it."""
    try:
        rng = _range(entry_range) if entry_range else None
    except click.BadParameter as exc:
        if not as_json:
            raise
        _fail_json({"error": "usage", "message": f"--entries: {exc.message}"}, exitcodes.USAGE)
    held = read_lock(data_dir)
    node = {"running": held.running, "pid": held.pid}
    if held.running and not as_json:
        pid = held.pid if held.pid is not None else "unknown"
        click.echo(f"node running (pid {pid}): this is a live view; the tail may be mid-write", err=True)
    try:
        found = _read(data_dir)
    except StorageError as exc:  # no meta: not a data directory at all
        if not as_json:
            raise click.UsageError(str(exc)) from None
        _fail_json({"error": "not_a_data_directory", "message": str(exc), **node}, exitcodes.USAGE)
    except OSError as exc:
        message = f"cannot read {exc.filename}: {exc.strerror}"
        if as_json:
            _fail_json({"error": "io", "message": message, **node}, exitcodes.FAILURE)
        click.echo(f"error: {message}", err=True)
        raise SystemExit(exitcodes.FAILURE) from None
    finally:
        held.release()
    meta, hs, entries, damage = found.meta, found.hard_state, found.entries, found.damage
    if verify and damage:
        click.echo(str(damage[0]), err=True)
        if as_json:
            _fail_json({"error": "corruption", **_damage(damage[0]), **node}, exitcodes.CORRUPTION)
        raise SystemExit(exitcodes.CORRUPTION)
    first = entries[0].index if entries else 1
    last = entries[-1].index if entries else 0
    segments = []
    for s in found.scans:
        segments.append({
            "file": os.path.basename(s.path), "seq": s.seq, "first_index": s.first_index,
            "log_last_index_after": s.last_index, "bytes": s.size, "used_bytes": s.end,
            "batches": s.batches, "torn_tail_at": s.torn_at, "superseded": s.superseded, "empty": s.empty,
        })
    summary = {
        "data_dir": os.path.abspath(data_dir),
        "cluster": None if meta is None else _jsonable(meta.get("cluster")),
        "node_id": None if meta is None else _jsonable(meta.get("node_id")),
        "term": None if hs is None else hs.term, "vote": None if hs is None else hs.vote,
        "commit": None if hs is None else hs.commit,
        "first_index": first, "last_index": last,
        "entries": len(entries), "batches": found.batches, "segments": segments, "snapshot": None,
        "verified": not damage, **node,
        "damage": _damage(damage[0]) if damage else None, "all_damage": [_damage(d) for d in damage],
    }
    shown = []
    if rng:
        for e in entries:
            if rng[0] <= e.index <= rng[1]:
                shown.append({"index": e.index, "term": e.term, "type": e.kind.name.lower(),
                              "size": len(e.data), "command": _show_command(e.data, e.kind)})
    if as_json:
        if rng:
            summary["entry_list"] = shown
        click.echo(json.dumps(summary, separators=(",", ":")))
    else:
        click.echo(f"data dir   {summary['data_dir']}")
        if meta is not None:
            click.echo(f"cluster    {summary['cluster']}  node {summary['node_id']}")
        else:
            click.echo("cluster    unknown (meta is damaged)")
        if hs is not None:
            click.echo(f"hard state term {hs.term}  vote {hs.vote}  commit {hs.commit}")
        else:
            click.echo("hard state unknown (damaged)")
        cut = "  (read up to the DAMAGE below)" if found.log_damage else ""
        click.echo(f"log        {len(entries)} entries, index {first}..{last}, {found.batches} batches{cut}")
        click.echo("snapshot   none")
        for seg in segments:
            torn = ""
            if seg["torn_tail_at"] is not None:
                torn = f"  TORN TAIL at offset {seg['torn_tail_at']} (a crash mid-write; dropped when the node starts)"
            if seg["superseded"] or seg["empty"]:
                why = "wholly truncated by a later segment" if seg["superseded"] else "empty"
                click.echo(f"  {seg['file']}  seq {seg['seq']}  first {seg['first_index']}  SKIPPED: {why} "
                           f"(left by a crash; removed when the node starts)")
                continue
            click.echo(f"  {seg['file']}  seq {seg['seq']}  first {seg['first_index']}  "
                       f"log ends at {seg['log_last_index_after']}  {seg['used_bytes']}/{seg['bytes']} bytes{torn}")
        for e in shown:
            click.echo(f"{e['index']:>8}  term {e['term']:<5} {e['type']:<6} {e['size']:>6} B  "
                       f"{json.dumps(e['command'])}")
        for d in damage:
            click.echo(f"DAMAGE: {d}")
        if damage:
            more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
            click.echo(f"warning: damaged data directory (`raftnet serve` would refuse it): {damage[0]}{more}",
                       err=True)
    if verify:
        click.echo(f"verified: every checksum and index of {len(entries)} entries is good", err=True)
    sys.stdout.flush()


@dataclass(frozen=True)
class _Found:
    """What a data directory holds, as far as it could be read."""

    meta: dict | None  # None: the meta file is damaged
    hard_state: HardState | None  # None: the hard state file is damaged or missing
    entries: list[Entry]  # the log up to its first damage
    scans: list[SegmentScan]
    batches: int
    log_damage: Corruption | None
    damage: list[Corruption]  # all of it, in the order recovery meets it: the first is what it refuses


def _read(data_dir: str) -> _Found:
    """Raises StorageError if DATA_DIR has no meta file (it is not a data
    directory), OSError if a file cannot be read at all."""
    damage = []
    try:
        meta = read_meta(data_dir)
    except Corruption as exc:
        meta = None
        damage.append(exc)
    hs_path = os.path.join(data_dir, HARDSTATE)
    try:
        _, hs = read_hard_state(hs_path)
    except FileNotFoundError:
        hs = None
        damage.append(Corruption(hs_path, 0, None, "hard state file is missing"))
    except Corruption as exc:
        hs = None
        damage.append(exc)
    entries, scans, batches, log_damage = scan_tolerant(data_dir)
    if log_damage is not None:
        damage.append(log_damage)
    elif hs is not None:
        short = check_commit(hs.commit, entries, scans)  # a log that lost fsynced entries
        if short is not None:
            damage.append(short)
    return _Found(meta, hs, entries, scans, batches, log_damage, damage)


def _damage(exc: Corruption) -> dict:
    return {"message": str(exc), "file": exc.path, "offset": exc.offset, "index": exc.index, "reason": exc.reason}


def _fail_json(obj: dict, code: int) -> NoReturn:
    click.echo(json.dumps(obj, separators=(",", ":")))
    sys.stdout.flush()
    raise SystemExit(code)
