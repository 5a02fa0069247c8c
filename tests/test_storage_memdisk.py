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


def _entries(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(i, term, b"%d" % i) for i in range(lo, hi + 1)]


def test_a_crash_mid_write_keeps_a_prefix_and_the_hard_state_only_after_every_entry():
    import random

    seen_kept, seen_hs = set(), set()
    for seed in range(200):
        disk = MemoryDisk()
        disk.save(HardState(1, 1, 0), _entries(1, 5, 1))
        write = disk.begin(HardState(2, 2, 3), _entries(4, 8, 2))  # truncates at 4
        disk.crash(random.Random(seed))
        terms = [e.term for e in disk.entries]
        kept = sum(1 for t in terms if t == 2)
        # Old entries up to the truncation point stay; a prefix of the new ones follows.
        assert terms[:3] == [1, 1, 1]
        assert terms == [1, 1, 1] + [2] * kept or (kept == 0 and terms == [1] * 5)
        seen_kept.add(kept)
        if disk.hard_state.term == 2:
            assert kept == 5  # the hard state is written after the entries
        seen_hs.add(disk.hard_state.term)
        try:
            write.finish()
        except AssertionError:
            pass  # the crash ended that write
        else:
            raise AssertionError("a write survived the crash that ended it")
    assert seen_kept == {0, 1, 2, 3, 4, 5} and seen_hs == {1, 2}


def test_an_unsynced_commit_index_may_be_lost_by_a_later_crash():
    import random

    lost = 0
    for seed in range(50):
        disk = MemoryDisk()
        disk.save(HardState(1, 1, 0), _entries(1, 3, 1))
        disk.save(HardState(1, 1, 3), [])  # commit only: not fsynced
        disk.crash(random.Random(seed))
        assert disk.hard_state.commit in (0, 3) and (disk.hard_state.term, disk.hard_state.vote) == (1, 1)
        lost += disk.hard_state.commit == 0
        # A term change writes the synced slots, commit included.
        disk.save(HardState(2, None, 3), [])
        disk.crash(random.Random(seed))
        assert disk.hard_state == HardState(2, None, 3)
    assert 0 < lost < 50
