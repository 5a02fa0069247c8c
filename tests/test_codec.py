"""Raft messages round-trip through CBOR; malformed ones are refused, never crash."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftnet.core.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryKind, Heartbeat,
                                   HeartbeatResponse, RequestVote, RequestVoteResponse, TimeoutNow)
from raftnet.node.codec import (batch_frame, decode_batch, decode_message, encode_batch, encode_message,
                                message_bytes)
from raftnet.node.wire import ProtocolError

n = st.integers(0, 1 << 40)
entries = st.lists(st.builds(Entry, n, n, st.binary(max_size=40), st.sampled_from(list(EntryKind))), max_size=5)
messages = st.one_of(
    st.builds(RequestVote, term=n, src=n, dst=n, last_log_index=n, last_log_term=n, pre_vote=st.booleans(),
              leader_transfer=st.booleans()),
    st.builds(RequestVoteResponse, term=n, src=n, dst=n, granted=st.booleans(), pre_vote=st.booleans()),
    st.builds(AppendEntries, term=n, src=n, dst=n, prev_log_index=n, prev_log_term=n,
              entries=entries.map(tuple), leader_commit=n),
    st.builds(AppendEntriesResponse, term=n, src=n, dst=n, success=st.booleans(), match_index=n,
              rejected_index=n, conflict_term=n, conflict_index=n),
    st.builds(Heartbeat, term=n, src=n, dst=n, commit=n, seq=n),
    st.builds(HeartbeatResponse, term=n, src=n, dst=n, seq=n),
    st.builds(TimeoutNow, term=n, src=n, dst=n),
)


@given(st.lists(messages, max_size=6))
def test_batches_round_trip(batch):
    frame = encode_batch(batch)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_batch(cbor2.loads(frame[4:])) == batch


@pytest.mark.parametrize("bad", [[99, 1, 1, 2], [5, 1, 1], [5, -1, 1, 2, 0, 0], [5, 1, 1, 2, "x", 0],
                                 [2, 1, 1, 2, 1, 0], [3, 1, 1, 2, 0, 0, [[1, 1, 0, "str"]], 0],
                                 [3, 1, 1, 2, 0, 0, [[1, 1, 9, b""]], 0], "nope", [True, 1, 1, 2]])
def test_malformed_messages_are_protocol_errors(bad):
    with pytest.raises(ProtocolError):
        decode_message(bad)


def test_entry_payload_bytes_are_carried_as_is():
    e = Entry(3, 2, b"\x00\x01payload")
    m = AppendEntries(term=2, src=1, dst=2, prev_log_index=2, prev_log_term=1, entries=(e,), leader_commit=2)
    assert encode_message(m)[6][0][3] is e.data


@given(st.lists(messages, max_size=30))
def test_a_frame_built_from_separately_encoded_messages_is_the_batch_encoding(batch):
    assert batch_frame([message_bytes(m) for m in batch]) == encode_batch(batch)
    assert cbor2.loads(encode_batch(batch)[4:]) == {"t": "raft", "m": [encode_message(m) for m in batch]}


async def test_a_peer_link_bounds_every_frame_by_bytes_and_drops_what_cannot_fit():
    """A follower far behind gets appends of up to max_size_per_msg bytes each;
    many of them queued at once must go out as several frames, each one
    under the limit the receiver enforces, in order."""
    import random

    import trio
    import trio.testing

    from raftnet.node.peer import PeerLink
    from raftnet.node.wire import FrameReader

    limit = 64 << 10
    ours, theirs = trio.testing.memory_stream_pair()

    async def connect():
        return ours

    link = PeerLink(2, "n2:1", connect, queue_size=1024, rng=random.Random(1), max_frame_bytes=limit)
    sent = [AppendEntries(term=1, src=1, dst=2, prev_log_index=i, prev_log_term=1,
                          entries=(Entry(i + 1, 1, bytes([i % 256]) * 20_000),), leader_commit=0)
            for i in range(100)]
    too_big = AppendEntries(term=1, src=1, dst=2, prev_log_index=100, prev_log_term=1,
                            entries=(Entry(101, 1, b"x" * limit),), leader_commit=0)
    for m in sent[:50] + [too_big] + sent[50:]:
        link.send(m)
    reader = FrameReader(theirs, limit)  # raises ProtocolError on any frame over the limit
    got, frames = [], 0
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run)
            while len(got) < len(sent):
                got += decode_batch(await reader.read())
                frames += 1
            nursery.cancel_scope.cancel()
    assert got == sent
    assert frames >= len(sent) // 3  # three 20 kB appends fit in 64 KiB, never more
    assert link.dropped == 1
