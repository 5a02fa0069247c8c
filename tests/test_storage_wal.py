"""The WAL on real files: encode/decode, segment roll, truncation, recovery,
torn tails, corruption, and the data directory's identity."""

from __future__ import annotations

import os

import pytest

from raftnet.core.messages import Entry, EntryKind
from raftnet.core.ready import HardState
from raftnet.storage import Corruption, Storage, StorageError, list_segments
from raftnet.storage import records as rec

SEG = 64 * 1024


def open_(d, **kw) -> Storage:
    kw.setdefault("segment_size", SEG)
    return Storage.open(str(d), cluster="test", node_id=1, **kw)


def fill(st: Storage, n: int, term: int = 1, size: int = 1000, per_batch: int = 1) -> None:
    i = st.last_index
    while i < n:
        batch = [Entry(k, term, b"v%d" % k + b"." * size) for k in range(i + 1, min(n, i + per_batch) + 1)]
        st.save(None, batch)
        i = batch[-1].index


def test_record_round_trip_keeps_payload_bytes():
    e = Entry(7, 3, bytes(range(256)), EntryKind.NOOP)
    data = rec.entry_record(e)
    item, end = rec.read_record(data, 0)
    assert end == len(data) and rec.decode_entry(item) == e
    with pytest.raises(rec.BadRecord, match="checksum"):
        rec.read_record(data[:-1] + bytes([data[-1] ^ 1]), 0)


def test_entries_and_hard_state_survive_reopen(tmp_path):
    st = open_(tmp_path)
    st.save(HardState(2, 3, 0), [])
    fill(st, 50, term=2)
    st.save(HardState(2, 3, 40), [])
    st.close()
    st = open_(tmp_path)
    assert st.hard_state == HardState(2, 3, 40)
    assert (st.first_index, st.last_index) == (1, 50)
    assert [e.index for e in st.entries(1, 51)] == list(range(1, 51))
    assert st.entries(10, 11)[0].data.startswith(b"v10")


def test_segments_roll_at_the_size_limit_and_are_preallocated(tmp_path):
    st = open_(tmp_path)
    fill(st, 300)
    st.close()
    segs = list_segments(str(tmp_path))
    assert len(segs) > 3
    assert all(os.path.getsize(p) == SEG for _, p in segs)
    assert segs[0][0] == 1
    st = open_(tmp_path)
    assert st.last_index == 300


def test_truncation_of_a_conflicting_suffix_is_durable(tmp_path):
    st = open_(tmp_path)
    fill(st, 200)
    st.save(None, [Entry(120, 2, b"new")])
    assert st.last_index == 120
    st.close()
    st = open_(tmp_path)
    assert st.last_index == 120 and st.entries(120, 121)[0] == Entry(120, 2, b"new")
    assert st.entries(119, 120)[0].term == 1
    # Truncate back into the first segment, then grow again.
    st.save(None, [Entry(5, 3, b"five")])
    fill(st, 30, term=3)
    st.close()
    st = open_(tmp_path)
    assert st.last_index == 30 and st.entries(5, 6)[0].data == b"five"
    assert [e.term for e in st.entries(1, 31)] == [1] * 4 + [3] * 26


def test_torn_tail_at_every_byte_offset_of_the_last_batch_recovers(tmp_path):
    base = tmp_path / "base"
    st = open_(base)
    fill(st, 5)
    st.close()
    _, seg = list_segments(str(base))[-1]
    with open(seg, "rb") as f:
        good = f.read()
    # The last batch: write it once more elsewhere to learn its bytes.
    st = open_(base)
    before = st._offset
    st.save(None, [Entry(6, 1, b"last batch"), Entry(7, 1, b"and more")])
    after = st._offset
    st.close()
    with open(seg, "rb") as f:
        full = f.read()
    for cut in range(before, after):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        for name in os.listdir(base):
            if name != os.path.basename(seg):
                with open(base / name, "rb") as src, open(d / name, "wb") as dst:
                    dst.write(src.read())
        torn = full[:cut] + b"\0" * (len(full) - cut)
        (d / os.path.basename(seg)).write_bytes(torn)
        st = open_(d)
        assert st.last_index == 5, cut
        fill(st, 8)  # and it can append again after zeroing the tail
        st.close()
        assert open_(d).last_index == 8
    assert good[:before] == full[:before]


def test_flipped_bit_in_an_earlier_record_is_refused_with_its_location(tmp_path):
    st = open_(tmp_path)
    fill(st, 20)
    st.close()
    first, seg = list_segments(str(tmp_path))[0]
    raw = bytearray(open(seg, "rb").read())
    raw[5000] ^= 0x10  # inside entry 5 or so: records follow it
    open(seg, "wb").write(bytes(raw))
    with pytest.raises(Corruption) as info:
        open_(tmp_path)
    msg = str(info.value)
    assert msg.startswith("corruption: ") and os.path.basename(seg) in msg and "offset" in msg and "index" in msg
    assert info.value.index is not None and info.value.index > 1


def test_truncated_hard_state_is_refused(tmp_path):
    st = open_(tmp_path)
    st.save(HardState(1, 1, 0), [])
    st.close()
    path = tmp_path / "hardstate"
    path.write_bytes(path.read_bytes()[:70])
    with pytest.raises(Corruption, match="hard state file is truncated"):
        open_(tmp_path)


@pytest.mark.parametrize("slot", [0, 1])
def test_a_damaged_copy_of_term_and_vote_falls_back_to_the_other_copy(tmp_path, slot):
    """Term and vote are written twice (sectors 0 and 1, each fsynced):
    damage to either copy still recovers the newest term and vote."""
    st = open_(tmp_path)
    st.save(HardState(1, 1, 0), [])
    st.save(HardState(2, 2, 0), [])
    st.close()
    path = tmp_path / "hardstate"
    raw = bytearray(path.read_bytes())
    raw[slot * 512 + 13] ^= 0xFF  # inside the payload
    path.write_bytes(bytes(raw))
    assert open_(tmp_path).hard_state == HardState(2, 2, 0)


def test_both_copies_of_term_and_vote_damaged_is_refused(tmp_path):
    st = open_(tmp_path)
    st.save(HardState(2, 2, 0), [])
    st.close()
    path = tmp_path / "hardstate"
    raw = bytearray(path.read_bytes())
    raw[13] ^= 0xFF
    raw[512 + 13] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(Corruption, match="no valid copy of term and vote"):
        open_(tmp_path)


def test_wrong_cluster_or_node_is_refused(tmp_path):
    open_(tmp_path).close()
    with pytest.raises(StorageError, match="belongs to cluster 'test', not 'other'"):
        Storage.open(str(tmp_path), cluster="other", node_id=1)
    with pytest.raises(StorageError, match="belongs to node 1, not node 2"):
        Storage.open(str(tmp_path), cluster="test", node_id=2)


def test_gap_is_refused_on_write(tmp_path):
    st = open_(tmp_path)
    with pytest.raises(StorageError, match="gap"):
        st.save(None, [Entry(3, 1, b"x")])


def test_a_log_shorter_than_the_recorded_commit_is_refused(tmp_path):
    """The commit index is written only after the entries it covers were
    fsynced: a log that ends below it has lost fsynced entries."""
    st = open_(tmp_path)
    fill(st, 3)
    st.save(HardState(1, 1, 3), [])
    st.save(None, [Entry(2, 2, b"x")])  # a conflicting append (only in a bug) shortens the log
    st.close()
    with pytest.raises(Corruption, match="records index 3 as committed but the log ends at 2"):
        open_(tmp_path)
    # Where nothing was promised, commit is lowered to the log's end instead.
    assert open_(tmp_path, fsync="never").hard_state.commit == 2


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", ["rename", "unlink"])
def test_crash_mid_truncate_never_resurrects_truncated_entries(tmp_path, monkeypatch, crash_at):
    """A truncation below the current segment rolls to a new segment:
    written as ``.new``, renamed into place, then the superseded segments
    are deleted. Die before the rename (the truncation is lost, which is
    fine: it was never acknowledged) or before the deletes (the superseded
    segments linger, and recovery skips them); either way recovery gives a
    log without a mix."""
    st = open_(tmp_path)
    fill(st, 300)
    assert len(list_segments(str(tmp_path))) > 2
    real = getattr(os, crash_at)

    def die(*args, **kw):
        raise _Crash()

    monkeypatch.setattr(os, crash_at, die)
    with pytest.raises(_Crash):
        st.save(None, [Entry(120, 2, b"new")])
    monkeypatch.setattr(os, crash_at, real)
    st.close()  # the process is gone; only what reached the files counts
    st = open_(tmp_path)
    if crash_at == "rename":
        assert st.last_index == 300 and [e.term for e in st.entries(1, 301)] == [1] * 300
    else:
        assert st.last_index == 120
        assert st.entries(120, 121)[0] == Entry(120, 2, b"new")
        assert [e.term for e in st.entries(1, 120)] == [1] * 119
    # And the node goes on from there, across another restart.
    fill(st, 330, term=3)
    st.close()
    again = open_(tmp_path)
    assert again.last_index == 330 and again.entries(330, 331)[0].term == 3


def test_a_slow_fsync_and_the_never_policy_are_logged(tmp_path, caplog):
    caplog.set_level("WARNING", logger="raftnet.storage")
    st = open_(tmp_path / "slow", fsync_warn_seconds=0.0)  # every fsync is "slow"
    fill(st, 2)
    assert any("slow fsync" in r.getMessage() and str(tmp_path / "slow") in r.getMessage() for r in caplog.records)
    st.close()
    caplog.clear()
    open_(tmp_path / "never", fsync="never").close()
    assert any("NOT durable" in r.getMessage() for r in caplog.records)


def test_a_first_format_directory_is_read_and_upgraded(tmp_path):
    """Bare CBOR meta, a two-slot hard state, segment headers without a
    checksum seed (raftnet 0.1): opened, upgraded, and appended to."""
    from raftnet.storage import explore, hardstate, read_meta

    d = tmp_path / "old"
    d.mkdir()
    for path, data in explore.legacy_image().items():
        (d / os.path.basename(path)).write_bytes(data)
    st = Storage.open(str(d), cluster=explore.CLUSTER, node_id=explore.NODE, segment_size=SEG)
    assert st.hard_state == HardState(3, 2, 4) and st.last_index == 6
    st.save(None, [Entry(7, 3, b"seven")])
    st.close()
    assert read_meta(str(d))["format"] == 2
    assert (d / "hardstate").stat().st_size == hardstate.SIZE
    st = Storage.open(str(d), cluster=explore.CLUSTER, node_id=explore.NODE, segment_size=SEG)
    assert st.hard_state == HardState(3, 2, 4) and [e.index for e in st.entries(1, 8)] == list(range(1, 8))
    st.close()
