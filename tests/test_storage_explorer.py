"""The crash-state explorer (raftnet/storage/explore.py) in CI: a bounded
sample of crash states and disk faults for every workload, the crash model
of the recording file system it runs on, and proof that it catches the
defects it was built for when they are put back.

`make crash-explore` runs the exhaustive set.
"""

from __future__ import annotations

import io
import os
import random

import pytest

from raftnet.storage import explore, hardstate, memfs, replay, wal

LONG = os.environ.get("RAFTNET_LONG") == "1"


def run(workloads=None, per_point=24, faults=120, seed=None):
    seed = random.randrange(1 << 30) if seed is None else seed
    out = io.StringIO()
    rep = explore.run(workloads or [*explore.WORKLOADS, "upgrade"], per_point, faults, seed, out=out)
    return seed, rep, out.getvalue()


def test_sampled_crash_states_all_recover_and_no_disk_fault_loses_data_silently():
    seed, rep, out = run(per_point=256 if LONG else 24, faults=1000 if LONG else 120)
    assert not rep.failures, f"seed {seed}:\n{out}\n" + "\n".join(rep.failures[:20])
    assert rep.crash_states > 2000 and rep.faults > 400, out
    assert rep.refused > 0 and rep.intact > 0, out  # the faults did land on live data, and on dead space


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
