"""``raftnet serve``: run one node of a cluster until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click
import trio

from ..config import ConfigError, load_config
from ..excgroups import leaf
from ..logs import FORMATS, LEVELS, setup_logging
from . import exitcodes

log = logging.getLogger("raftnet.serve")


async def _run(config, node_id: int, data_dir: Path | None, gc_mode: str) -> None:
    from ..node import Node, collector

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Node(config, node_id, data_dir=data_dir) as node, trio.open_nursery() as nursery:
            if gc_mode == "managed":
                nursery.start_soon(collector.manage, lambda: node.raft.log.first_index)
            log.info("node %d serving on %s (cluster %r)", node_id, node.address, config.name)
            async for signum in signals:
                log.info("node %d got %s: shutting down", node_id, signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
        # Leaving the block stopped accepting, cancelled the actors (a save in
        # progress finishes first: it runs in a thread) and closed the WAL.


@click.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster.toml describing every node.")
@click.option("--id", "node_id", required=True, type=int, help="Which node of the config this process is.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Override [storage] data_dir for this node.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(LEVELS))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(FORMATS),
              help="json prints one JSON object per line.")
@click.option("--gc", "gc_mode", default="managed", show_default=True, envvar="RAFTNET_GC",
              type=click.Choice(["managed", "python"]),
              help="managed keeps Python's cycle collector from walking the whole log in "
                   "event-loop stalls (docs/node.md); python leaves it as it is. Env: RAFTNET_GC.")
def serve(config_path: Path, node_id: int, data_dir: Path | None, log_level: str, log_format: str,
          gc_mode: str) -> None:
    """Run node ID of the cluster described by --config."""
    setup_logging(log_level, log_format)
    try:
        config = load_config(config_path)
        config.node(node_id)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from ..storage import Corruption, StorageError, StorageFailed

    try:
        trio.run(_run, config, node_id, data_dir, gc_mode)
    except BaseException as exc:  # noqa: BLE001 - mapped to exit codes below, the rest re-raised
        cause = leaf(exc)
        if isinstance(cause, StorageFailed):
            # The disk refused a write: stop rather than run on a log that
            # is not what the core believes it wrote.
            log.critical("node %d stopped: storage failed: %s", node_id, cause)
            raise SystemExit(exitcodes.FAILURE) from None
        if isinstance(cause, Corruption):
            log.error("refusing to start: %s", cause)
            raise SystemExit(exitcodes.CORRUPTION) from None
        if isinstance(cause, StorageError):
            log.error("refusing to start: %s", cause)
            raise SystemExit(exitcodes.FAILURE) from None
        if isinstance(cause, OSError):
            log.error("node %d failed: %s", node_id, cause)
            raise SystemExit(exitcodes.FAILURE) from None
        if isinstance(cause, KeyboardInterrupt):
            raise SystemExit(exitcodes.OK) from None
        if isinstance(cause, Exception):
            # A bug of ours: one line for the operator; the traceback at debug level.
            log.critical("node %d crashed: %s: %s", node_id, type(cause).__name__, str(cause).splitlines()[0]
                         if str(cause) else "(no message)")
            log.debug("the crash's traceback", exc_info=exc)
            raise SystemExit(exitcodes.FAILURE) from None
        raise

