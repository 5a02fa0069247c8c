"""``raftnet inspect DATA_DIR``: what a node's data directory holds;
``raftnet inspect --snapshot FILE``: what one snapshot file holds.

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

Snapshot files are listed with their index, term, size and configuration
(read from their headers); ``--verify`` reads each one whole. Damage to the
newest is damage like the log's (its blobs are the state the log after it
builds on); a damaged older one is marked, and is not. ``--snapshot FILE``
always reads the file whole: exit 4 and one line if it is damaged.
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
from ..storage.snapshot import LEFTOVER_SUFFIXES, list_snapshots, read_snapshot, snapshot_size
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
@click.argument("data_dir", required=False, type=click.Path(file_okay=False, exists=True))
@click.option("--entries", "entry_range", metavar="A..B", help="Also print the entries with A <= index <= B.")
@click.option("--snapshot", "snapshot_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True),
              help="Inspect and verify this snapshot file instead of a data directory.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verify", is_flag=True,
              help="Check every checksum and index continuity; exit 4 naming the first problem.")
def inspect(data_dir: str | None, entry_range: str | None, snapshot_file: str | None, as_json: bool,
            verify: bool) -> None:
    """Summarize (and optionally dump) the WAL in DATA_DIR, or check one
    snapshot FILE, without modifying anything."""
    try:
        if (data_dir is None) == (snapshot_file is None):
            raise click.UsageError("give a DATA_DIR or --snapshot FILE (one of them)")
        if snapshot_file is not None and entry_range:
            raise click.UsageError("--entries is for a data directory, not a snapshot file")
        rng = _range(entry_range) if entry_range else None
    except click.UsageError as exc:
        if not as_json:
            raise
        where = "--entries: " if isinstance(exc, click.BadParameter) else ""
        _fail_json({"error": "usage", "message": f"{where}{exc.message}"}, exitcodes.USAGE)
    if snapshot_file is not None:
        _inspect_snapshot(snapshot_file, as_json)
        return
    held = read_lock(data_dir)
    node = {"running": held.running, "pid": held.pid}
    if held.running and not as_json:
        pid = held.pid if held.pid is not None else "unknown"
        click.echo(f"node running (pid {pid}): this is a live view; the tail may be mid-write", err=True)
    try:
        found = _read(data_dir, verify)
    except StorageError as exc:  # no meta: not a data directory at all
        if not as_json:
            raise click.UsageError(str(exc)) from None
        _fail_json({"error": "not_a_data_directory", "message": str(exc), **node}, exitcodes.USAGE)
    except OSError as exc:
        _fail_io(exc, as_json, node)
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
        "entries": len(entries), "batches": found.batches, "segments": segments,
        "snapshot": found.snapshots[-1] if found.snapshots else None, "snapshots": found.snapshots,
        "snapshot_leftovers": found.leftovers,
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
        _echo_snapshots(found.snapshots, found.leftovers)
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
        good = sum(1 for s in found.snapshots if s["verified"])
        snaps = f"; {good} of {len(found.snapshots)} snapshot(s) verify, the newest among them" if good else ""
        click.echo(f"verified: every checksum and index of {len(entries)} entries is good{snaps}", err=True)
    sys.stdout.flush()


def _echo_snapshots(snapshots: list[dict], leftovers: list[str]) -> None:
    if not snapshots:
        click.echo("snapshot   none")
    else:
        newest = snapshots[-1]
        click.echo(f"snapshot   index {newest['index']}  term {newest['term']}  (newest of {len(snapshots)})")
    for s in snapshots:
        if s["damage"] is not None:
            state = f"DAMAGED: {s['damage']['reason']}"
        elif s["verified"]:
            state = f"verified: {s['blobs']} blobs, {s['blob_bytes']} bytes"
        else:
            state = "(header read; --verify reads it whole)"
        config = f"voters {s['voters']}  learners {s['learners']}  " if s["voters"] is not None else ""
        click.echo(f"  {s['file']}  index {s['index']}  term {s['term']}  {s['bytes']} bytes  {config}{state}")
    for name in leftovers:
        click.echo(f"  {name}  UNFINISHED: a snapshot write or transfer cut short; never read as a snapshot")


def _inspect_snapshot(path: str, as_json: bool) -> None:
    """``--snapshot FILE``: read it whole; exit 4 on damage."""
    try:
        meta, blobs = read_snapshot(path)
        count, total = _count_blobs(blobs)
        size = snapshot_size(path)
    except Corruption as exc:
        click.echo(str(exc), err=True)
        if as_json:
            _fail_json({"error": "corruption", **_damage(exc)}, exitcodes.CORRUPTION)
        raise SystemExit(exitcodes.CORRUPTION) from None
    except OSError as exc:
        _fail_io(exc, as_json, {})
    out = {"snapshot": os.path.abspath(path), "index": meta.index, "term": meta.term, "voters": list(meta.voters),
           "learners": list(meta.learners), "blobs": count, "blob_bytes": total, "bytes": size, "verified": True}
    if as_json:
        click.echo(json.dumps(out, separators=(",", ":")))
    else:
        click.echo(f"snapshot   {out['snapshot']}")
        click.echo(f"index      {meta.index}  term {meta.term}")
        click.echo(f"config     voters {out['voters']}  learners {out['learners']}")
        click.echo(f"blobs      {count}, {total} bytes (file {size} bytes)")
        click.echo(f"verified: every checksum of {count} blobs and of the whole file is good", err=True)
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
    snapshots: list[dict]  # oldest first
    leftovers: list[str]  # names of unfinished snapshot files


def _read(data_dir: str, verify: bool) -> _Found:
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
    listed = list_snapshots(data_dir)
    snapshots = []
    for k, (index, term, path) in enumerate(listed):
        entry, exc = _read_snapshot(index, term, path, verify)
        snapshots.append(entry)
        if exc is not None and k == len(listed) - 1:  # an older one's damage is only marked
            damage.append(exc)
    leftovers = sorted(n for n in os.listdir(data_dir) if n.endswith(LEFTOVER_SUFFIXES))
    return _Found(meta, hs, entries, scans, batches, log_damage, damage, snapshots, leftovers)


def _read_snapshot(index: int, term: int, path: str, verify: bool) -> tuple[dict, Corruption | None]:
    """A snapshot's listing: from its header, or, with ``verify``, from
    reading it whole."""
    entry = {"file": os.path.basename(path), "index": index, "term": term, "bytes": snapshot_size(path),
             "voters": None, "learners": None, "verified": None, "blobs": None, "blob_bytes": None, "damage": None}
    try:
        meta, blobs = read_snapshot(path)
        entry.update(voters=list(meta.voters), learners=list(meta.learners))
        if verify:
            count, total = _count_blobs(blobs)
            entry.update(verified=True, blobs=count, blob_bytes=total)
    except Corruption as exc:
        entry.update(verified=False, damage=_damage(exc))
        return entry, exc
    return entry, None


def _count_blobs(blobs) -> tuple[int, int]:
    """(blobs, bytes) of a snapshot, read to its end: Corruption if damaged."""
    count = total = 0
    for blob in blobs:
        count += 1
        total += len(blob)
    return count, total


def _damage(exc: Corruption) -> dict:
    return {"message": str(exc), "file": exc.path, "offset": exc.offset, "index": exc.index, "reason": exc.reason}


def _fail_io(exc: OSError, as_json: bool, node: dict) -> NoReturn:
    message = f"cannot read {exc.filename}: {exc.strerror}"
    if as_json:
        _fail_json({"error": "io", "message": message, **node}, exitcodes.FAILURE)
    click.echo(f"error: {message}", err=True)
    raise SystemExit(exitcodes.FAILURE) from None


def _fail_json(obj: dict, code: int) -> NoReturn:
    click.echo(json.dumps(obj, separators=(",", ":")))
    sys.stdout.flush()
    raise SystemExit(code)
