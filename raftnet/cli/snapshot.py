"""``raftnet snapshot``: take one now, back one up, seed a new cluster from one.

``trigger`` asks the leader (or ``--target ID``) to take a snapshot now.
``save FILE`` takes one on the leader, once it has applied every write
acknowledged before the command, and downloads it to FILE (verified, then
renamed into place), as ``etcdctl snapshot save`` does; with ``--target``
the snapshot is that node's, which may lag the leader.

``restore`` seeds a new node's data directory from a snapshot file (a
backup), as ``etcdctl snapshot restore`` does.

Run it once per node of the new cluster, with the new cluster's config:
each node then starts from the snapshot (its state machine restored from
it, its log empty after it, its hard state at the snapshot's term and index)
and the cluster carries on from there. The snapshot's configuration is
replaced by the new config's nodes. Only an empty or missing data directory
is seeded: restoring over a node's data would throw away what it holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..config import ConfigError, load_config
from . import exitcodes
from .kv import Target, _emit, _run, cluster_options


@click.group("snapshot")
def snapshot() -> None:
    """Snapshots of the state machine: take one, back one up, restore a backup."""


def _describe(r: dict) -> str:
    return f"snapshot {r['index']} (term {r['term']}, {r['size']} bytes) on node {r['node']}: {r['name']}"


@snapshot.command("trigger")
@cluster_options
def trigger(target: Target) -> None:
    """Take a snapshot now, on the leader (or on --target ID).

    Prints the snapshot's index, term, size and file name."""
    r = _run(target, lambda c: c.snapshot())
    _emit(target, {"ok": True, **r})
    if not target.as_json:
        click.echo(_describe(r))


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@cluster_options
def save(target: Target, file: Path) -> None:
    """Back up the cluster: take a snapshot on the leader and download it to FILE.

    The snapshot holds every write acknowledged before the command started.
    --timeout bounds each step (taking it, each chunk), not the whole download."""
    if file.exists() and file.is_dir():
        raise click.UsageError(f"{file} is a directory")
    r = _run(target, lambda c: c.snapshot_save(file))
    _emit(target, {"ok": True, **r, "file": str(file)})
    if not target.as_json:
        click.echo(f"saved {_describe(r)} to {file}")


@snapshot.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The new cluster's cluster.toml.")
@click.option("--id", "node_id", required=True, type=int, help="Which node of the config to seed.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Override [storage] data_dir for this node.")
def restore(file: Path, config_path: Path, node_id: int, data_dir: Path | None) -> None:
    """Seed node ID's (empty) data directory from snapshot FILE."""
    from ..core.ready import HardState
    from ..storage import Corruption, Storage, StorageError
    from ..storage.snapshot import SnapshotMeta, read_snapshot, verify_snapshot, write_snapshot

    try:
        config = load_config(config_path)
        config.node(node_id)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    target = str(data_dir) if data_dir is not None else config.data_dir(node_id)
    if not file.is_file():
        raise click.UsageError(f"{file}: no such snapshot file")
    if os.path.isdir(target) and os.listdir(target):
        raise click.UsageError(f"{target} is not empty: restore only seeds a new node's data directory")
    try:
        meta = verify_snapshot(str(file))
    except Corruption as exc:
        click.echo(f"raftnet: error: {file}: {exc}", err=True)
        raise SystemExit(exitcodes.CORRUPTION) from None
    if meta.index == 0:
        raise click.UsageError(f"{file} is a snapshot of an empty log (index 0): nothing to restore")
    voters = tuple(sorted(n.id for n in config.nodes))
    try:
        storage = Storage.open(target, cluster=config.name, node_id=node_id, fsync=config.storage.fsync,
                               segment_size=config.storage.segment_size)
        try:
            _, blobs = read_snapshot(str(file))
            write_snapshot(target, SnapshotMeta(meta.index, meta.term, voters), blobs)
            storage.save(HardState(meta.term, None, meta.index), [])
        finally:
            storage.close()
    except Corruption as exc:
        click.echo(f"raftnet: error: {exc}", err=True)
        raise SystemExit(exitcodes.CORRUPTION) from None
    except (StorageError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {file} (index {meta.index}, term {meta.term}) into {target} "
               f"for node {node_id} of cluster {config.name!r}")
