"""Randomized simulation: thousands of seeds with every fault, invariants
after every step, exact replay from a seed, and proof that the checks catch
classic Raft bugs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raftnet.sim.bugs import BUGS
from raftnet.sim.randomized import run_seed

LONG = os.environ.get("RAFTNET_LONG") == "1"
# CI: 1,000 seeds per cluster size (2,000 in all); RAFTNET_LONG=1: 10,000 per size.
SEEDS_PER_SIZE = 10_000 if LONG else 1_000
CHUNK = 250


def _run_range(nodes: int, first: int, last: int, bug: str | None = None):
    raft_class = BUGS[bug] if bug else None
    for seed in range(first, last + 1):
        outcome = run_seed(seed, nodes, raft_class=raft_class) if raft_class else run_seed(seed, nodes)
        if outcome.violation is not None:
            return outcome
    return None


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("chunk", range(SEEDS_PER_SIZE // CHUNK))
def test_correct_core_survives_every_seed(nodes, chunk):
    first = 1 + chunk * CHUNK
    outcome = _run_range(nodes, first, first + CHUNK - 1)
    assert outcome is None, (
        f"{outcome.report}\nreplay: python -m raftnet.sim --nodes {nodes} --seeds {outcome.seed} --trace"
    )


@pytest.mark.parametrize(
    "bug, invariants",
    [
        ("no-prev-log-check", {"log matching", "state machine safety", "leader completeness", "core error"}),
        ("vote-without-up-to-date", {"leader completeness", "state machine safety", "log matching"}),
        ("truncate-on-match", {"acknowledged entries stay"}),
        ("commit-prior-term", {"leader completeness", "state machine safety"}),
    ],
)
@pytest.mark.parametrize("nodes", [3, 5])
def test_randomized_runs_catch_the_bug(bug, invariants, nodes):
    outcome = _run_range(nodes, 1, SEEDS_PER_SIZE, bug)
    assert outcome is not None, f"--bug {bug} survived {SEEDS_PER_SIZE} seeds on {nodes} nodes"
    assert outcome.violation.invariant in invariants, outcome.report
    assert f"seed={outcome.seed}" in outcome.report


def test_a_seed_replays_exactly():
    first, second = [], []
    a = run_seed(4242, 5, trace=first.append)
    b = run_seed(4242, 5, trace=second.append)
    assert a.steps == b.steps and len(first) > 100
    assert first == second


def test_different_seeds_take_different_paths():
    first, second = [], []
    run_seed(1, 5, trace=first.append)
    run_seed(2, 5, trace=second.append)
    assert first != second


def _sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftnet.sim", *args], capture_output=True, text=True, timeout=300)


def test_cli_summary_and_exit_codes():
    ok = _sim("--nodes", "3", "--seeds", "1-20")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    last = ok.stdout.strip().splitlines()[-1]
    assert last.startswith("seeds=20 steps=") and last.endswith("violations=0")

    bad = _sim("--nodes", "5", "--seeds", "1-200", "--bug", "truncate-on-match")
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert lines[-1].endswith("violations=1")
    assert "invariant='acknowledged entries stay'" in bad.stdout
    replay = next(line for line in lines if line.startswith("replay: "))
    seed = replay.split("--seeds ")[1].split()[0]
    again = _sim("--nodes", "5", "--seeds", seed, "--bug", "truncate-on-match")
    assert again.returncode == 1
    # The replay reports the same violation at the same step.
    assert again.stdout.splitlines()[0] == next(line for line in lines if line.startswith("VIOLATION"))

    for usage in (["--seeds", "x"], ["--nodes", "5"], ["--seeds", "1", "--bug", "nope"], ["--seeds", "5-1"]):
        r = _sim(*usage)
        assert r.returncode == 64, (usage, r.stderr)
