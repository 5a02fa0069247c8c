"""The linearizability checker (`raftnet.check`, `raftnet check`): one test
per anomaly it must catch and per history it must accept, the history
format's validation, the command's outputs and exit codes, agreement with a
brute-force checker on small random histories, and a 20,000-op history."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from itertools import combinations, permutations

import pytest
from click.testing import CliRunner

from raftnet.check import HistoryError, Op, check, load_history
from raftnet.check.history import as_ops
from raftnet.check.simulate import linearizable_history, with_stale_read
from raftnet.cli import main as cli_main


def op(process, f, key, invoke, complete, value=None, expected=None, output=None, outcome="ok") -> dict:
    """One operation in the history format."""
    d = {"process": process, "f": f, "key": key, "output": output, "outcome": outcome,
         "invoke": invoke, "complete": complete}
    if f in ("put", "cas"):
        d["value"] = value
    if f == "cas":
        d["expected"] = expected
    return d


def put(p, key, value, invoke, complete, outcome="ok"):
    return op(p, "put", key, invoke, complete, value=value, outcome=outcome)


def get(p, key, output, invoke, complete, outcome="ok"):
    return op(p, "get", key, invoke, complete, output=output, outcome=outcome)


def delete(p, key, existed, invoke, complete, outcome="ok"):
    return op(p, "delete", key, invoke, complete, output=existed, outcome=outcome)


def cas(p, key, expected, value, swapped, invoke, complete, outcome="ok"):
    return op(p, "cas", key, invoke, complete, value=value, expected=expected, output=swapped, outcome=outcome)


def linearizable(history) -> bool:
    status = check(history).status
    assert status in ("ok", "violation")
    return status == "ok"


# --- histories it must accept --------------------------------------------


def test_sequential_history_is_linearizable():
    history = [
        get(1, "k", None, 0, 1),
        put(1, "k", "a", 2, 3),
        get(2, "k", "a", 4, 5),
        cas(1, "k", "a", "b", True, 6, 7),
        cas(2, "k", "a", "c", False, 8, 9),
        delete(1, "k", True, 10, 11),
        delete(2, "k", False, 12, 13),
        cas(1, "k", None, "d", True, 14, 15),
        get(2, "k", "d", 16, 17),
        put(3, "other", "x", 0, 17),
    ]
    result = check(history)
    assert result.status == "ok"
    assert (result.operations, result.keys, result.keys_checked) == (10, 2, 2)
    assert result.counts == {"ok": 10, "unknown": 0, "fail": 0}


def test_concurrent_history_is_linearizable():
    history = [
        put(1, "k", "a", 0, 1),
        # b and c overlap: the reads after them say c went last
        put(1, "k", "b", 2, 6),
        put(2, "k", "c", 3, 5),
        get(3, "k", "a", 2.5, 4),  # overlaps both writes: may see the old value
        get(3, "k", "b", 7, 8),
        get(4, "k", "b", 9, 10),
    ]
    assert linearizable(history)
    # Two overlapping cas from the same value: one wins, the other fails.
    assert linearizable([put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", True, 2, 5),
                         cas(3, "k", "a", "c", False, 3, 6), get(1, "k", "b", 7, 8)])


def test_a_deep_history_on_one_key_does_not_recurse():
    # deeper than Python's default recursion limit (1000)
    history = [put(1, "k", f"v{i}", 2 * i, 2 * i + 1) for i in range(3000)]
    history += [get(2, "k", "v2999", 6000, 6001)]
    assert linearizable(history)
    history[-1] = get(2, "k", "v2998", 6000, 6001)
    result = check(history)
    assert result.status == "violation" and len(result.prefix) == 3000


# --- anomalies it must catch ---------------------------------------------


def test_stale_read_is_a_violation():
    history = [
        put(1, "k", "a", 0, 1),
        put(2, "k", "b", 2, 3),
        get(3, "k", "a", 4, 5),  # b was acknowledged before this read began
        put(1, "j", "x", 0, 5),
    ]
    result = check(history)
    assert result.status == "violation" and result.key == "k"
    assert [o.value for o in result.prefix] == ["a", "b"]
    assert result.state == "b"
    assert (result.op.f, result.op.output, result.op.line) == ("get", "a", 3)
    assert result.concurrent == ()


def test_lost_write_is_a_violation():
    history = [
        put(1, "k", "old", 0, 1),
        put(2, "k", "new", 2, 3),  # acknowledged, then never seen again
        get(3, "k", "old", 4, 5),
        get(1, "k", "old", 6, 7),
    ]
    result = check(history)
    assert result.status == "violation" and result.key == "k"
    assert result.op.output == "old" and result.state == "new"


def test_read_of_a_value_never_written_is_a_violation():
    history = [put(1, "k", "a", 0, 1), get(2, "k", "zzz", 0.5, 3)]
    result = check(history)
    assert result.status == "violation"
    assert result.op.output == "zzz"
    assert [o.value for o in result.concurrent] == ["a"]


def test_cas_that_succeeds_when_the_state_cannot_match_is_a_violation():
    assert not linearizable([put(1, "k", "c", 0, 1), cas(2, "k", "a", "b", True, 2, 3)])
    assert not linearizable([cas(2, "k", "a", "b", True, 0, 1)])  # the key was absent
    assert not linearizable([put(1, "k", "a", 0, 1), cas(2, "k", None, "b", True, 2, 3)])
    assert linearizable([put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", True, 2, 3)])


def test_two_concurrent_cas_both_succeeding_from_the_same_value_is_a_violation():
    history = [put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", True, 2, 5), cas(3, "k", "a", "c", True, 3, 6)]
    result = check(history)
    assert result.status == "violation"
    assert len(result.prefix) == 2 and {result.prefix[-1].value, result.op.value} == {"b", "c"}
    assert result.concurrent == (result.prefix[-1],)


def test_delete_results_must_match_presence():
    assert not linearizable([delete(1, "k", True, 0, 1)])
    assert not linearizable([put(1, "k", "a", 0, 1), delete(1, "k", False, 2, 3)])
    assert not linearizable([put(1, "k", "a", 0, 1), delete(1, "k", True, 2, 3), get(2, "k", "a", 4, 5)])


# --- unknown outcomes, fail outcomes, equal times ---------------------------


def test_an_unknown_op_that_must_have_taken_effect():
    history = [put(1, "k", "a", 0, 1), put(2, "k", "b", 2, None, outcome="unknown"), get(3, "k", "b", 10, 11)]
    assert linearizable(history)
    # ... even long after its client gave up (its complete time is not a bound)
    history[1] = put(2, "k", "b", 2, 3, outcome="unknown")
    assert linearizable(history)


def test_an_unknown_op_that_must_never_have_taken_effect():
    history = [
        put(1, "k", "a", 0, 1),
        delete(2, "k", None, 2, None, outcome="unknown"),
        get(3, "k", "a", 3, 4),
        get(3, "k", "a", 10, 11),
        cas(1, "k", "a", "b", True, 12, 13),
    ]
    assert linearizable(history)


def test_an_unknown_op_cannot_explain_a_read_that_ended_before_it_began():
    history = [get(1, "k", "a", 0, 1), put(2, "k", "a", 2, None, outcome="unknown")]
    result = check(history)
    assert result.status == "violation" and result.op.output == "a" and result.prefix == ()
    # An unknown op is not taken to have happened twice either.
    assert not linearizable([put(1, "k", "x", 0, None, outcome="unknown"), get(2, "k", "x", 1, 2),
                             put(3, "k", "y", 3, 4), get(2, "k", "x", 5, 6)])


def test_unknown_cas_applies_only_from_its_expected_value():
    history = [put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", None, 2, None, outcome="unknown"), get(3, "k", "b", 5, 6)]
    assert linearizable(history)
    history[0] = put(1, "k", "z", 0, 1)
    assert not linearizable(history)


def test_which_unknown_op_explains_a_read_matters_later():
    # Both unknown ops can explain the first read, but only the cas from
    # absent can: the put is needed again after y.
    history = [
        put(1, "k", "x", 0, None, outcome="unknown"),
        cas(2, "k", None, "x", None, 0.5, None, outcome="unknown"),
        get(3, "k", "x", 1, 2),
        put(3, "k", "y", 3, 4),
        get(3, "k", "x", 5, 6),
    ]
    assert linearizable(history)
    history[1] = put(2, "k", "x", 0.5, None, outcome="unknown")
    assert linearizable(history)
    history[1] = get(2, "k", None, 0.5, None, outcome="unknown")
    assert not linearizable(history)


def test_equal_timestamps_are_concurrent():
    # The get begins the instant the put completes: it may come first.
    assert linearizable([put(1, "k", "a", 0, 1), get(2, "k", None, 1, 2)])
    assert not linearizable([put(1, "k", "a", 0, 1), get(2, "k", None, 1.5, 2)])
    # An op of zero duration at the same instant as others.
    assert linearizable([put(1, "k", "a", 1, 1), get(2, "k", None, 1, 1), get(3, "k", "a", 1, 1)])


def test_fail_ops_are_ignored():
    history = [put(1, "k", "a", 0, 1), put(2, "k", "b", 2, 3, outcome="fail"), get(3, "k", "a", 4, 5)]
    result = check(history)
    assert result.status == "ok" and result.counts == {"ok": 2, "unknown": 0, "fail": 1}
    history[2] = get(3, "k", "b", 4, 5)
    assert not linearizable(history)
    # a fail op's output and complete time do not matter
    assert linearizable([get(1, "k", "nonsense", 0, None, outcome="fail")])


# --- the history format ----------------------------------------------------


def test_load_history_from_a_file_and_from_lines(tmp_path):
    history = [put(1, "k", "a", 0, 1), cas(2, "k", None, "b", False, 0.5, 2.25),
               get(3, "k", None, 3, None, outcome="unknown"), delete(1, "k", True, 4, 5)]
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in history) + "\n")
    ops = load_history(path)
    assert [o.to_dict() for o in ops] == history
    assert [o.line for o in ops] == [1, 2, 3, 4]
    assert load_history(str(path)) == ops
    assert load_history(path.read_text().splitlines()) == ops
    assert check(ops).status == check(history).status == "ok"


MALFORMED = [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"f": "get", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1, "output": null}', 'missing field "process"'),
    ('{"process": "p1", "f": "get", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1, "output": null}', '"process"'),
    ('{"process": true, "f": "get", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1, "output": null}', '"process"'),
    ('{"process": 1, "f": "read", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1}', '"f" must be one of'),
    ('{"process": 1, "f": "get", "key": 7, "outcome": "ok", "invoke": 0, "complete": 1, "output": null}', '"key"'),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "info", "invoke": 0, "complete": 1, "output": null}', '"outcome"'),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "ok", "invoke": "0", "complete": 1, "output": null}', '"invoke"'),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "ok", "invoke": NaN, "complete": 1, "output": null}', '"invoke"'),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "ok", "invoke": 0, "complete": null, "output": null}', 'needs a "complete"'),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "ok", "invoke": 2, "complete": 1, "output": null}', "before"),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1}', 'needs "output"'),
    ('{"process": 1, "f": "get", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1, "output": 3}', "value read"),
    ('{"process": 1, "f": "get", "key": "k", "value": "v", "outcome": "ok", "invoke": 0, "complete": 1, "output": "v"}', 'no "value"'),
    ('{"process": 1, "f": "put", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1}', 'string "value"'),
    ('{"process": 1, "f": "put", "key": "k", "value": "v", "outcome": "ok", "invoke": 0, "complete": 1, "output": true}', "must be null"),
    ('{"process": 1, "f": "cas", "key": "k", "value": "v", "outcome": "ok", "invoke": 0, "complete": 1, "output": true}', 'needs "expected"'),
    ('{"process": 1, "f": "cas", "key": "k", "value": "v", "expected": 1, "outcome": "ok", "invoke": 0, "complete": 1, "output": true}', '"expected"'),
    ('{"process": 1, "f": "cas", "key": "k", "value": "v", "expected": null, "outcome": "ok", "invoke": 0, "complete": 1, "output": "yes"}', "whether it swapped"),
    ('{"process": 1, "f": "delete", "key": "k", "outcome": "ok", "invoke": 0, "complete": 1, "output": null}', "whether the key existed"),
    ('{"process": 1, "f": "delete", "key": "k", "expected": "v", "outcome": "ok", "invoke": 0, "complete": 1, "output": true}', 'only cas takes "expected"'),
]


@pytest.mark.parametrize("line, reason", MALFORMED)
def test_a_malformed_line_names_its_line_and_what_is_wrong(line, reason):
    good = json.dumps(put(1, "k", "a", 0, 1))
    with pytest.raises(HistoryError) as info:
        load_history([good, "", line, good])
    assert info.value.line == 3 and reason in info.value.reason
    assert str(info.value).startswith("line 3: ")
    assert isinstance(info.value, ValueError)


def test_not_utf8_and_dicts_passed_in_process():
    with pytest.raises(HistoryError, match="line 2: not UTF-8"):
        load_history([json.dumps(put(1, "k", "a", 0, 1)).encode(), b'{"f": "\xff"}'])
    with pytest.raises(HistoryError, match="operation 2: missing field \"outcome\""):
        check([put(1, "k", "a", 0, 1), {"process": 1, "f": "get", "key": "k", "invoke": 0}])
    mixed = [Op(1, "put", "k", "a", None, None, "ok", 0, 1), get(2, "k", "a", 2, 3)]
    assert check(mixed).status == "ok"


def test_timeout_makes_the_result_undecided():
    history = [put(1, "k", "a", 0, 1), get(2, "k", "a", 2, 3)]
    result = check(history, timeout=0)
    assert (result.status, result.key, result.keys_checked) == ("undecided", "k", 0)
    assert check(history, timeout=60).status == "ok"


# --- the command -------------------------------------------------------------


def write(path, history) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in history))
    return str(path)


def raftnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftnet", *args], capture_output=True, text=True, timeout=60)


def cli(*args: str):
    return CliRunner().invoke(cli_main, list(args), catch_exceptions=False)


STALE = [put(1, "k", "a", 0, 1), put(2, "k", "b", 2, 3), get(3, "k", "a", 4, 6),
         put(4, "k", "c", 5, None, outcome="unknown"), put(5, "j", "x", 0, 1)]


def test_command_exit_codes_and_text(tmp_path):
    ok = raftnet("check", write(tmp_path / "ok.jsonl", STALE[:2]))
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "OK: 2 operations on 1 key are linearizable\n", "")

    bad = raftnet("check", write(tmp_path / "bad.jsonl", STALE))
    assert bad.returncode == 1, bad.stderr
    lines = bad.stdout.splitlines()
    assert lines[0] == 'VIOLATION: key "k" is not linearizable (5 operations on 2 keys)'
    assert '  p1 put k "a"  ok  0..1' in lines and '  p2 put k "b"  ok  2..3' in lines
    placed = lines.index("cannot be placed next:")
    assert lines[placed + 1] == '  p3 get k -> "a"  ok  4..6'
    assert lines[placed + 3] == '  p4 put k "c"  unknown  5..?'

    (tmp_path / "mal.jsonl").write_text(json.dumps(put(1, "k", "a", 0, 1)) + "\n{oops\n")
    mal = raftnet("check", str(tmp_path / "mal.jsonl"))
    assert mal.returncode == 64 and mal.stdout == ""
    assert len(mal.stderr.strip().splitlines()) == 1 and "mal.jsonl line 2: not JSON" in mal.stderr


def test_command_json_for_every_outcome(tmp_path):
    r = cli("check", write(tmp_path / "ok.jsonl", STALE[:2]), "--json")
    assert r.exit_code == 0
    assert json.loads(r.output) | {"seconds": 0} == {
        "status": "ok", "operations": 2, "counts": {"ok": 2, "unknown": 0, "fail": 0}, "keys": 1,
        "keys_checked": 1, "seconds": 0}

    r = cli("check", write(tmp_path / "bad.jsonl", STALE), "--json")
    out = json.loads(r.output)
    assert r.exit_code == 1 and out["status"] == "violation" and out["key"] == "k"
    assert out["prefix"] == [STALE[0], STALE[1]] and out["state"] == "b"
    assert out["op"] == STALE[2] and out["concurrent"] == [STALE[3]]

    r = cli("check", str(tmp_path / "missing.jsonl"), "--json")
    assert r.exit_code == 64 and json.loads(r.output)["error"] == "unreadable"
    (tmp_path / "mal.jsonl").write_text('{"process": 1}\n')
    r = cli("check", str(tmp_path / "mal.jsonl"), "--json")
    assert r.exit_code == 64 and json.loads(r.output)["line"] == 1

    r = cli("check", write(tmp_path / "ok.jsonl", STALE[:2]), "--timeout", "1e-9")
    assert r.exit_code == 2 and r.output.startswith('UNDECIDED: gave up after 1e-09s on key "k"')
    r = cli("check", str(tmp_path / "ok.jsonl"), "--timeout", "1e-9", "--json")
    assert r.exit_code == 2 and json.loads(r.output)["status"] == "undecided"

    r = cli("check", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 64 and "cannot read" in r.output
    assert cli("check", str(tmp_path / "ok.jsonl"), "--timeout", "-1").exit_code == 64


def test_a_long_prefix_is_cut_to_its_end(tmp_path):
    history = [put(1, "k", f"v{i}", 2 * i, 2 * i + 1) for i in range(30)] + [get(2, "k", "v3", 100, 101)]
    r = cli("check", write(tmp_path / "long.jsonl", history))
    assert r.exit_code == 1
    assert "longest linearizable prefix: 30 ops, the last 10:" in r.output and "... 20 earlier ops" in r.output
    assert '"v29"' in r.output and '"v19"' not in r.output.split("cannot be placed")[0]


# --- against a brute-force checker -----------------------------------------


def brute_force_linearizable(history) -> bool:
    """Try every order of the ok ops and any subset of the unknown ops that
    respects real time (an unknown op never ends), replaying the model."""
    ops = [o for o in as_ops(history) if o.outcome != "fail"]
    ok = [o for o in ops if o.outcome == "ok"]
    unknown = [o for o in ops if o.outcome == "unknown"]

    def end(o):
        return o.complete if o.outcome == "ok" else float("inf")

    def replays(order) -> bool:
        state = {}
        for o in order:
            cur = state.get(o.key)
            if o.f == "get":
                out, new = cur, cur
            elif o.f == "put":
                out, new = None, o.value
            elif o.f == "delete":
                out, new = cur is not None, None
            else:
                out = cur == o.expected
                new = o.value if out else cur
            if o.outcome == "ok" and out != o.output:
                return False
            state[o.key] = new
        return True

    for r in range(len(unknown) + 1):
        for chosen in combinations(unknown, r):
            for order in permutations(ok + list(chosen)):
                in_time = all(not end(later) < earlier.invoke
                              for i, earlier in enumerate(order) for later in order[i + 1:])
                if in_time and replays(order):
                    return True
    return False


def random_history(rng: random.Random, ops: int, keys: int, weights: tuple[int, int, int]) -> list[dict]:
    """``ops`` ops on ``keys`` keys, outcomes ok, unknown and fail in the
    proportions ``weights``, with a few values and small integer times (so
    times tie). Half the histories take their outputs from an execution
    (linearizable unless one output is then flipped), half are random."""
    keys, values = ["a", "b"][:keys], ["x", "y", "z"][:rng.randint(1, 3)]
    history = []
    for p in range(ops):
        f = rng.choice(("get", "put", "delete", "cas"))
        invoke = rng.randint(0, 8)
        outcome = rng.choices(("ok", "unknown", "fail"), weights)[0]
        history.append(op(p, f, rng.choice(keys), invoke, invoke + rng.randint(0, 4),
                          value=rng.choice(values) if f in ("put", "cas") else None,
                          expected=rng.choice(values + [None]) if f == "cas" else None, outcome=outcome))
    if rng.random() < 0.5:
        points = []
        for o in history:
            if o["outcome"] == "ok" or (o["outcome"] == "unknown" and rng.random() < 0.5):
                points.append((rng.uniform(o["invoke"], o["complete"] + (5 if o["outcome"] != "ok" else 0)), o))
        state = {}
        for _, o in sorted(points, key=lambda t: t[0]):
            cur = state.get(o["key"])
            if o["f"] == "get":
                o["output"] = cur
            elif o["f"] == "put":
                state[o["key"]] = o["value"]
            elif o["f"] == "delete":
                o["output"], state[o["key"]] = cur is not None, None
            else:
                o["output"] = cur == o["expected"]
                state[o["key"]] = o["value"] if o["output"] else cur
        if rng.random() < 0.3:
            o = rng.choice(history)
            if o["f"] == "get":
                o["output"] = rng.choice(values + [None])
            elif o["f"] != "put":
                o["output"] = not o["output"]
    else:
        for o in history:
            o["output"] = {"get": rng.choice(values + [None]), "put": None}.get(o["f"], rng.random() < 0.5)
    for o in history:
        if o["outcome"] != "ok" and rng.random() < 0.5:
            o["complete"] = None
    return history


@pytest.mark.parametrize("regime, seeds", [("mixed", 2000), ("unknown-heavy", 800)])
def test_agrees_with_brute_force_on_small_random_histories(regime, seeds):
    outcomes = {True: 0, False: 0}
    for seed in range(seeds):
        rng = random.Random(f"{regime} {seed}")
        if regime == "mixed":
            history = random_history(rng, rng.randint(1, 7), rng.randint(1, 2), (65, 25, 10))
        else:  # where the rules that prune unknown ops matter
            history = random_history(rng, rng.randint(5, 7), 1, (40, 60, 0))
        expected = brute_force_linearizable(history)
        result = check(history)
        assert (result.status == "ok") == expected, f"{regime} seed {seed}: checker says {result.status}: {history}"
        outcomes[expected] += 1
        if not expected:
            assert_report_is_consistent(result, history, seed)
    assert min(outcomes.values()) >= seeds // 5, outcomes


def assert_report_is_consistent(result, history, seed):
    """The prefix is a linearization of its own ops on the violating key that
    ends in the reported state, and the op stuck after it is an ok op of
    that key outside it."""
    prefix, key = result.prefix, result.key
    assert all(o.key == key for o in prefix), seed
    assert result.op.outcome == "ok" and result.op.key == key and result.op not in prefix, seed
    for i, earlier in enumerate(prefix):
        for later in prefix[i + 1:]:
            assert later.outcome != "ok" or not later.complete < earlier.invoke, seed
    state = None
    for o in prefix:
        if o.f == "get":
            assert o.outcome != "ok" or o.output == state, seed
        elif o.f == "put":
            state = o.value
        elif o.f == "delete":
            assert o.outcome != "ok" or o.output == (state is not None), seed
            state = None
        else:
            swaps = state == o.expected
            assert o.outcome != "ok" or o.output == swaps, seed
            state = o.value if swaps else state
    assert state == result.state, seed


# --- a long history ----------------------------------------------------------


def test_a_history_of_20000_ops_on_50_keys():
    history = linearizable_history(seed=7, ops=20_000, keys=50, processes=10)
    assert len(history) == 20_000 and {o.outcome for o in history} == {"ok", "unknown", "fail"}
    result = check(history)
    assert (result.status, result.keys, result.keys_checked) == ("ok", 50, 50)

    stale, key = with_stale_read(history)
    result = check(stale)
    assert result.status == "violation" and result.key == key
    assert result.op.f == "get" and result.op.key == key


def test_simulated_histories_with_repeated_values_are_linearizable():
    for seed in range(3):
        history = linearizable_history(seed=seed, ops=3000, keys=3, processes=8, unknown=0.05, values=4)
        assert check(history).status == "ok", seed
