"""The Jepsen-style harness (raftnet/jepsen/) in CI: short runs of real
clusters under faults, each checked for convergence and linearizability,
and a deliberately broken build that it must catch.

`make jepsen` runs the long campaigns.
"""

from __future__ import annotations

import os
import random

import pytest
import trio

from raftnet.jepsen.run import run

LONG = os.environ.get("RAFTNET_LONG") == "1"
SECONDS = 30.0 if LONG else 10.0


def one_run(tmp_path, **kw):
    seed = random.randrange(1 << 30)
    result = trio.run(lambda: run(tmp_path / f"seed-{seed}", seed=seed, **kw))
    return result


@pytest.mark.parametrize("nodes, nemeses", [
    (3, None),  # every fault
    (3, ["isolate-leader", "pause"]),  # a deposed leader that does not know it yet, with linearizable reads
    (5, None),
], ids=["3-nodes-all-faults", "3-nodes-isolated-or-paused-leader", "5-nodes-all-faults"])
def test_a_cluster_under_faults_converges_and_its_history_is_linearizable(tmp_path, nodes, nemeses):
    result = one_run(tmp_path, nodes=nodes, duration=SECONDS, nemeses=nemeses)
    assert not result.problems, f"{result.summary()}\nkept in {result.directory}"
    assert result.outcomes.get("ok", 0) > 100 and sum(result.faults.values()) >= 2, result.summary()


def test_the_harness_catches_a_build_that_serves_reads_it_cannot_vouch_for(tmp_path):
    result = one_run(tmp_path, nodes=3, duration=SECONDS, nemeses=["partition", "isolate-leader"],
                     broken="stale-reads")
    assert any("violation" in p for p in result.problems), result.summary()
