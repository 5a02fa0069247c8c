"""The WAL after snapshots: compaction deletes covered segments, an install
replaces the log, and recovery reconciles the log with the newest snapshot
(including a crash between an install and the old segments' deletion)."""

from __future__ import annotations

import os

import pytest

from raftnet.core.messages import Entry
from raftnet.core.ready import HardState
from raftnet.storage import Corruption, Storage, StorageError, list_segments
from raftnet.storage.snapshot import SnapshotMeta, write_snapshot

SEG = 64 * 1024


def open_(d) -> Storage:
    return Storage.open(str(d), cluster="c", node_id=1, segment_size=SEG)


def fill(st: Storage, lo: int, hi: int, term: int = 1, size: int = 2000) -> None:
    for i in range(lo, hi + 1):
        st.save(HardState(term, 1, i - 1), [Entry(i, term, bytes([i % 251]) * size)])


def snap(d, index: int, term: int = 1) -> str:
    return write_snapshot(str(d), SnapshotMeta(index, term, (1, 2, 3)), [b"state at %d" % index])


def test_compaction_deletes_only_covered_segments_and_the_log_reopens_after_them(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 200)
    segments = list_segments(str(tmp_path))
    assert len(segments) >= 4
    snap(tmp_path, 150)
    deleted = st.compact(150)
    assert deleted >= 2
    left = list_segments(str(tmp_path))
    assert left[0][0] <= 151  # nothing the snapshot does not cover went
    assert st.first_index == left[0][0] and st.last_index == 200
    fill(st, 201, 210)
    st.close()
    st = open_(tmp_path)
    assert st.first_index == left[0][0] and st.last_index == 210
    assert st.entries(st.first_index, 211)[0].index == st.first_index
    assert st.snapshot[0].index == 150
    st.close()


def test_compaction_keeps_the_segment_being_written(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 100)
    snap(tmp_path, 100)
    st.compact(100)
    assert list_segments(str(tmp_path))[-1][1] == st._seg_path
    fill(st, 101, 102)
    st.close()
    st = open_(tmp_path)
    assert st.last_index == 102
    st.close()


def test_a_segment_mostly_covered_by_a_snapshot_is_rolled_away_so_a_restart_does_not_replay_it(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 20)  # 40 KB of one 64 KiB segment
    snap(tmp_path, 3)
    st.compact(3)  # covers 6 KB: less than an eighth, the segment goes on
    fill(st, 21, 21)
    assert len(list_segments(str(tmp_path))) == 1
    snap(tmp_path, 15)
    st.compact(15)  # covers 30 KB: the next append starts a new segment
    fill(st, 22, 23)
    assert [first for first, _ in list_segments(str(tmp_path))] == [1, 22]
    snap(tmp_path, 23)
    assert st.compact(23) == 1  # and the next compaction deletes the old one whole
    st.close()
    st = open_(tmp_path)
    assert (st.first_index, st.last_index) == (22, 23)  # a restart reads two entries, not 23
    st.close()


def test_reset_replaces_the_log_with_the_snapshot(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 50)
    snap(tmp_path, 500, term=3)
    st.reset(500)
    assert list_segments(str(tmp_path)) == [] and st.last_index == 500
    st.save(HardState(3, None, 500), [Entry(501, 3, b"next")])
    st.close()
    st = open_(tmp_path)
    assert (st.first_index, st.last_index, st.hard_state.commit) == (501, 501, 500)
    assert st.snapshot[0].index == 500
    st.close()


@pytest.mark.parametrize("case", ["shorter", "conflicting"])
def test_a_crash_between_install_and_segment_deletion_drops_the_old_log(tmp_path, case):
    st = open_(tmp_path)
    fill(st, 1, 60, term=1)
    st.close()
    # The snapshot was renamed into place, then the node died before reset().
    if case == "shorter":
        snap(tmp_path, 100, term=2)
    else:
        snap(tmp_path, 40, term=2)  # our entry 40 is of term 1: the log contradicts it
    st = open_(tmp_path)
    index = 100 if case == "shorter" else 40
    assert (st.first_index, st.last_index) == (index + 1, index)
    assert list_segments(str(tmp_path)) == []
    st.save(HardState(2, None, index), [Entry(index + 1, 2, b"x")])
    st.close()
    st = open_(tmp_path)
    assert st.last_index == index + 1
    st.close()


def test_a_log_that_starts_after_the_snapshot_is_refused(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 200)
    st.close()
    first = list_segments(str(tmp_path))[0][1]
    os.unlink(first)  # entries the snapshot does not cover are gone
    snap(tmp_path, 5)
    with pytest.raises(Corruption, match="missing"):
        open_(tmp_path)


def test_a_compacted_log_without_any_snapshot_is_refused(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 200)
    st.close()
    os.unlink(list_segments(str(tmp_path))[0][1])
    with pytest.raises(Corruption):
        open_(tmp_path)


def test_nothing_overwrites_what_a_snapshot_covers(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 10)
    snap(tmp_path, 10)
    st.reset(10)
    with pytest.raises(StorageError, match="covers"):
        st.save(None, [Entry(10, 2, b"x")])
    st.close()


def test_a_damaged_newest_snapshot_falls_back_to_the_older_one(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 100)
    snap(tmp_path, 50)
    newest = snap(tmp_path, 90)
    st.compact(50)
    st.close()
    with open(newest, "r+b") as f:
        f.seek(40)
        f.write(b"\xff\xff\xff")
    st = open_(tmp_path)
    assert st.snapshot[0].index == 50 and st.last_index == 100
    st.close()


def test_compaction_releases_covered_entries_from_memory_while_their_segment_stays_on_disk(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 20)  # one segment
    snap(tmp_path, 12)
    assert st.compact(12) == 0
    assert st.first_index == 1  # the segment still holds 1..20 on disk
    assert [e.index for e in st.entries(1, 21)] == list(range(13, 21))  # but memory only 13..20
    assert st.last_index == 20
    with pytest.raises(StorageError, match="covers the log up to 12"):
        st.save(None, [Entry(12, 2, b"x")])
    st.save(HardState(2, 1, 14), [Entry(15, 2, b"y")])  # a truncation above the compaction point still works
    assert [(e.index, e.term) for e in st.entries(13, 16)] == [(13, 1), (14, 1), (15, 2)]
    st.close()
    st = open_(tmp_path)  # a restart reads back everything still on disk
    assert (st.first_index, st.last_index) == (1, 15)
    assert [e.term for e in st.entries(1, 16)] == [1] * 14 + [2]
    st.close()


def test_compacting_everything_leaves_the_last_index_where_it_was(tmp_path):
    st = open_(tmp_path)
    fill(st, 1, 5)
    snap(tmp_path, 5)
    st.compact(5)
    assert st.entries(1, 6) == [] and st.last_index == 5
    fill(st, 6, 6)
    assert [e.index for e in st.entries(1, 7)] == [6]
    st.close()
