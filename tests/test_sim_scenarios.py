"""Named scenarios from the command line, and the bugs they expose."""

from __future__ import annotations

import pytest

from raftnet.sim import scenarios
from raftnet.sim.bugs import BUGS
from raftnet.sim.invariants import Violation


def test_backup_one_step_backtracking_costs_many_times_the_messages():
    fast = scenarios.backup()
    slow = scenarios.backup(raft_class=BUGS["one-step-backtrack"])
    assert slow["messages"] >= 5 * fast["messages"], (fast, slow)


def test_figure8_schedule_passes_with_the_correct_core():
    figures = scenarios.figure8_paper()
    assert figures["messages"] > 0


def test_figure8_schedule_catches_commit_prior_term_at_the_commit():
    """The buggy leader's commit of the old entry is flagged the moment it
    happens (a node without it could still win), not only when that node
    later wins and the entry is gone (leader completeness)."""
    with pytest.raises(Violation) as info:
        scenarios.figure8_paper(raft_class=BUGS["commit-prior-term"])
    assert info.value.invariant == "committed entry at risk"
    assert "could be elected by" in info.value.detail


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figure8_crash_loop(seed):
    """1,000 iterations of propose / wait / crash the leader (lab 2C)."""
    figures = scenarios.figure8(seed=seed)
    assert figures["iterations"] == 1000


@pytest.mark.parametrize("seed", [1, 2])
def test_figure8_unreliable(seed):
    scenarios.figure8(seed=seed, unreliable=True)


@pytest.mark.parametrize("unreliable", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_churn(seed, unreliable):
    figures = scenarios.churn(seed=seed, unreliable=unreliable)
    assert figures["applied"] > 1
