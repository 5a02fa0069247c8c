"""KVStore snapshots: round trips with sessions, the copy-on-write view
(point in time while the store moves on, iterated in a real thread),
release and the one-view rule, and restores that refuse damage."""

from __future__ import annotations

import struct
import threading
from unittest import mock

import cbor2
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from raftnet.kv import KVStore, encode_command
from raftnet.kv import store as kvstore


def put(key: str, value: bytes, seq: int, client: int = 1, ack: int | None = None) -> bytes:
    return encode_command("put", key=key, value=value, client=client, seq=seq, ack=seq if ack is None else ack)


def delete(key: str, seq: int, client: int = 1) -> bytes:
    return encode_command("delete", key=key, client=client, seq=seq)


def cas(key: str, expected: bytes | None, new: bytes, seq: int, client: int = 1) -> bytes:
    return encode_command("cas", key=key, expected=expected, new=new, client=client, seq=seq)


def replay(log: list[bytes], **kw) -> KVStore:
    kv = KVStore(**kw)
    for index, command in enumerate(log, start=1):
        kv.apply(index, command)
    return kv


def restored(blobs, **kw) -> KVStore:
    kv = KVStore(**kw)
    kv.restore(blobs)
    return kv


def in_thread(view) -> list[bytes]:
    """Iterate ``view`` in a worker thread, as the node does."""
    out: list = []
    t = threading.Thread(target=lambda: out.extend(view))
    t.start()
    t.join()
    return out


def same(a: KVStore, b: KVStore) -> bool:
    return (a.state_digest() == b.state_digest() and a.as_dict() == b.as_dict()
            and a.sessions == b.sessions and a.applied_index == b.applied_index)


def seeded_log() -> list[bytes]:
    return [encode_command("register"), put("a", b"1", 1), put("b", b"2", 2), put("c", b"3", 3)]


# -- round trips ------------------------------------------------------------------------------


def test_a_retry_after_restore_gets_the_recorded_answer_not_a_second_application():
    log = [encode_command("register"), cas("n", None, b"1", 1), put("m", b"x", 2, ack=1)]
    kv = replay(log)
    copy = restored(kv.snapshot())
    assert same(copy, kv)
    assert copy.apply(4, cas("n", None, b"1", 1)) == {"ok": True, "swapped": True}  # recorded, though n exists
    assert copy.apply(5, cas("n", None, b"1", 3)) == {"ok": True, "swapped": False}  # a new seq applies
    assert copy.read({"op": "get", "key": "n"})["value"] == b"1"
    copy.apply(6, put("m", b"y", 7, ack=7))
    assert copy.apply(7, put("m", b"z", 2))["error"] == "stale_sequence"


def test_sessions_expired_before_the_snapshot_stay_expired_and_the_rest_expire_on_time():
    log = [encode_command("register"), encode_command("register")]
    log += [put("x", b"v", seq, client=2) for seq in range(1, 12)]  # indexes 3..13: client 1 expires at 13
    kv = replay(log, session_ttl=10)
    copy = restored(kv.snapshot(), session_ttl=10)
    assert list(copy.sessions) == [2]
    assert copy.apply(14, put("y", b"v", 1, client=1))["error"] == "session_expired"
    for store in (kv, copy):  # client 2, last used at 13, expires at 24 on both
        store.apply(14, put("y", b"v", 1, client=1))
        store.apply(24, encode_command("register"))
        assert store.apply(25, put("y", b"v", 12, client=2))["error"] == "session_expired"
    assert same(copy, kv)


def test_an_empty_store_round_trips():
    assert same(restored(KVStore().snapshot()), KVStore())


# -- the copy-on-write view -------------------------------------------------------------------


def test_the_view_is_the_state_at_snapshot_time_while_the_live_store_moves_on():
    before = seeded_log()
    after = [put("a", b"A", 4), delete("b", 5), cas("c", b"3", b"C", 6), put("d", b"D", 7), delete("d", 8),
             put("e", b"E", 9), cas("f", None, b"F", 10), delete("z", 11), put("b", b"B", 12), delete("c", 13)]
    kv = replay(before)
    view = kv.snapshot()
    results = [kv.apply(index, c) for index, c in enumerate(after, start=len(before) + 1)]
    assert results[1] == {"ok": True, "existed": True} and results[4] == {"ok": True, "existed": True}
    assert results[7] == {"ok": True, "existed": False}
    live = {"a": b"A", "b": b"B", "e": b"E", "f": b"F"}
    assert kv.data == live and len(kv.data) == 4 and "c" not in kv.data and "d" not in kv.data
    assert {k: kv.read({"op": "get", "key": k})["value"] for k in "abcdefz"} == {**dict.fromkeys("cdz"), **live}

    plain = replay(before + after)
    assert kv.state_digest() == plain.state_digest()  # whether a view is outstanding or not
    assert same(restored(in_thread(view)), replay(before))
    kv.read({"op": "get", "key": "a"})  # the loop notices the release and folds the overlay back
    assert same(kv, plain)
    assert [kv.apply(14, c) for c in after] == [plain.apply(14, c) for c in after]  # all retries now
    assert same(kv, plain)


def test_a_session_written_during_the_view_is_captured_as_it_was():
    kv = replay([encode_command("register"), put("k", b"1", 1), put("k", b"2", 2, ack=1)])
    view = kv.snapshot()
    kv.apply(4, put("k", b"3", 3, ack=3))  # forgets seqs 1 and 2 in the live session
    assert sorted(kv.sessions[1].results) == [3]
    copy = restored(in_thread(view))
    assert sorted(copy.sessions[1].results) == [1, 2]
    assert copy.apply(4, put("k", b"2", 2, ack=1)) == {"ok": True}  # still a recorded retry there
    assert copy.apply(5, put("k", b"3", 3, ack=3)) == {"ok": True}  # applied for the first time
    assert copy.read({"op": "get", "key": "k"})["value"] == b"3"
    assert kv.apply(5, put("k", b"2", 2))["error"] == "stale_sequence"


def test_the_frozen_state_survives_applies_running_while_a_thread_encodes_it():
    """The worker is held after its first data blob while the loop applies
    thousands of writes (new keys would resize a shared dict), then both run
    at once."""
    n = 3 * kvstore.BLOB_PAIRS
    before = [encode_command("register")] + [put(f"k{i:06}", b"%d" % i, i) for i in range(1, n)]
    kv = replay(before)
    view = kv.snapshot()
    first, go, out, errors = threading.Event(), threading.Event(), [], []

    def consume() -> None:
        try:
            for blob in view:
                out.append(blob)
                if len(out) == 3:  # header, session blob, first data blob
                    first.set()
                    go.wait()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker = threading.Thread(target=consume)
    worker.start()
    assert first.wait(30)
    after = []
    for i in range(n, n + 4000):
        after.append(put(f"new{i}", b"x", i) if i % 3 else delete(f"k{i - n + 1:06}", i))
        kv.apply(len(before) + len(after), after[-1])
        if i == n + 1000:
            go.set()
    worker.join()
    assert not errors
    assert same(restored(out), replay(before))
    assert same(kv, replay(before + after))


async def test_a_view_iterated_by_trio_to_thread_while_the_loop_applies():
    before = [encode_command("register")] + [put(f"k{i}", b"v", i) for i in range(1, 20_000)]
    kv = replay(before)
    after: list[bytes] = []
    view = kv.snapshot()
    async with trio.open_nursery() as nursery:
        async def writer() -> None:
            while True:
                after.append(put(f"k{len(after) % 50}", b"w%d" % len(after), 20_000 + len(after)))
                kv.apply(len(before) + len(after), after[-1])
                await trio.sleep(0)

        nursery.start_soon(writer)
        blobs = await trio.to_thread.run_sync(list, view)
        nursery.cancel_scope.cancel()
    assert same(restored(blobs), replay(before))
    assert same(kv, replay(before + after))


def test_folding_runs_a_step_per_call_and_snapshot_finishes_it(monkeypatch):
    monkeypatch.setattr(kvstore, "FOLD_STEP", 10)
    log = seeded_log()
    kv = replay(log)
    view = kv.snapshot()
    for i in range(4, 100):  # about 80 keys new or changed, two deleted (tombstones)
        log.append(put(f"k{i}", b"%d" % i, i) if i % 5 else delete("abc"[i % 2] if i < 20 else f"k{i - 4}", i))
        kv.apply(len(log), log[-1])
    assert len(in_thread(view)) >= 3
    # Each apply folds 10 entries, newest first, and writes through to the dict, dropping the key's overlay
    # entry: put a key written early in the view, delete one, put over a tombstone, delete a frozen key.
    for i, key in enumerate(["k6", "k7", "b", "c", "zz"], start=100):
        log.append(put(key, b"late", i) if i % 2 == 0 else delete(key, i))
        kv.apply(len(log), log[-1])
        assert same(kv, replay(log))
    assert kv._s.overlay  # not folded yet: the next snapshot() must finish it
    second = kv.snapshot()
    assert kv._s.overlay == {}
    assert same(restored(second), replay(log))


# -- release and the one-view rule --------------------------------------------------------------


def test_a_second_snapshot_while_a_view_is_outstanding_is_refused():
    kv = replay(seeded_log())
    view = kv.snapshot()
    with pytest.raises(RuntimeError):
        kv.snapshot()
    next(view)
    with pytest.raises(RuntimeError):
        kv.snapshot()
    list(view)
    assert same(restored(kv.snapshot()), kv)


@pytest.mark.parametrize("how", ["close-unstarted", "close-midway", "drop", "with-block-raises"])
def test_stopping_early_releases_the_view(how):
    log = seeded_log()
    kv = replay(log)
    view = kv.snapshot()
    log.append(put("a", b"during", 4))
    kv.apply(len(log), log[-1])
    if how == "close-unstarted":
        view.close()
    elif how == "close-midway":
        next(view)
        view.close()
        assert list(view) == []
    elif how == "drop":
        next(view)
        del view
    else:
        with pytest.raises(OSError), view:
            next(view)
            raise OSError("the disk is full")
    assert same(restored(kv.snapshot()), replay(log))


# -- restore --------------------------------------------------------------------------------------


def test_restore_from_blobs_that_fail_midway_leaves_the_state_as_it_was():
    other = replay([encode_command("register")] + [put(f"o{i}", b"x" * 100, i) for i in range(1, 10_000)])
    good = list(other.snapshot())
    assert len(good) > 3
    kv = replay(seeded_log())
    before = kv.state_digest()
    seen = []

    def failing():
        yield from good[:3]
        seen.append(kv.read({"op": "get", "key": "a"}))  # a stale read meanwhile sees the old state
        raise OSError("snapshot file is damaged")

    with pytest.raises(OSError):
        kv.restore(failing())
    assert seen == [{"ok": True, "value": b"1"}]
    assert kv.state_digest() == before and kv.as_dict() == {"a": b"1", "b": b"2", "c": b"3"}
    kv.restore(good)
    assert same(kv, other)


def _header(**changes) -> bytes:
    h = {"kind": "raftnet.kv", "version": 1, "applied": 3, "sessions": 0, "keys": 1, **changes}
    return cbor2.dumps({k: v for k, v in h.items() if v is not None})


@pytest.mark.parametrize("blobs", [
    [],
    [b"\xff\x00"],
    ["not bytes"],
    [struct.pack(">qq", 5, 2)],  # a Counter's snapshot
    [cbor2.dumps({"data": [], "sessions": [], "applied": 3})],  # the old one-blob format
    [cbor2.dumps(["a", b"1"])],
    [_header(kind="someone.else"), cbor2.dumps(["a", b"1"])],
    [_header(version=2), cbor2.dumps(["a", b"1"])],
    [_header(keys=None), cbor2.dumps(["a", b"1"])],
    [_header(applied=-1), cbor2.dumps(["a", b"1"])],
    [_header()],  # truncated: the data blob is missing
    [_header(), cbor2.dumps(["a", b"1", "b"])],
    [_header(), cbor2.dumps([1, b"1"])],
    [_header(), cbor2.dumps(["a", "text"])],
    [_header(), cbor2.dumps({"a": b"1"})],
    [_header(sessions=1), cbor2.dumps(["a", b"1"])],
    [_header(sessions=1), cbor2.dumps([[1, 1, 1, [1]]]), cbor2.dumps(["a", b"1"])],
    [_header(sessions=1), cbor2.dumps([[1, 1, 1, []], [2, 1, 1, []]]), cbor2.dumps(["a", b"1"])],
], ids=lambda blobs: repr(blobs)[:40])
def test_restore_refuses_what_is_not_a_kv_snapshot_and_changes_nothing(blobs):
    kv = replay(seeded_log())
    before = kv.state_digest()
    with pytest.raises(ValueError):
        kv.restore(iter(blobs))
    assert kv.state_digest() == before
    assert kv.apply(5, put("a", b"again", 4)) == {"ok": True}


def test_blobs_stay_small_whatever_the_values_and_sessions():
    log = [encode_command("register")] + [put(f"s{i}", b"s", i, ack=1) for i in range(1, 3000)]
    log += [put(f"big{i}", b"x" * 300_000, 3000 + i, ack=1) for i in range(12)]
    log += [put(f"k{i}", b"v", 3012 + i, ack=1) for i in range(1, 1000)]
    log += [encode_command("register")] + [put(f"t{i}", b"t", i, client=len(log) + 1, ack=1) for i in range(1, 3000)]
    kv = replay(log, max_outstanding=10_000)
    blobs = list(kv.snapshot())
    assert len(blobs) >= 8
    data = [cbor2.loads(b) for b in blobs[3:]]  # after the header and two session blobs
    assert len(cbor2.loads(blobs[1])) == 1 and len(cbor2.loads(blobs[2])) == 1
    assert all(len(b) <= kvstore.BLOB_BYTES + 64 * 1024 or len(d) == 2 for b, d in zip(blobs[3:], data))
    assert max(len(d) for d in data) <= 2 * kvstore.BLOB_PAIRS
    assert same(restored(blobs), kv)


# -- against a model -----------------------------------------------------------------------------

KEYS = ["a", "b", "c"]
steps = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=2)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("cas"), st.sampled_from(KEYS), st.binary(max_size=2)),
    st.tuples(st.just("cas-miss"), st.sampled_from(KEYS), st.binary(max_size=2)),
    st.tuples(st.sampled_from(["snapshot", "consume", "consume-in-thread", "close", "restore", "retry"]),
              st.integers(0, 7), st.none()),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from([1, 2, kvstore.FOLD_STEP]))
def test_snapshots_interleaved_with_commands_match_a_dict_model(ops, fold_step):
    """Whatever happens around views (taken, consumed in a thread or not,
    closed early, restored from, restored over while outstanding; folded
    back a step at a time), the store answers as a plain dict would, and
    ends equal to a store that replayed its log without any snapshot."""
    with mock.patch.object(kvstore, "FOLD_STEP", fold_step):
        check_against_the_model(ops)


def check_against_the_model(ops: list[tuple]) -> None:
    log = [encode_command("register")]
    kv, plain, model = replay(log), replay(log), {}
    view = None  # (view, the log and the model at the time)
    saved: list[tuple[list[bytes], list[bytes], dict]] = []  # blobs, and the log and model they hold
    for op, key, val in ops:
        index = len(log) + 1
        if op in ("put", "delete", "cas", "cas-miss"):
            if op == "put":
                cmd = put(key, val, index)
                model[key] = val
            elif op == "delete":
                cmd = delete(key, index)
                model.pop(key, None)
            elif op == "cas":
                cmd = cas(key, model.get(key), val, index)
                model[key] = val
            else:
                cmd = cas(key, (model.get(key) or b"") + val + b"!", b"never", index)  # never the value
            log.append(cmd)
            assert kv.apply(index, cmd) == plain.apply(index, cmd)
        elif op == "retry" and len(log) > 1:
            cmd = log[1 + key % (len(log) - 1)]
            log.append(cmd)
            assert kv.apply(index, cmd) == plain.apply(index, cmd)
        elif op == "snapshot" and view is None:
            view = (kv.snapshot(), list(log), dict(model))
        elif op in ("consume", "consume-in-thread") and view is not None:
            blobs = in_thread(view[0]) if op == "consume-in-thread" else list(view[0])
            assert same(restored(blobs), replay(view[1]))
            saved.append((blobs, view[1], view[2]))
            view = None
        elif op == "close" and view is not None:
            view[0].close()
            view = None
        elif op == "restore" and saved:
            blobs, at_log, at_model = saved[key % len(saved)]
            kv.restore(blobs)  # an outstanding view keeps iterating the state it froze
            log, plain, model = list(at_log), replay(at_log), dict(at_model)
        assert {k: kv.read({"op": "get", "key": k})["value"] for k in KEYS} == {k: model.get(k) for k in KEYS}
        assert kv.data == model
    if view is not None:
        assert same(restored(in_thread(view[0])), replay(view[1]))
    kv.read({"op": "get", "key": "a"})
    assert same(kv, plain) and same(kv, replay(log)) and kv.as_dict() == model
