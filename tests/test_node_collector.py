"""``raftnet serve --gc managed``: objects are frozen out of the automatic
collections, and cyclic garbage among them is still collected: at the
first compaction ``min_gap`` seconds after the last full collection, or
``max_gap`` seconds after it without one."""

from __future__ import annotations

import gc
import weakref
from functools import partial

import trio

from raftnet.node import collector


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_cyclic_garbage_frozen_alive_is_collected_once_the_log_is_compacted(autojump_clock):
    first = [1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(collector.manage, lambda: first[0], freeze_every=1.0, min_gap=10.0,
                                   max_gap=3600.0))
        await trio.sleep(0.5)  # manage has frozen everything alive
        garbage = Cycle()
        ref = weakref.ref(garbage)
        await trio.sleep(1.0)  # ... and frozen it again since
        assert gc.get_freeze_count() > 0
        del garbage
        gc.collect()  # a full collection does not look at frozen objects
        first[0] = 5000  # the log was compacted, but too soon after the last full collection
        await trio.sleep(12.0)
        assert ref() is not None
        first[0] = 10000  # compacted again
        await trio.sleep(1.5)
        assert ref() is None
        nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0  # cancelled, it leaves nothing frozen


async def test_without_compaction_a_full_collection_still_comes_every_max_gap_seconds(autojump_clock):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(collector.manage, lambda: 1, freeze_every=1.0, min_gap=10.0, max_gap=30.0))
        await trio.sleep(0.5)
        garbage = Cycle()
        ref = weakref.ref(garbage)
        await trio.sleep(1.0)
        del garbage
        await trio.sleep(20.0)
        assert ref() is not None
        await trio.sleep(15.0)
        assert ref() is None
        nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0
