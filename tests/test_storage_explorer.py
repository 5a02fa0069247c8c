"""The crash-state explorer (raftnet/storage/explore.py) in CI: a bounded
sample of crash states and disk faults for every workload, the crash model
of the recording file system it runs on, and proof that it catches the
defects it was built for when they are put back; and the defect its
snapshot workloads found, over every crash state.

`make crash-explore` runs the exhaustive set.
"""

from __future__ import annotations

import io
import os
import random
import re

import pytest

from raftnet.core.ready import HardState
from raftnet.storage import explore, hardstate, memfs, replay, snapshot, wal
from raftnet.storage.errors import Corruption
from raftnet.storage.snapshot import SnapshotMeta

LONG = os.environ.get("RAFTNET_LONG") == "1"
WAL_WORKLOADS = [w for w in explore.WORKLOADS if w not in explore.SNAPSHOT_WORKLOADS]


def run(workloads=None, per_point=24, faults=120, seed=None):
    seed = random.randrange(1 << 30) if seed is None else seed
    out = io.StringIO()
    rep = explore.run(workloads or [*WAL_WORKLOADS, "upgrade"], per_point, faults, seed, out=out)
    return seed, rep, out.getvalue()


def test_sampled_crash_states_all_recover_and_no_disk_fault_loses_data_silently():
    seed, rep, out = run(per_point=256 if LONG else 24, faults=1000 if LONG else 120)
    assert not rep.failures, f"seed {seed}:\n{out}\n" + "\n".join(rep.failures[:20])
    assert rep.crash_states > 2000 and rep.faults > 400, out
    assert rep.refused > 0 and rep.intact > 0, out  # the faults did land on live data, and on dead space


def test_sampled_snapshot_crash_states_recover_and_no_damaged_snapshot_is_used():
    """Compaction, an install from a leader's chunks, an install over a
    conflicting log: every crash state recovers the acknowledged log and the
    newest snapshot, whole; a damaged snapshot is refused or skipped for an
    older one the log still follows."""
    seed, rep, out = run(list(explore.SNAPSHOT_WORKLOADS), per_point=256 if LONG else 48, faults=2000 if LONG else 200)
    assert not rep.failures, f"seed {seed}:\n{out}\n" + "\n".join(rep.failures[:20])
    assert rep.crash_states > 400 and rep.faults > 400, out
    assert rep.fell_back > 0 and rep.refused > 0 and rep.intact > 0, out


# -- the recording file system's crash model ------------------------------------------------


def test_memfs_keeps_what_was_synced_and_may_drop_reorder_or_tear_the_rest():
    fs = memfs.MemFS()
    fs.makedirs("/d")
    f = fs.open("/d/a", create=True)
    fs.sync_dir("/d")
    f.pwrite(b"A" * 1024, 0)
    f.sync()
    f.pwrite(b"B" * 1024, 0)  # two sectors, not synced
    point = fs.crash_point(len(fs.ops))
    states = {s["/d/a"] for s in point.states(100, random.Random(1))}
    assert states == {b"A" * 1024, b"B" * 1024, b"B" * 512 + b"A" * 512, b"A" * 512 + b"B" * 512}
    # A rename not followed by a directory fsync may be lost; after one it is not.
    fs.rename("/d/a", "/d/b")
    names = {tuple(sorted(s)) for s in fs.crash_point(len(fs.ops)).states(100, random.Random(1))}
    assert names == {("/d/a",), ("/d/b",)}
    fs.sync_dir("/d")
    names = {tuple(sorted(s)) for s in fs.crash_point(len(fs.ops)).states(100, random.Random(1))}
    assert names == {("/d/b",)}
    # A crash before the first operation: the starting state.
    assert list(fs.crash_point(0).states(10, random.Random(1))) == [{}]


def test_memfs_injects_disk_errors():
    fs = memfs.MemFS()
    fs.makedirs("/d")
    fs.fail = lambda call, path: OSError(28, "No space left on device") if call == "allocate" else None
    with pytest.raises(wal.StorageError, match="No space left on device"):
        st = wal.Storage.open("/d", cluster="c", node_id=1, segment_size=1 << 16, fs=fs)
        st.save(None, [explore._entry(1, 1, 10)])


# -- it finds the defects it was built for ------------------------------------------------------


def _failures(monkeypatch, patches, workloads, per_point=16, faults=300):
    for target, name, value in patches:
        monkeypatch.setattr(target, name, value)
    seed, rep, out = run(workloads, per_point, faults, seed=7)
    return rep.failures


def test_it_catches_a_zero_header_read_as_the_end_of_the_log(monkeypatch):
    """Defect 1 (and 3): no check that only zeros follow the end."""
    real = replay._zero

    def end_at_any_zero_header(view, start, end=None):
        return True if end is None else real(view, start, end)

    failures = _failures(monkeypatch, [(replay, "_zero", end_at_any_zero_header)], ["appends"])
    # Fsynced entries lost without a word, or the "length ... runs past the end of the file".
    assert any("SILENT LOSS" in f or "runs past the end" in f for f in failures), failures[:5]


def test_it_catches_a_truncation_whose_superseded_segments_resurface(monkeypatch):
    """Defect 2: recovery that replays a segment a later truncation superseded."""
    real = replay._in_write_order

    def keep_superseded(data_dir, fs):
        for t in real(data_dir, fs):
            t[0].superseded = False
            yield t

    failures = _failures(monkeypatch, [(replay, "_in_write_order", keep_superseded)], ["truncations"])
    assert any("refused a crash state" in f or "not one that was acknowledged" in f for f in failures), failures[:5]


def test_it_catches_torn_leftovers_that_are_not_zeroed(monkeypatch):
    """Defect 3: zeroing only the torn batch's header leaves stale bytes behind it."""
    real = replay._torn_or_damaged

    def zero_only_the_header(s, view, start, bad, last, entries):
        real(s, view, start, bad, last, entries)
        s.torn_end = min(s.torn_end, start + 12)

    failures = _failures(monkeypatch, [(replay, "_torn_or_damaged", zero_only_the_header)], ["appends"], faults=0)
    assert any("clean restart" in f for f in failures), failures[:5]


def test_it_catches_a_hard_state_written_without_its_fsyncs(monkeypatch):
    """Defect 4's cousin: a vote written without an fsync can be lost."""
    real = memfs.MemFile.datasync

    def no_fsync_of_the_hard_state(self):
        if not self.path.endswith(hardstate.NAME):
            real(self)

    failures = _failures(monkeypatch, [(memfs.MemFile, "datasync", no_fsync_of_the_hard_state),
                                       (memfs.MemFile, "sync", no_fsync_of_the_hard_state)], ["hard-states"], faults=0)
    assert any("went back" in f for f in failures), failures[:5]


def test_it_catches_a_missing_directory_fsync(monkeypatch):
    """The fifth defect it found: a new directory's hard state was not made
    durable before its meta, so a crash could leave meta without it."""
    def create_without_dir_fsync(self, cluster, node_id):
        sync, self.fs.sync_dir = self.fs.sync_dir, lambda path: None
        try:
            self._hard = hardstate.HardStateFile(self.fs, self._path(hardstate.NAME), create=True)
        finally:
            self.fs.sync_dir = sync
        self._write_meta(cluster, node_id)

    failures = _failures(monkeypatch, [(wal.Storage, "_create", create_without_dir_fsync)], ["restarts"], faults=0)
    assert any("hard state file is missing" in f for f in failures), failures[:5]


def test_it_catches_a_snapshot_used_without_reading_it_whole(monkeypatch):
    """Recovery that checks only a snapshot's header would use a damaged one."""
    def header_only(data_dir, fs):
        for _, _, path in reversed(snapshot.list_snapshots(data_dir, fs=fs)):
            try:
                return snapshot.read_snapshot(path, fs=fs)[0], path
            except Corruption:
                continue
        return None

    failures = _failures(monkeypatch, [(wal, "latest_snapshot", header_only)], ["compaction"], per_point=4, faults=40)
    assert any("SILENTLY ACCEPTED: recovered a damaged snapshot" in f for f in failures), failures[:5]


def test_it_catches_an_install_whose_old_log_survives_a_crash(monkeypatch):
    """Recovery that keeps a log the newest snapshot contradicts (a crash
    between writing a leader's snapshot and resetting the log)."""
    failures = _failures(monkeypatch, [(wal.Storage, "_log_contradicts", lambda self, meta: False)],
                         ["install-conflict"], per_point=4, faults=0)
    assert any("kept a log the snapshot contradicts" in f for f in failures), failures[:5]


def test_it_catches_a_snapshot_renamed_before_its_fsync(monkeypatch):
    """write_snapshot without the fsync before the rename: a crash can leave
    the name on a torn file, and the compaction after it has deleted the
    log the older snapshot needs."""
    real = memfs.MemFile.sync

    def no_fsync_of_snapshots(self):
        if not self.path.endswith(".snap.tmp"):
            real(self)

    failures = _failures(monkeypatch, [(memfs.MemFile, "sync", no_fsync_of_snapshots)], ["compaction"],
                         per_point=4, faults=0)
    assert any("refused a crash state" in f or "not one that was acknowledged" in f for f in failures), \
        failures[:5]


# -- the defect the snapshot workloads found, and its fix ----------------------------------------
#
# compact and reset unlinked several segments before one directory fsync, so a crash could keep any
# of them: a gap recovery refused, or (reset) only the newest old segment, which read as a log
# following the snapshot. Each unlink is now durable before the next (compact oldest first, reset
# newest first); these tests failed before the fix and pass now, over every crash state.


def _log_in_segments(last: int):
    """A storage on the recording file system holding 1..last (term 1), three entries to a segment."""
    fs = memfs.MemFS()
    fs.makedirs(explore.DIR)
    st = explore._open(fs, random.Random(1))
    st.save(HardState(1, 1, 0), [])
    for i in range(1, last + 1):
        st.save(None, [explore._entry(i, 1, explore.BIG)])
    st.save(HardState(1, 1, 3), [])
    return fs, st


def _every_crash_state(fs, since: int):
    for n in range(since, len(fs.ops) + 1):
        for state in fs.crash_point(n).states(64, random.Random(n)):
            yield n, state


def test_a_crash_anywhere_in_compaction_leaves_a_log_recovery_opens():
    fs, st = _log_in_segments(10)  # segments 1, 4, 7, 10
    snapshot.write_snapshot(explore.DIR, SnapshotMeta(7, 1, (1,)), [b"state"], fs=fs)
    start = len(fs.ops)
    assert st.compact(7) == 2  # wal-1 and wal-4
    st.close()
    for n, state in _every_crash_state(fs, start):
        st = explore._open(memfs.MemFS(state), random.Random(1))
        try:
            assert st.last_index == 10 and st.snapshot[0].index == 7 and st.first_index <= 8, fs.describe(n - 1)
        finally:
            st.close()


@pytest.mark.parametrize("index", [5, 6])
def test_a_crash_anywhere_in_an_install_reset_never_keeps_the_replaced_log(index):
    fs, st = _log_in_segments(8)  # segments 1, 4, 7, all term 1
    snapshot.write_snapshot(explore.DIR, SnapshotMeta(index, 2, (1,)), [b"state"], fs=fs)  # conflicts at index
    start = len(fs.ops)
    st.reset(index)
    st.close()
    for n, state in _every_crash_state(fs, start):
        st = explore._open(memfs.MemFS(state), random.Random(1))
        try:
            assert st.snapshot[0].index == index
            assert st.last_index == index, f"after {fs.describe(n - 1)}: kept {st.first_index}..{st.last_index}"
        finally:
            st.close()


def test_a_log_that_starts_after_the_snapshot_in_an_older_term_is_dropped():
    """What only the newest old segment surviving a reset looked like."""
    fs, st = _log_in_segments(8)
    st.close()
    for first in (1, 4):
        fs.unlink(f"{explore.DIR}/{replay.segment_name(first)}")
    fs.sync_dir(explore.DIR)
    snapshot.write_snapshot(explore.DIR, SnapshotMeta(6, 2, (1,)), [b"state"], fs=fs)
    st = explore._open(fs, random.Random(1))
    try:
        assert (st.first_index, st.last_index) == (7, 6)
    finally:
        st.close()
