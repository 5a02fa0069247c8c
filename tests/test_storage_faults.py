"""The WAL's four recovery defects of issue 11, each reproduced on real files
the way a crash or a disk would leave them, plus the disk refusing writes.

Every test here failed before the fix (see the issue's closing note); the
crash-state explorer (tests/test_storage_explorer.py) checks the same
properties over thousands of generated states.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from raftnet.core.messages import Entry
from raftnet.core.ready import HardState
from raftnet.storage import Corruption, Storage, StorageError, list_segments
from raftnet.storage import records as rec

from cluster_harness import raftnet

SEG = 64 * 1024
SECTOR = 512
PAGE = 4096


def open_(d, **kw) -> Storage:
    kw.setdefault("segment_size", SEG)
    return Storage.open(str(d), cluster="faults", node_id=1, **kw)


def batch_offsets(path: str) -> list[int]:
    """Where each batch of a segment starts, read the way recovery reads it."""
    buf = open(path, "rb").read()
    view = memoryview(buf)
    _, offset = rec.read_record(view, 0)  # the segment header (checksummed without a seed)
    # (Written to run on the code before the fix too, which had no seeds: that is how
    # "failed before" was checked.)
    seed = rec.segment_seed(rec.read_record(view, 0)[0]) if hasattr(rec, "segment_seed") else 0
    starts = []
    while True:
        item, end = rec.read_record(view, offset, seed) if seed else rec.read_record(view, offset)
        if item is None:
            return starts
        starts.append(offset)
        offset += item[1]


def one_per_batch(st: Storage, lo: int, hi: int, term: int = 1, size: int = 40) -> None:
    for i in range(lo, hi + 1):
        st.save(None, [Entry(i, term, b"%d:" % i + b"x" * size)])


# -- 1. a zeroed batch header in the middle of a segment ---------------------------------------


@pytest.mark.parametrize("commit", [10, 0], ids=["commit-covers-it", "commit-unknown"])
def test_a_zeroed_batch_header_mid_segment_is_refused_naming_file_offset_and_index(tmp_path, commit):
    st = open_(tmp_path)
    one_per_batch(st, 1, 10)
    st.save(HardState(1, 1, commit), [])
    st.close()
    (_, seg), = list_segments(str(tmp_path))
    fifth = batch_offsets(seg)[4]
    raw = bytearray(open(seg, "rb").read())
    raw[fifth : fifth + rec.HEADER_SIZE] = bytes(rec.HEADER_SIZE)  # a lost sector's worth of header
    open(seg, "wb").write(bytes(raw))

    with pytest.raises(Corruption) as info:
        open_(tmp_path)
    assert (info.value.path, info.value.offset, info.value.index) == (seg, fifth, 5)
    result = raftnet("inspect", "--verify", str(tmp_path))
    assert result.returncode == 4, result
    assert f"{os.path.basename(seg)} offset {fifth} (index 5)" in result.stderr


# -- 2. truncation at a segment's exact first index, then a crash ------------------------------


def three_segments(d) -> tuple[Storage, list[int]]:
    st = open_(d)
    i = 0
    while len(list_segments(str(d))) < 3:
        i += 1
        st.save(None, [Entry(i, 1, b"%d:" % i + b"y" * 6000)])
    one_per_batch(st, i + 1, i + 3, size=6000)
    return st, [first for first, _ in list_segments(str(d))]


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", ["unlink", "rename", "after"])
def test_truncating_at_a_segments_first_index_recovers_from_a_crash_at_every_step(tmp_path, monkeypatch, crash_at):
    st, firsts = three_segments(tmp_path)
    old_last = st.last_index
    at = firsts[1]  # the exact first index of the middle segment
    new = [Entry(at + k, 2, b"new %d" % k) for k in range(3)]
    if crash_at != "after":
        def die(*args, **kw):
            raise _Crash()
        monkeypatch.setattr(os, crash_at, die)
        with pytest.raises(_Crash):
            st.save(None, new)
        monkeypatch.undo()
    else:
        st.save(None, new)
    st.close()  # the process died: only what reached the files counts

    st = open_(tmp_path)
    terms = [e.term for e in st.entries(1, st.last_index + 1)]
    if crash_at == "rename":  # the truncation never reached the directory: the old log
        assert st.last_index == old_last and terms == [1] * old_last
    else:  # in place (the segments it supersedes may linger: they are skipped)
        assert st.last_index == at + 2 and terms == [1] * (at - 1) + [2] * 3
    one_per_batch(st, st.last_index + 1, st.last_index + 3, term=3)
    st.close()
    assert open_(tmp_path).last_index >= at + 2


def test_truncation_survives_a_power_loss_that_forgets_unsynced_unlinks(tmp_path, monkeypatch):
    """An unlink is durable only once its directory is fsynced: a power
    loss brings back every file whose unlink no directory fsync followed."""
    st, firsts = three_segments(tmp_path)
    at = firsts[1]
    pending: dict[str, bytes] = {}  # unlinked, and not yet made durable by a directory fsync
    real_unlink, real_fsync = os.unlink, os.fsync

    def unlink(path, *a, **kw):
        pending[str(path)] = open(path, "rb").read()
        real_unlink(path, *a, **kw)

    def fsync(fd):
        real_fsync(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            pending.clear()

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "fsync", fsync)
    st.save(None, [Entry(at, 2, b"new")])  # acknowledged
    monkeypatch.undo()
    st.close()
    for path, data in pending.items():  # the power loss
        open(path, "wb").write(data)

    st = open_(tmp_path)
    assert st.last_index == at and st.entries(at, at + 1)[0] == Entry(at, 2, b"new")


# -- 3. torn-write leftovers when the torn batch's first sector is missing ---------------------


def test_leftovers_of_a_torn_batch_missing_its_first_page_are_zeroed(tmp_path):
    st = open_(tmp_path)
    i = 0
    while st._offset < SEG - 12000:
        i += 1
        st.save(None, [Entry(i, 1, b"f" * 900)])
    (_, seg), = list_segments(str(tmp_path))
    torn_at = st._offset
    st.save(None, [Entry(i + 1, 1, b"T" * 6000)])  # the batch the crash tore...
    st.close()
    raw = bytearray(open(seg, "rb").read())
    page_end = (torn_at // PAGE + 1) * PAGE
    if page_end - torn_at < rec.HEADER_SIZE:
        page_end += PAGE
    raw[torn_at:page_end] = bytes(page_end - torn_at)  # ...losing its first page
    open(seg, "wb").write(bytes(raw))

    st = open_(tmp_path)
    assert st.last_index == i  # the torn batch was never acknowledged: dropped
    # Written over the torn batch's first page and a little beyond it...
    st.save(None, [Entry(i + 1, 1, b"s" * (page_end - torn_at + 300))])
    st.save(None, [Entry(i + 2, 1, b"r" * 12000)])  # ...then one that does not fit rolls a new segment
    st.close()
    st = open_(tmp_path)  # the restart that used to fail with "length ... runs past the end"
    assert st.last_index == i + 2
    assert st.entries(i + 1, i + 2)[0].data == b"s" * (page_end - torn_at + 300)


# -- 4. the hard state under torn writes, and writes the disk refuses ---------------------------


def test_commit_only_updates_never_put_the_durable_term_and_vote_at_risk(tmp_path, monkeypatch):
    """Trace every write to the hard state file; then, for each crash
    state a power loss may leave (the file as of its last fsync, later
    writes each persisted or lost, one of them torn at any byte), the
    recovered term and vote are the last ones saved."""
    st = open_(tmp_path)
    path = str(tmp_path / "hardstate")
    one_per_batch(st, 1, 3)
    st.save(HardState(4, 1, 0), [])
    trace: list[tuple[str, int, bytes]] = []
    real_pwrite, real_fsync, real_fdatasync = os.pwrite, os.fsync, os.fdatasync

    def ours(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}") == os.path.realpath(path)
        except OSError:
            return False

    def pwrite(fd, data, offset):
        if ours(fd):
            trace.append(("write", offset, bytes(data)))
        return real_pwrite(fd, data, offset)

    def sync(real):
        def call(fd):
            if ours(fd):
                trace.append(("sync", 0, b""))
            return real(fd)
        return call

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fsync", sync(real_fsync))
    monkeypatch.setattr(os, "fdatasync", sync(real_fdatasync))
    image = bytearray(open(path, "rb").read())  # durable: the save above fsynced it
    st.save(HardState(5, 2, 0), [])  # a vote: durable before it is granted
    for commit in (1, 2, 3):
        st.save(HardState(5, 2, commit), [])  # commit-only
    monkeypatch.undo()
    st.close()

    last_sync = max(k for k, (op, _, _) in enumerate(trace) if op == "sync")
    for op, offset, data in trace[:last_sync]:
        if op == "write":
            image[offset : offset + len(data)] = data
    later = [(offset, data) for op, offset, data in trace[last_sync + 1 :] if op == "write"]
    states = 0
    for torn in range(len(later)):
        for keep in range(1 << len(later)):
            for cut in range(0, len(later[torn][1])):
                crashed = bytearray(image)
                for k, (offset, data) in enumerate(later):
                    if k == torn:
                        crashed[offset : offset + cut] = data[:cut]
                    elif keep >> k & 1:
                        crashed[offset : offset + len(data)] = data
                open(path, "wb").write(bytes(crashed))
                reopened = open_(tmp_path)
                hs = reopened.hard_state
                reopened.close()
                assert (hs.term, hs.vote) == (5, 2), f"write {torn} torn at byte {cut}, others {keep:b}: {hs}"
                states += 1
    assert states > 0


def test_a_short_write_is_completed_not_ignored(tmp_path, monkeypatch):
    st = open_(tmp_path)
    real = os.pwrite
    calls = []

    def short(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 1 and len(data) > 10:
            return real(fd, bytes(data)[: len(data) // 2], offset)
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", short)
    one_per_batch(st, 1, 3)
    monkeypatch.undo()
    st.close()
    st = open_(tmp_path)
    assert [e.data for e in st.entries(1, 4)] == [b"%d:" % i + b"x" * 40 for i in (1, 2, 3)]


@pytest.mark.parametrize("call, err", [("posix_fallocate", errno.ENOSPC), ("pwrite", errno.ENOSPC),
                                       ("fdatasync", errno.EIO)])
def test_a_write_the_disk_refuses_is_never_acknowledged_and_stops_all_writes(tmp_path, monkeypatch, call, err):
    st = open_(tmp_path)
    one_per_batch(st, 1, 3)
    st.save(HardState(1, 1, 3), [])

    def refuse(*args, **kw):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, call, refuse)
    with pytest.raises(StorageError) as info:
        if call == "posix_fallocate":
            st.save(None, [Entry(4, 1, b"z" * (SEG + 1))])  # needs a new segment
        else:
            st.save(None, [Entry(4, 1, b"z")])
    assert os.strerror(err) in str(info.value) and "no more writes" in str(info.value)
    monkeypatch.undo()
    # The disk may have recovered; the storage has not: an fsync that failed
    # leaves the file's state unknown, so nothing more is acknowledged.
    with pytest.raises(StorageError, match="no more writes"):
        st.save(None, [Entry(4, 1, b"z")])
    st.close()
    st = open_(tmp_path)
    assert st.last_index in (3, 4) and st.hard_state.commit == 3


# -- also: a bit flip in the last batch, and the segment size ---------------------------------


def test_a_flipped_bit_in_the_last_acknowledged_batch_is_corruption_not_a_torn_write(tmp_path):
    st = open_(tmp_path)
    one_per_batch(st, 1, 6, size=2000)
    st.close()
    (_, seg), = list_segments(str(tmp_path))
    last = batch_offsets(seg)[-1]
    raw = bytearray(open(seg, "rb").read())
    raw[last + 700] ^= 0x04  # every sector of the batch was written: this is not a crash
    open(seg, "wb").write(bytes(raw))
    with pytest.raises(Corruption) as info:
        open_(tmp_path)
    assert info.value.index == 6 and "not a torn write" in info.value.reason
    result = raftnet("inspect", "--verify", str(tmp_path))
    assert result.returncode == 4 and "not a torn write" in result.stderr, result


def test_a_segment_size_below_64_kib_is_refused(tmp_path):
    with pytest.raises(StorageError, match="65536"):
        Storage.open(str(tmp_path), cluster="faults", node_id=1, segment_size=4096)
