"""Snapshot files (raftnet/storage/snapshot.py): the format, round trips,
every kind of damage caught, the directory helpers, receiving in chunks,
and crash safety on the recording file system."""

from __future__ import annotations

import logging
import os
import random
import struct

import cbor2
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftnet.storage import fs as fsmod, records as rec, snapshot
from raftnet.storage.errors import Corruption, StorageError
from raftnet.storage.memfs import MemFS
from raftnet.storage.snapshot import (
    SNAPSHOT_RE, PartialSnapshot, SnapshotMeta, latest_snapshot, list_snapshots, prune_snapshots, read_chunk,
    read_snapshot, remove_partials, snapshot_name, snapshot_size, verify_snapshot, write_snapshot,
)

D = "/data"
META = SnapshotMeta(9, 3, (1, 2, 3), (4,))
BLOBS = [b"", b"a" * 700, b"hello", bytes(range(256)) * 3, b"z"]
PATH = os.path.join(D, snapshot_name(9, 3))


def memfs() -> MemFS:
    fs = MemFS()
    fs.makedirs(D)
    return fs


def blobs_of(path: str, fs) -> tuple[SnapshotMeta, list[bytes]]:
    meta, blobs = read_snapshot(path, fs=fs)
    return meta, list(blobs)


def image(blobs=BLOBS, meta=META) -> bytes:
    fs = memfs()
    return fs.read(write_snapshot(D, meta, blobs, fs=fs))


_IMAGE: list[bytes] = []


def image_cache() -> bytes:
    """``image()``, made once (for hypothesis's many examples)."""
    if not _IMAGE:
        _IMAGE.append(image())
    return _IMAGE[0]


def damage(data: bytes, path: str = PATH) -> Corruption | None:
    """The Corruption reading ``data`` as a whole gives, None if it reads."""
    fs = MemFS({path: data})
    try:
        blobs_of(path, fs)
    except Corruption as exc:
        assert "\n" not in str(exc) and path in str(exc) and str(exc).startswith("corruption: ")
        return exc
    return None


# -- the format, by hand ---------------------------------------------------------------------


def frame(kind: int, body: bytes, seed: int) -> bytes:
    payload = bytes([kind]) + body
    return rec.HEADER.pack(len(payload), xxhash.xxh3_64_intdigest(payload, seed)) + payload


def forge(blobs=BLOBS, *, header=None, trailer=None, header_kind=1, version=1, more=b"", extra=b"",
          seed=12345) -> bytes:
    """A snapshot built from the documented format; ``header``/``trailer``
    override fields (checksums stay right), ``trailer=False`` leaves it out,
    ``more`` goes between the blobs and the trailer, ``extra`` after it."""
    h = {"format": 1, "index": META.index, "term": META.term, "voters": list(META.voters),
         "learners": list(META.learners), "seed": seed, **(header or {})}
    out = b"RAFTSNAP" + struct.pack(">I", version) + frame(header_kind, cbor2.dumps(h), 0)
    out += b"".join(frame(2, b, seed) for b in blobs) + more
    if trailer is False:
        return out
    t = {"blobs": len(blobs), "bytes": sum(map(len, blobs)), "xxh3": xxhash.xxh3_64_intdigest(out), **(trailer or {})}
    return out + frame(3, cbor2.dumps(t), seed) + extra


def test_the_documented_format_reads_and_names_are_fixed_width():
    assert damage(forge()) is None
    assert blobs_of(PATH, MemFS({PATH: forge()})) == (META, BLOBS)
    assert snapshot_name(9, 3) == "snap-00000000000000000009-00000000000000000003.snap"
    assert SNAPSHOT_RE.match(snapshot_name(2**64, 7)).groups() == (str(2**64).zfill(20), "7".zfill(20))
    assert not SNAPSHOT_RE.match(snapshot_name(9, 3) + ".tmp")
    written = image()
    assert written[:12] == b"RAFTSNAP" + struct.pack(">I", 1)


@pytest.mark.parametrize("data, reason", [
    (forge(header_kind=2), "not a header"),
    (forge(header={"format": 2}), "not a format-1 snapshot header"),
    (forge(header={"index": -1}), "malformed header"),
    (forge(header={"voters": ["a"]}), "malformed header"),
    (forge(header={"seed": None}), "malformed header"),
    (forge(header={"seed": 1 << 64}), "malformed header"),
    (forge(version=2), "unknown snapshot version 2"),
    (forge(seed=1)[:12] + frame(1, b"\xff\xff", 0), "the header is not valid CBOR"),
    (forge(trailer={"blobs": len(BLOBS) + 1}), "the trailer counts 6 blobs"),
    (forge(trailer={"bytes": 1}), "blobs of 1 bytes"),
    (forge(trailer={"xxh3": 1}), "whole-file checksum mismatch"),
    (forge(trailer={"xxh3": "x"}), "malformed trailer"),
    (forge(extra=b"\0"), "1 bytes follow the trailer"),
    (forge(trailer=False), "record 6: the file ends inside its frame header"),
    (forge(more=frame(9, b"", 12345)), "record 6: unknown record kind 9"),
    (forge(more=frame(2, b"unseeded", 0)), "record 6: checksum mismatch"),
    (forge(more=frame(1, cbor2.dumps({}), 12345)), "record 6: unknown record kind 1"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_right_checksums_wrong_contents_are_corruption(data, reason):
    assert reason in damage(data).reason


def test_a_header_that_disagrees_with_the_file_name_is_corruption():
    assert "file name" in damage(forge(), path=os.path.join(D, snapshot_name(10, 3))).reason
    assert damage(forge(), path=os.path.join(D, "copy.bin")) is None  # any other name: not checked


def test_a_length_beyond_the_file_or_the_limit_is_corruption_not_an_allocation():
    head = b"RAFTSNAP" + struct.pack(">I", 1)
    assert "past the end" in damage(head + rec.HEADER.pack(0xFFFFFFFF, 0) + bytes(100)).reason
    big = snapshot.MAX_META + 1
    assert "limit" in damage(head + rec.HEADER.pack(big, 0) + bytes(big)).reason


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("blobs", [[], [b""], [b"", b""], [bytes(1 << 20)], [b"%d" % i for i in range(10_000)]],
                         ids=["none", "one empty", "two empty", "1 MiB", "10000 small"])
def test_round_trip(tmp_path, blobs):
    meta = SnapshotMeta(1 << 40, 7, (5, 1), ())
    path = write_snapshot(str(tmp_path), meta, iter(blobs))
    assert path == os.path.join(str(tmp_path), snapshot_name(1 << 40, 7))
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temporary file left
    got_meta, got = blobs_of(path, fsmod.OS)
    assert (got_meta, got) == (meta, blobs) and got_meta.voters == (5, 1)
    assert verify_snapshot(path) == meta and snapshot_size(path) == os.path.getsize(path)
    assert b"".join(read_chunk(path, k, 4096) for k in range(0, snapshot_size(path), 4096)) == open(path, "rb").read()


def test_meta_takes_lists_and_bad_input_is_refused_before_any_file_is_made():
    assert SnapshotMeta(1, 1, [3, 2]).voters == (3, 2)
    fs = memfs()
    with pytest.raises(ValueError):
        write_snapshot(D, SnapshotMeta(-1, 1, (1,)), [], fs=fs)
    with pytest.raises(ValueError):
        write_snapshot(D, META, ["not bytes"], fs=fs)
    assert fs.listdir(D) == []


def test_it_streams_in_bounded_pieces():
    fs = memfs()
    written = []

    def blobs():
        for k in range(48):
            if k == 40:  # what came before is in the file before the rest is even made
                written.append(fs.size(PATH + ".tmp"))
            yield bytes([k]) * (64 << 10)

    write_snapshot(D, META, blobs(), fs=fs)
    assert written[0] >= 40 * (64 << 10) - snapshot.CHUNK  # at most one chunk held back
    assert max(len(op[3]) for op in fs.ops if op[0] == "write") <= snapshot.CHUNK
    reads = []

    class Watched(MemFS):
        def read(self, path):
            raise AssertionError("read the whole file at once")

        def read_range(self, path, offset, n):
            reads.append(n)
            return super().read_range(path, offset, n)

    meta, got = blobs_of(PATH, Watched(fs.files()))
    assert len(got) == 48 and len(reads) >= 3 and max(reads) <= snapshot.CHUNK


# -- damage --------------------------------------------------------------------------------------


def test_every_truncation_bit_flip_and_zeroed_tail_is_corruption():
    data = image()
    for at in range(len(data)):
        assert damage(data[:at]) is not None, f"truncated to {at}"
        flipped = bytearray(data)
        flipped[at] ^= 1 << (at % 8)
        assert damage(bytes(flipped)) is not None, f"bit {at % 8} of byte {at}"
        assert damage(data[:at] + bytes(len(data) - at)) is not None, f"zeroed from {at}"


def test_wrong_magic_garbage_and_empty_files_are_corruption():
    data = image()
    rng = random.Random(5)
    assert "bad magic" in damage(b"RAFTSNAQ" + data[8:]).reason
    assert "too short" in damage(b"").reason
    for n in (1, 11, 12, 13, 100, 5000):
        assert damage(rng.randbytes(n)) is not None
        assert damage(data[:12] + rng.randbytes(n)) is not None
    assert damage(data + data) is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_no_bytes_make_reading_raise_anything_but_corruption(data):
    assert damage(b"RAFTSNAP\x00\x00\x00\x01" + data) is not None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8))
def test_any_overwrite_of_a_snapshot_is_caught(edits):
    data = bytearray(image_cache())
    for at, byte in edits:
        data[at % len(data)] = byte
    if bytes(data) != image_cache():
        assert damage(bytes(data)) is not None


def test_the_iterator_raises_before_it_ends_when_the_trailer_is_damaged():
    data = bytearray(image())
    data[-3] ^= 0x10  # inside the trailer
    meta, blobs = read_snapshot(PATH, fs=MemFS({PATH: bytes(data)}))
    assert meta == META  # the header is fine
    got = [next(blobs) for _ in BLOBS]
    assert got == BLOBS
    with pytest.raises(Corruption, match="record 6"):
        next(blobs)
    # A trailer that is intact but counts other blobs is caught the same way.
    meta, blobs = read_snapshot(PATH, fs=MemFS({PATH: forge(trailer={"blobs": 4})}))
    assert [next(blobs) for _ in BLOBS] == BLOBS
    with pytest.raises(Corruption, match="trailer counts 4 blobs"):
        next(blobs)


def test_a_damaged_blob_is_never_returned():
    data = image()
    at = data.index(b"hello")
    damaged = data[:at] + b"jello" + data[at + 5 :]
    meta, blobs = read_snapshot(PATH, fs=MemFS({PATH: damaged}))
    assert [next(blobs), next(blobs)] == BLOBS[:2]
    with pytest.raises(Corruption, match="record 3: checksum mismatch"):
        next(blobs)


def test_a_bad_header_is_reported_at_once():
    data = bytearray(image())
    data[20] ^= 1
    with pytest.raises(Corruption, match="record 0 .the header.: checksum mismatch"):
        read_snapshot(PATH, fs=MemFS({PATH: bytes(data)}))


# -- the snapshots of a data directory -----------------------------------------------------------


def snapshots(fs, *indexes: int) -> list[str]:
    return [write_snapshot(D, SnapshotMeta(i, 2, (1,)), [b"%d" % i] * 3, fs=fs) for i in indexes]


def flip(fs: MemFS, path: str, at: int = -5) -> None:
    fs.data[fs.names[path]][at] ^= 1


def test_list_snapshots_goes_by_name_oldest_first():
    fs = memfs()
    paths = snapshots(fs, 100, 9, 20)
    for junk in ("snap-1-2.snap", "wal-00000000000000000001.log", paths[0] + ".tmp"):
        fs.open(os.path.join(D, os.path.basename(junk)), create=True)
    assert list_snapshots(D, fs=fs) == [(9, 2, paths[1]), (20, 2, paths[2]), (100, 2, paths[0])]


def test_latest_skips_a_damaged_newest_logs_it_and_keeps_it(caplog):
    fs = memfs()
    assert latest_snapshot(D, fs=fs) is None
    old, mid, new = snapshots(fs, 5, 10, 15)
    flip(fs, new)
    with caplog.at_level(logging.WARNING, logger="raftnet.storage"):
        meta, path = latest_snapshot(D, fs=fs)
    assert (meta.index, path) == (10, mid)
    [warning] = caplog.records
    assert "damaged snapshot" in warning.getMessage() and new in warning.getMessage()
    assert "\n" not in warning.getMessage() and fs.exists(new)
    flip(fs, mid)
    flip(fs, old, 20)
    assert latest_snapshot(D, fs=fs) is None


def test_prune_keeps_the_newest_and_syncs_the_directory():
    fs = memfs()
    paths = snapshots(fs, 1, 2, 3, 4, 5)
    assert prune_snapshots(D, fs=fs) == paths[:3]
    assert [p for _, _, p in list_snapshots(D, fs=fs)] == paths[3:]
    assert fs.ops[-1] == ("dirsync", D) and fs.ops[-2][0] == "unlink"
    ops = len(fs.ops)
    assert prune_snapshots(D, fs=fs) == [] and len(fs.ops) == ops  # nothing to do: nothing done
    with pytest.raises(ValueError):
        prune_snapshots(D, 0, fs=fs)


def test_prune_never_deletes_the_newest_valid_snapshot():
    fs = memfs()
    paths = snapshots(fs, 1, 2, 3, 4, 5)
    flip(fs, paths[3])
    flip(fs, paths[4])
    assert prune_snapshots(D, keep=2, fs=fs) == paths[:2]
    assert prune_snapshots(D, keep=1, fs=fs) == [paths[3]]
    assert latest_snapshot(D, fs=fs)[1] == paths[2]


def test_remove_partials_removes_only_leftovers():
    fs = memfs()
    [path] = snapshots(fs, 7)
    for name in ("x.snap.tmp", "y.snap.partial", "meta.tmp"):
        fs.open(os.path.join(D, name), create=True)
    assert remove_partials(D, fs=fs) == [os.path.join(D, "x.snap.tmp"), os.path.join(D, "y.snap.partial")]
    assert fs.listdir(D) == sorted([os.path.basename(path), "meta.tmp"]) and fs.ops[-1] == ("dirsync", D)


def test_remove_partials_may_spare_the_newest_received_partial():
    fs = memfs()
    names = ["a.snap.tmp", snapshot_name(20, 2) + ".partial", snapshot_name(30, 2) + ".partial",
             snapshot_name(30, 3) + ".tmp"]
    for name in names:
        fs.open(os.path.join(D, name), create=True)
    newest = (30, 2, os.path.join(D, names[2]))
    assert snapshot.received_partial(D, fs=fs) == newest
    # Only the newest partial of an index above the one given stays, for a transfer to resume.
    assert remove_partials(D, fs=fs, keep_received_after=30) == sorted(os.path.join(D, n) for n in names)
    for name in names:
        fs.open(os.path.join(D, name), create=True)
    removed = remove_partials(D, fs=fs, keep_received_after=29)
    assert removed == sorted(os.path.join(D, n) for n in names if n != names[2])
    assert fs.listdir(D) == [names[2]] and snapshot.received_partial(D, fs=fs) == newest


def test_a_failed_write_leaves_no_file():
    fs = memfs()

    def blobs():
        yield b"one"
        raise RuntimeError("the state machine failed")

    with pytest.raises(RuntimeError):
        write_snapshot(D, META, blobs(), fs=fs)
    assert fs.listdir(D) == []
    fs.fail = lambda call, path: OSError(5, "Input/output error") if call == "datasync" else None
    with pytest.raises(OSError, match="Input/output"):
        write_snapshot(D, META, BLOBS, fs=fs)
    assert fs.listdir(D) == []


# -- receiving in chunks ---------------------------------------------------------------------------


def leader() -> tuple[MemFS, str, int]:
    fs = memfs()
    path = write_snapshot(D, META, BLOBS, fs=fs)
    return fs, path, snapshot_size(path, fs=fs)


def test_partial_takes_chunks_in_order_only_and_finishes_into_place():
    lfs, lpath, size = leader()
    fs = memfs()
    p = PartialSnapshot(D, 9, 3, size, fs=fs)
    assert (p.index, p.term, p.size, p.have, p.complete) == (9, 3, size, 0, False)
    assert p.write(500, read_chunk(lpath, 500, 500, fs=lfs)) == 0  # from further on: ignored
    assert p.write(0, bytes(size + 1)) == 0  # past the declared size: ignored
    offset = 0
    while offset < size:
        chunk = read_chunk(lpath, offset, 500, fs=lfs)
        assert p.write(offset, chunk) == offset + len(chunk)
        assert p.write(offset, chunk) == offset + len(chunk)  # a duplicate: ignored
        assert p.write(0, b"x") == offset + len(chunk)  # stale: ignored
        offset += len(chunk)
    assert p.complete
    meta, path = p.finish()
    assert (meta, path) == (META, PATH) and fs.listdir(D) == [os.path.basename(PATH)]
    assert fs.read(path) == lfs.read(lpath)  # byte-identical to the leader's
    sync = next(k for k, op in enumerate(fs.ops) if op[0] == "sync")
    assert [op[0] for op in fs.ops[sync:]] == ["sync", "rename", "dirsync"]
    with pytest.raises(StorageError):
        p.write(size, b"more")


def test_partial_from_damaged_bytes_fails_to_finish_and_leaves_nothing():
    lfs, lpath, size = leader()
    for at in (3, 40, size // 2, size - 2):
        fs = memfs()
        data = bytearray(lfs.read(lpath))
        data[at] ^= 4
        p = PartialSnapshot(D, 9, 3, size, fs=fs)
        p.write(0, bytes(data))
        with pytest.raises(Corruption):
            p.finish()
        assert fs.listdir(D) == [], at


def test_partial_of_another_snapshot_or_incomplete_does_not_finish():
    lfs, lpath, size = leader()
    fs = memfs()
    p = PartialSnapshot(D, 8, 3, size, fs=fs)
    p.write(0, lfs.read(lpath))
    with pytest.raises(Corruption, match="expected index 8 term 3"):
        p.finish()
    assert fs.listdir(D) == []
    p = PartialSnapshot(D, 9, 3, size, fs=fs)
    p.write(0, lfs.read(lpath)[:100])
    with pytest.raises(StorageError, match="incomplete"):
        p.finish()
    assert fs.exists(p.path)  # may still be completed
    p.abort()
    assert fs.listdir(D) == []


def test_a_partial_resumes_from_the_bytes_an_earlier_run_left():
    lfs, lpath, size = leader()
    fs = memfs()
    first = PartialSnapshot(D, 9, 3, size, fs=fs)
    first.write(0, read_chunk(lpath, 0, 700, fs=lfs))  # then the node is killed: no abort, no finish
    again = PartialSnapshot(D, 9, 3, size, fs=fs, resume=True)
    assert again.have == 700
    assert again.write(0, b"x") == 700  # what it holds is not written again
    again.write(700, read_chunk(lpath, 700, size, fs=lfs))
    assert again.finish() == (META, PATH) and fs.read(PATH) == lfs.read(lpath)

    # Without resume, or with a leftover longer than the snapshot, it starts from zero.
    fs = memfs()
    PartialSnapshot(D, 9, 3, size, fs=fs).write(0, read_chunk(lpath, 0, 700, fs=lfs))
    assert PartialSnapshot(D, 9, 3, size, fs=fs).have == 0
    fs.open(os.path.join(D, snapshot_name(9, 3) + ".partial"), create=True).pwrite(bytes(size + 1), 0)
    assert PartialSnapshot(D, 9, 3, size, fs=fs, resume=True).have == 0


def test_a_resumed_partial_whose_kept_bytes_were_damaged_fails_to_finish_and_leaves_nothing():
    lfs, lpath, size = leader()
    fs = memfs()
    PartialSnapshot(D, 9, 3, size, fs=fs).write(0, read_chunk(lpath, 0, 700, fs=lfs))
    partial = os.path.join(D, snapshot_name(9, 3) + ".partial")
    fs.open(partial).pwrite(bytes(300), 0)  # a power loss left a hole
    p = PartialSnapshot(D, 9, 3, size, fs=fs, resume=True)
    p.write(700, read_chunk(lpath, 700, size, fs=lfs))
    with pytest.raises(Corruption):
        p.finish()
    assert fs.listdir(D) == []


# -- crashes ---------------------------------------------------------------------------------------


OLD = SnapshotMeta(4, 2, (1, 2, 3))
OLD_BLOBS = [b"old" * 300, b"state"]
NEW_BLOBS = [bytes([k]) * 700 for k in range(6)] + [b"x" * 1500]


def _write_new(fs: MemFS) -> None:
    write_snapshot(D, META, NEW_BLOBS, fs=fs)


def _receive_new(fs: MemFS) -> None:
    lfs = memfs()
    lpath = write_snapshot(D, META, NEW_BLOBS, fs=lfs)
    p = PartialSnapshot(D, META.index, META.term, snapshot_size(lpath, fs=lfs), fs=fs)
    while not p.complete:
        p.write(p.have, read_chunk(lpath, p.have, 1000, fs=lfs))
    p.finish()


@pytest.mark.parametrize("workload", [_write_new, _receive_new], ids=["write", "receive"])
def test_a_crash_anywhere_leaves_the_new_snapshot_whole_or_absent_and_the_old_one_valid(monkeypatch, workload):
    monkeypatch.setattr(snapshot, "CHUNK", 1024)  # several writes per file
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    base = memfs()
    old_path = write_snapshot(D, OLD, OLD_BLOBS, fs=base)
    fs = MemFS(base.files())  # the old snapshot is durable
    workload(fs)
    outcomes = set()
    for n in range(len(fs.ops) + 1):
        where = f"seed={seed}, crash after {n} ops ({fs.describe(n - 1) if n else 'none'})"
        for state in fs.crash_states(n, 64, rng):
            disk = MemFS(state)
            assert blobs_of(old_path, disk) == (OLD, OLD_BLOBS), where
            has_new = PATH in state
            if has_new:
                assert blobs_of(PATH, disk) == (META, NEW_BLOBS), where
            assert latest_snapshot(D, fs=disk)[0] == (META if has_new else OLD), where
            remove_partials(D, fs=disk)
            assert all(SNAPSHOT_RE.match(name) for name in disk.listdir(D)), where
            outcomes.add(has_new)
    assert outcomes == {True, False}


def test_a_crash_anywhere_while_receiving_leaves_a_partial_that_resumes_or_is_found_out(monkeypatch):
    """A follower killed (or powered off) mid-transfer keeps its newest
    partial file; resuming it and taking the rest from the leader ends with
    the leader's snapshot, whole, or (when the crash lost kept bytes) with a
    Corruption that deletes the partial so the transfer starts over."""
    monkeypatch.setattr(snapshot, "CHUNK", 1024)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    lfs = memfs()
    lpath = write_snapshot(D, META, NEW_BLOBS, fs=lfs)
    size = snapshot_size(lpath, fs=lfs)
    base = memfs()
    old_path = write_snapshot(D, OLD, OLD_BLOBS, fs=base)
    fs = MemFS(base.files())
    p = PartialSnapshot(D, META.index, META.term, size, fs=fs)
    while not p.complete:
        p.write(p.have, read_chunk(lpath, p.have, 1000, fs=lfs))
    p.finish()
    outcomes = set()
    for n in range(len(fs.ops) + 1):
        where = f"seed={seed}, crash after {n} ops ({fs.describe(n - 1) if n else 'none'})"
        for state in fs.crash_states(n, 16, rng):
            disk = MemFS(state)
            remove_partials(D, fs=disk, keep_received_after=OLD.index)
            assert blobs_of(old_path, disk) == (OLD, OLD_BLOBS), where
            if PATH in state:
                outcomes.add("renamed")
                continue
            p = PartialSnapshot(D, META.index, META.term, size, fs=disk, resume=True)
            kept = p.have
            while not p.complete:
                p.write(p.have, read_chunk(lpath, p.have, 1000, fs=lfs))
            try:
                p.finish()
            except Corruption:
                assert all(SNAPSHOT_RE.match(name) for name in disk.listdir(D)), where
                outcomes.add("found out")
                continue
            assert blobs_of(PATH, disk) == (META, NEW_BLOBS), where
            outcomes.add("resumed" if kept else "from zero")
    assert {"renamed", "resumed", "from zero", "found out"} <= outcomes, outcomes
