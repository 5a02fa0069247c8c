"""Keeping CPython's cycle collector off the Raft log.

A node holds up to ``every_entries + trailing_entries`` log entries in
memory (about 105,000 by default), each a small GC-tracked object, and none
of them ever takes part in a reference cycle: refcounting frees each one
when compaction drops it. CPython's collector does not know that. It runs a
full collection whenever the objects that reached the oldest generation grow
by a quarter, and each one walks every entry: measured on a leader at 7,700
puts/s, every 5-7 s, 40-200 ms with the event loop stopped. Those stalls
were the benchmark's p99.9 and max latency (docs/bench.md).

``manage`` moves every object that is alive into CPython's permanent
generation (``gc.freeze()``, constant time) once a second, so automatic
collections only ever walk the objects of the last second. Frozen objects
are still freed by refcounting as usual; the price is that cyclic garbage
that was alive at a freeze waits for the next full collection, which
``manage`` runs itself (unfreeze, collect, freeze) right after a compaction
of the log, when the heap is smallest: the first compaction at least a
minute after the previous full collection, or after five minutes with no
compaction. (A full collection still walks the ~40,000 objects a node
keeps for good, modules and functions: 20-40 ms on a loaded node. At every
compaction, every 12 s at 8,000 puts/s, that showed in the latencies.)

The collector is process-wide, so this is ``raftnet serve``'s choice
(``--gc managed``, the default), not ``Node``'s: a program that embeds a
``Node`` keeps its own collector settings.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

import trio

log = logging.getLogger("raftnet.node")

FREEZE_EVERY = 1.0  # seconds between freezes
MIN_GAP = 60.0  # seconds between two full collections at least ...
MAX_GAP = 300.0  # ... and at most, however long the log goes without a compaction
SLOW_FULL = 0.050  # a full collection longer than this is logged


def full_collection() -> tuple[int, float]:
    """Collect everything, frozen objects included, then freeze what is left.
    Returns the objects collected and the seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected, time.perf_counter() - started


async def manage(first_index: Callable[[], int], *, freeze_every: float = FREEZE_EVERY,
                 min_gap: float = MIN_GAP, max_gap: float = MAX_GAP) -> None:
    """Run until cancelled (then leave everything unfrozen). ``first_index``
    tells the log's first index: when it moves, the log was compacted. A
    full collection runs at the first compaction ``min_gap`` seconds or more
    after the last one, or ``max_gap`` seconds after it without one."""
    full_collection()
    first, last_full = first_index(), trio.current_time()
    try:
        while True:
            await trio.sleep(freeze_every)
            now, index = trio.current_time(), first_index()
            compacted, first = index != first, index
            since = now - last_full
            if (compacted and since >= min_gap) or since >= max_gap:
                last_full = now
                collected, seconds = full_collection()
                level = logging.INFO if seconds > SLOW_FULL else logging.DEBUG
                log.log(level, "full garbage collection: %d objects freed in %.1f ms", collected, seconds * 1000)
            else:
                gc.freeze()
    finally:
        gc.unfreeze()
