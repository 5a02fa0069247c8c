"""``raftnet inspect DATA_DIR``: what a stopped node's data directory holds.

Read-only: every file is opened for reading only, so it is safe on a
directory a crashed node left behind (a torn last batch is reported, not
repaired; the node repairs it when it starts).
"""

from __future__ import annotations

import json
import os
import sys

import cbor2
import click

from ..core.messages import EntryKind
from ..storage import Corruption, StorageError, read_meta, scan
from ..storage.hardstate import NAME as HARDSTATE, read_hard_state
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
    rng = _range(entry_range) if entry_range else None
    try:
        meta = read_meta(data_dir)
        _, hs = read_hard_state(os.path.join(data_dir, HARDSTATE))
        entries, scans, batches = scan(data_dir)
    except Corruption as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(exitcodes.CORRUPTION) from None
    except StorageError as exc:
        raise click.UsageError(str(exc)) from None
    except FileNotFoundError as exc:
        raise click.UsageError(f"{data_dir} is not a raftnet data directory ({exc.filename} is missing)") from None
    first = entries[0].index if entries else 1
    last = entries[-1].index if entries else 0
    segments = []
    for s in scans:
        segments.append({
            "file": os.path.basename(s.path), "seq": s.seq, "first_index": s.first_index,
            "log_last_index_after": s.last_index, "bytes": s.size, "used_bytes": s.end,
            "batches": s.batches, "torn_tail_at": s.torn_at,
        })
    summary = {
        "data_dir": os.path.abspath(data_dir), "cluster": meta.get("cluster"), "node_id": meta.get("node_id"),
        "term": hs.term, "vote": hs.vote, "commit": hs.commit, "first_index": first, "last_index": last,
        "entries": len(entries), "batches": batches, "segments": segments, "snapshot": None,
        "verified": True,
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
        click.echo(f"cluster    {summary['cluster']}  node {summary['node_id']}")
        click.echo(f"hard state term {hs.term}  vote {hs.vote}  commit {hs.commit}")
        click.echo(f"log        {len(entries)} entries, index {first}..{last}, {batches} batches")
        click.echo("snapshot   none")
        for seg in segments:
            torn = f"  TORN TAIL at offset {seg['torn_tail_at']}" if seg["torn_tail_at"] is not None else ""
            click.echo(f"  {seg['file']}  seq {seg['seq']}  first {seg['first_index']}  "
                       f"log ends at {seg['log_last_index_after']}  {seg['used_bytes']}/{seg['bytes']} bytes{torn}")
        for e in shown:
            click.echo(f"{e['index']:>8}  term {e['term']:<5} {e['type']:<6} {e['size']:>6} B  "
                       f"{json.dumps(e['command'])}")
    if verify:
        click.echo(f"verified: every checksum and index of {len(entries)} entries is good", err=True)
    sys.stdout.flush()
