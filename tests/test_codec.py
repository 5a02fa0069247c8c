"""Raft messages round-trip through CBOR; malformed ones are refused, never crash."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftnet.core.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryKind, Heartbeat,
                                   HeartbeatResponse, RequestVote, RequestVoteResponse, TimeoutNow)
from raftnet.node.codec import decode_batch, decode_message, encode_batch, encode_message
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
