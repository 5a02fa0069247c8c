"""Unit tests for the small core modules: quorum math, progress, the log view."""

from hypothesis import given
from hypothesis import strategies as st

from raftnet.core.log import ENTRY_OVERHEAD_BYTES, RaftLog
from raftnet.core.messages import Entry
from raftnet.core.progress import Inflights, Progress, ProgressState
from raftnet.core.quorum import JointConfig, MajorityConfig, VoteResult


def log_of(*terms: int) -> RaftLog:
    return RaftLog([Entry(i, t) for i, t in enumerate(terms, start=1)])


# -- quorum -------------------------------------------------------------------


def test_committed_index_is_the_quorum_th_largest_match():
    cfg = MajorityConfig.of([1, 2, 3, 4, 5])
    assert cfg.committed_index({1: 9, 2: 7, 3: 5, 4: 2, 5: 1}) == 5
    assert cfg.committed_index({1: 9, 2: 7}) == 0  # missing voters hold nothing


@given(st.sets(st.integers(1, 9), min_size=1), st.data())
def test_any_two_quorums_intersect(voters, data):
    """Reference: §5.2, §5.4.3 — safety rests on every two majorities sharing a voter."""
    cfg = MajorityConfig.of(voters)
    a = data.draw(st.sets(st.sampled_from(sorted(voters))))
    b = data.draw(st.sets(st.sampled_from(sorted(voters))))
    if cfg.has_quorum(a) and cfg.has_quorum(b):
        assert a & b


@given(st.dictionaries(st.integers(1, 5), st.integers(0, 50)))
def test_committed_index_is_held_by_a_quorum(match):
    cfg = MajorityConfig.of([1, 2, 3, 4, 5])
    idx = cfg.committed_index(match)
    holders = [v for v in cfg.voters if match.get(v, 0) >= idx]
    assert cfg.has_quorum(holders)
    # ...and nothing larger is.
    assert not cfg.has_quorum([v for v in cfg.voters if match.get(v, 0) >= idx + 1])


def test_vote_result_pending_won_lost():
    cfg = MajorityConfig.of([1, 2, 3])
    assert cfg.vote_result({1: True}) is VoteResult.PENDING
    assert cfg.vote_result({1: True, 2: True}) is VoteResult.WON
    assert cfg.vote_result({1: True, 2: False, 3: False}) is VoteResult.LOST
    assert cfg.vote_result({2: False, 3: False}) is VoteResult.LOST


def test_joint_config_needs_both_majorities():
    """Reference: thesis §4.3 — during joint consensus a decision needs both."""
    joint = JointConfig(MajorityConfig.of([1, 2, 3]), MajorityConfig.of([3, 4, 5]))
    assert joint.committed_index({1: 10, 2: 10, 3: 4, 4: 3, 5: 1}) == 3  # min(10, 3)
    assert joint.vote_result({1: True, 2: True}) is VoteResult.PENDING
    assert joint.vote_result({1: True, 2: True, 4: True, 5: True}) is VoteResult.WON
    assert joint.vote_result({1: True, 2: True, 4: False, 5: False}) is VoteResult.LOST
    simple = JointConfig.simple([1, 2, 3])
    assert simple.committed_index({1: 3, 2: 2, 3: 1}) == 2
    assert not simple.is_joint


# -- progress -------------------------------------------------------------------


def test_inflights_bounded_in_messages_and_bytes():
    inf = Inflights(max_msgs=3, max_bytes=100)
    inf.add(5, 10)
    inf.add(9, 10)
    assert not inf.full()
    inf.add(12, 90)
    assert inf.full()
    inf.free_to(9)
    assert len(inf) == 1 and inf.bytes == 90 and not inf.full()
    inf2 = Inflights(max_msgs=10, max_bytes=100)
    inf2.add(1, 150)
    assert inf2.full()  # one oversized message fills the byte window


def test_probe_sends_one_at_a_time_replicate_pipelines():
    pr = Progress(next_index=5, max_inflight_msgs=2, max_inflight_bytes=1 << 20)
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.sent(7, 30)
    assert pr.is_paused() and pr.next == 5  # probe: next does not move optimistically
    assert pr.acknowledged(7)
    pr.become_replicate()
    assert pr.next == 8
    pr.sent(10, 1)
    pr.sent(12, 1)
    assert pr.next == 13 and pr.is_paused()  # window of two messages is full
    assert pr.acknowledged(10) and not pr.is_paused()
    assert not pr.acknowledged(9)  # stale acknowledgement changes nothing
    assert pr.match == 10


# -- log -------------------------------------------------------------------------


def test_term_at_and_bounds():
    log = log_of(1, 1, 2)
    assert log.term_at(0) == 0 and log.term_at(3) == 2 and log.term_at(4) is None
    assert log.last_index == 3 and log.last_term == 2 and log.first_index == 1


def test_log_with_snapshot_offset_keeps_first_index():
    log = RaftLog([Entry(11, 3), Entry(12, 4)], compacted_index=10, compacted_term=3)
    assert log.first_index == 11 and log.term_at(10) == 3 and log.term_at(9) is None
    assert log.entries(1, 100) == [Entry(11, 3), Entry(12, 4)]


def test_up_to_date_compares_last_term_then_index():
    """Reference: §5.4.1."""
    log = log_of(1, 2, 2)
    assert log.is_up_to_date(1, 3)  # higher last term wins even if shorter
    assert log.is_up_to_date(3, 2) and log.is_up_to_date(4, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(10, 1)


def test_first_conflict_ignores_matching_entries():
    log = log_of(1, 1, 2, 2)
    assert log.first_conflict([Entry(2, 1), Entry(3, 2)]) == 0
    assert log.first_conflict([Entry(3, 2), Entry(4, 3)]) == 4
    assert log.first_conflict([Entry(4, 2), Entry(5, 2)]) == 5


def test_conflict_hint_names_term_and_its_first_index():
    log = log_of(1, 2, 2, 2, 3)
    assert log.conflict_hint(4) == (2, 2)
    assert log.conflict_hint(9) == (0, 6)  # our log is shorter


def test_entries_limited_takes_at_least_one():
    log = RaftLog([Entry(1, 1, b"x" * 100), Entry(2, 1, b"y" * 10), Entry(3, 1, b"z")])
    assert [e.index for e in log.entries_limited(1, 50)] == [1]
    assert [e.index for e in log.entries_limited(2, 11 + 2 * ENTRY_OVERHEAD_BYTES)] == [2, 3]


def test_entries_limited_counts_each_entrys_overhead_so_tiny_entries_are_bounded_too():
    log = RaftLog([Entry(i, 1, b"") for i in range(1, 1001)])
    assert len(log.entries_limited(1, 10 * ENTRY_OVERHEAD_BYTES)) == 10


def test_stable_to_ignores_a_replaced_entry():
    log = log_of(1, 1)
    log.append([Entry(3, 1)])
    assert log.unstable_entries() == [Entry(3, 1)]
    log.truncate_after(2)
    log.append([Entry(3, 2)])
    log.stable_to(3, 1)  # the write of the old entry 3 finished; the new one is not durable
    assert log.stable_index == 2
    log.stable_to(3, 2)
    assert log.stable_index == 3
