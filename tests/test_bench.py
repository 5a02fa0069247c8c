"""``raftnet bench``: the recorder's arithmetic, the load generator's bounds,
and the command against real local clusters (its exit codes, its JSON
record, its errors). Nothing here asserts a speed."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import trio
from click.testing import CliRunner

from cluster_harness import raftnet, running_cluster
from raftnet.benchmark.cpu import own_cpu, process_cpu
from raftnet.benchmark.latency import Recorder, percentile
from raftnet.benchmark.load import Load, LoadSpec, key_of
from raftnet.cli import main


def test_percentiles_are_nearest_rank():
    ordered = [float(i) for i in range(1, 101)]
    assert [percentile(ordered, p) for p in (50, 90, 99, 99.9, 100)] == [50.0, 90.0, 99.0, 100.0, 100.0]
    assert percentile([7.0], 99.9) == 7.0
    assert math.isnan(percentile([], 50))


def test_the_recorder_counts_only_after_the_warmup_and_per_second():
    r = Recorder()
    r.done(0.5, 0.1)  # during the warmup: not counted
    r.failed(0.6, "timeout")
    r.start(1.0)
    r.done(1.2, 0.010)
    r.done(1.9, 0.030)
    r.failed(2.1, "timeout")
    r.done(2.5, 0.020)
    r.stop(2.5)
    s = r.summary()
    assert (s["ops"], s["errors"], s["seconds"]) == (3, {"timeout": 1}, 1.5)
    assert s["ops_per_s"] == pytest.approx(2.0)
    assert s["p50_ms"] == pytest.approx(20.0) and s["max_ms"] == pytest.approx(30.0)
    series = r.series()
    assert [(x["second"], x["ops"], x["errors"]) for x in series] == [(0, 2, 0), (1, 1, 1)]
    assert series[1]["ops_per_s"] == pytest.approx(2.0)  # one op in the half second the run had left


def test_keys_have_the_size_asked_for():
    assert key_of(42, 16) == "0000000000000042"
    assert key_of(123456, 3) == "456"


@pytest.mark.parametrize("fields, message", [
    ({"workload": "scan"}, "unknown workload"),
    ({"clients": 0}, "at least 1"),
    ({"read_ratio": 1.5}, "between 0 and 1"),
    ({"total": None, "duration": None}, "must end by itself"),
    ({"rate": -1.0}, "above 0"),
])
def test_a_load_spec_that_makes_no_sense_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        LoadSpec(**fields).check()


def test_cpu_of_processes_is_read_from_proc():
    assert own_cpu() > 0
    if sys.platform.startswith("linux"):
        assert process_cpu(os.getpid()) is not None
    assert process_cpu(2**22 + 12345) is None  # no such process


class NoClient:
    """Stands in for raftnet.client.Client: the operations below never use it."""

    def __init__(self, *a, **k):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


@pytest.fixture
def no_client(monkeypatch):
    monkeypatch.setattr("raftnet.benchmark.load.Client", NoClient)


async def test_a_total_ends_the_run_after_exactly_that_many_operations(monkeypatch, autojump_clock, no_client):
    calls: list = []
    load = Load(LoadSpec(clients=7, conns=2, total=50, duration=None, warmup=0.1, seed=1), ["n:1"])

    async def put(key):
        calls.append(key)
        await trio.sleep(0.01)

    monkeypatch.setattr(load, "_operation", lambda client: put)
    rec = await load.run()
    assert rec.summary()["ops"] == 50
    assert all(lat == pytest.approx(0.01) for lat in rec.latencies)
    assert len(calls) > 50  # the warmup's operations ran too, uncounted


async def test_an_open_loop_counts_latency_from_when_an_operation_was_due(monkeypatch, autojump_clock, no_client):
    # 100 ops/s offered, one client, each operation taking 20 ms: the client
    # falls behind, and the latency counted grows with the backlog.
    load = Load(LoadSpec(clients=1, total=20, duration=None, rate=100.0, seed=1), ["n:1"])

    async def slow(key):
        await trio.sleep(0.02)

    monkeypatch.setattr(load, "_operation", lambda client: slow)
    rec = await load.run()
    lat = list(rec.latencies)
    assert len(lat) == 20
    assert lat[0] == pytest.approx(0.02) and lat[-1] == pytest.approx(0.02 + 19 * 0.01)


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


def test_bench_against_a_local_cluster_writes_a_json_record(tmp_path):
    out = tmp_path / "runs.jsonl"
    r = raftnet("bench", "put", "--local", "3", "--clients", "8", "--conns", "2", "--total", "300",
                "--json", str(out), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ops      300 in" in r.stdout and "errors: none" in r.stdout
    assert "(leader)" in r.stdout and "entries per fsync" in r.stdout
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["result"]["ops"] == 300 and record["spec"]["workload"] == "put"
    assert record["target"]["local"] == {"nodes": 3, "fsync": "batch"}
    assert set(record["cpu"]["per_op_us"]["nodes"]) == {"1", "2", "3"}
    assert record["leader_wal"]["entries"] >= 300 and record["leader_wal"]["fsyncs"] > 0
    assert sum(s["ops"] for s in record["series"]) == 300


def test_bench_drives_a_running_cluster_and_reads(tmp_path):
    with running_cluster(tmp_path) as c:
        r = raftnet("bench", "get", "--cluster", c.cluster_arg, "--clients", "4", "--total", "200",
                    "--rate", "1000", "--json", "-", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        record = json.loads(r.stdout.strip().splitlines()[-1])
        assert record["result"]["ops"] == 200 and record["spec"]["rate"] == 1000.0
        r = raftnet("bench", "mixed", "--cluster", c.cluster_arg, "--stale", "--total", "100", "--leader-only")
        assert r.returncode == 0, r.stdout + r.stderr
        c.assert_alive()


@pytest.mark.parametrize("args", [
    ["put", "--local", "3", "--cluster", "127.0.0.1:1"],
    ["put", "--cluster", "127.0.0.1:1", "--keep", "x"],
    ["scan", "--local", "1"],
    ["put", "--local", "1", "--clients", "0"],
])
def test_bench_usage_errors_exit_64_with_one_line(args):
    r = raftnet("bench", *args)
    assert r.returncode == 64 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bench_without_a_leader_exits_2(tmp_path):
    # Nobody listens there: no leader ever serves.
    r = raftnet("bench", "put", "--cluster", "127.0.0.1:9", "--total", "1", "--wait-leader", "1")
    assert r.returncode == 2 and "no leader" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_plot_without_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    result = CliRunner().invoke(main, ["bench", "put", "--local", "1", "--plot", "x.png"])
    assert result.exit_code == 64
    assert "pip install 'raftnet[bench]'" in result.output
