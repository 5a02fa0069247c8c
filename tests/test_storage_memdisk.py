"""The memory disk (raftnet.storage.memdisk) and the real WAL keep the same log: random
sequences of appends and conflicting overwrites, then a "crash" (reopen)."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from raftnet.core.messages import Entry
from raftnet.core.ready import HardState
from raftnet.storage.memdisk import MemoryDisk
from raftnet.storage import Storage

ops = st.lists(st.tuples(st.integers(0, 30), st.integers(1, 5)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_memory_disk_matches_the_wal(ops_list):
    sim = MemoryDisk()
    with tempfile.TemporaryDirectory() as d:
        real = Storage.open(d, cluster="p", node_id=1, segment_size=64 * 1024, fsync="never")
        term = 1
        for back, count in ops_list:
            first = max(1, len(sim.entries) + 1 - back)
            term += 1 if back else 0
            batch = [Entry(i, term, b"%d/%d" % (i, term) * 10) for i in range(first, first + count)]
            hs = HardState(term, 1, 0)
            sim.save(hs, batch)
            real.save(hs, batch)
        real.close()
        reopened = Storage.open(d, cluster="p", node_id=1, segment_size=64 * 1024)
        assert reopened.entries(1, reopened.last_index + 1) == sim.entries
        assert reopened.hard_state == sim.hard_state
        reopened.close()
