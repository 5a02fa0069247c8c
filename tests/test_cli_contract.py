"""The CLI as a user meets it: every error one line with its documented exit
code, values as exact bytes, --json for scripts, and no traceback ever."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import trio
from click.testing import CliRunner

from raftnet.cli import main as cli_main
from raftnet.client import Client, ClientError

from cluster_harness import ROOT, Cluster, raftnet, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("cli"), nodes=3) as c:
        yield c


def run_bytes(*args: bytes | str, stdin: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI with arguments as raw bytes (what a shell passes) and binary output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTNET_")}
    full_env.update(env or {})
    argv = [os.fsencode(sys.executable), b"-m", b"raftnet", *(os.fsencode(a) for a in args)]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=60, env=full_env, cwd=ROOT)


def one_line_error(r, code: int) -> str:
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
    assert r.returncode == code, (r.returncode, r.stdout, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bad_keys_are_one_line_errors(cluster):
    c = cluster
    line = one_line_error(raftnet("put", "", "v", "--cluster", c.cluster_arg), 64)
    assert "key must not be empty" in line
    line = one_line_error(raftnet("put", "k" * 5000, "v", "--cluster", c.cluster_arg), 1)
    assert "key of 5000 bytes exceeds the limit of 4096 bytes" in line
    line = one_line_error(run_bytes("get", b"\xff\xfe", "--cluster", c.cluster_arg), 64)
    assert "UTF-8" in line


def test_a_value_that_is_not_utf8_round_trips_exactly(cluster):
    c = cluster
    value = b"\xff\xfe\x00 binary\n"
    r = run_bytes("put", "bin", value[:2] + b" tail", "--cluster", c.cluster_arg)
    assert r.returncode == 0, r.stderr
    r = run_bytes("get", "bin", "--cluster", c.cluster_arg)
    assert (r.returncode, r.stdout) == (0, b"\xff\xfe tail")
    # stdin (any bytes, NULs and newlines included) and --file
    assert run_bytes("put", "stdin", "-", "--cluster", c.cluster_arg, stdin=value).returncode == 0
    assert run_bytes("get", "stdin", "--cluster", c.cluster_arg).stdout == value
    path = c.dir / "value.bin"
    path.write_bytes(bytes(range(256)))
    assert run_bytes("put", "file", "--file", str(path), "--cluster", c.cluster_arg).returncode == 0
    out = c.dir / "out.bin"
    r = run_bytes("get", "file", "--output", str(out), "--cluster", c.cluster_arg)
    assert (r.returncode, r.stdout) == (0, b"") and out.read_bytes() == bytes(range(256))
    one_line_error(run_bytes("put", "k", "v", "--file", str(path), "--cluster", c.cluster_arg), 64)
    one_line_error(run_bytes("put", "k", "--cluster", c.cluster_arg), 64)


def test_json_output_for_scripts_including_errors(cluster):
    c = cluster
    j = lambda r: json.loads(r.stdout)  # noqa: E731
    r = raftnet("put", "js", "one", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 0 and j(r)["ok"] is True and j(r)["index"] >= 1 and j(r)["leader"] in c.ids
    r = raftnet("get", "js", "--json", "--cluster", c.cluster_arg)
    assert (r.returncode, j(r)["value"], j(r)["value_base64"]) == (0, "one", "b25l")
    r = raftnet("get", "missing", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 1 and j(r)["ok"] is False and j(r)["error"] == "not_found"
    r = raftnet("cas", "js", "nope", "two", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 1 and j(r)["error"] == "mismatch"
    r = raftnet("cas", "js", "one", "two", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 0 and j(r)["swapped"] is True
    r = raftnet("del", "js", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 0 and j(r)["existed"] is True
    r = raftnet("del", "js", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 1 and j(r)["existed"] is False
    r = raftnet("put", "k" * 5000, "v", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 1 and j(r) == {"ok": False, "error": "bad_request", "maybe_applied": False,
                                          "message": j(r)["message"]}
    r = raftnet("status", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 0 and j(r)["leader"] in c.ids


def test_an_explicit_cluster_or_config_wins_over_the_environment(cluster):
    c = cluster
    env = {"RAFTNET_CLUSTER": "127.0.0.1:1"}  # nothing listens there
    assert raftnet("put", "env", "1", "--config", str(c.config), env=env).returncode == 0
    assert raftnet("get", "env", "--cluster", c.cluster_arg, env=env).stdout == "1"
    assert raftnet("get", "env", env={"RAFTNET_CLUSTER": c.cluster_arg}).stdout == "1"
    one_line_error(raftnet("get", "env", "--config", str(c.config), "--cluster", c.cluster_arg), 64)


def test_a_20mb_put_is_refused_before_sending_and_no_node_dies(cluster):
    c = cluster

    async def big_put():
        async with Client(c.addresses, timeout=20.0) as client:
            with pytest.raises(ClientError) as info:
                await client.put("big", b"x" * (20 << 20))
            return info.value

    err = trio.run(big_put)
    assert err.code == "too_large" and err.maybe_applied is False
    assert "20971" in str(err) and str(16 << 20) in str(err), str(err)
    big = c.dir / "big.bin"
    big.write_bytes(b"y" * (20 << 20))
    line = one_line_error(raftnet("put", "big", "--file", str(big), "--cluster", c.cluster_arg), 1)
    assert "too_large" in line
    # Under the frame limit but over [limits] max_entry_bytes (1 MiB): the node refuses it.
    big.write_bytes(b"z" * (2 << 20))
    line = one_line_error(raftnet("put", "big", "--file", str(big), "--cluster", c.cluster_arg), 1)
    assert "too_large" in line and "max_entry_bytes" in line
    c.assert_serves()


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    """The command is interrupted while it waits on a node that never
    answers the handshake (we know it is waiting once we accept it)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(30)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        # As from a terminal: a test run started in the background inherits
        # SIGINT ignored, and a program that finds it ignored keeps it so.
        p = subprocess.Popen([sys.executable, "-m", "raftnet", "get", "k", "--cluster", address, "--timeout", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            conn, _ = listener.accept()
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=30)
            conn.close()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == 130, err
    assert err.strip() == "interrupted", err


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    async def boom(self, key, value):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(Client, "put", boom)
    monkeypatch.delenv("RAFTNET_DEBUG", raising=False)
    runner = CliRunner()
    r = runner.invoke(cli_main, ["put", "k", "v", "--cluster", "127.0.0.1:1"])
    assert r.exit_code == 1
    assert r.stderr.strip() == ("raftnet: internal error: RuntimeError: something nobody expected "
                                "(run with --debug for the traceback)")
    r = runner.invoke(cli_main, ["--debug", "put", "k", "v", "--cluster", "127.0.0.1:1"])
    assert r.exit_code == 1 and "Traceback" in r.stderr and "second line" in r.stderr


def test_no_quorum_status_exits_2_and_a_put_says_it_was_not_applied(tmp_path):
    c = Cluster(tmp_path, nodes=3)
    c.start(1)  # one of three: no quorum, no leader, ever
    try:
        c.wait_for(lambda st: st.get(1, {}).get("reachable"), "node 1 to answer")
        r = raftnet("status", "--cluster", c.cluster_arg)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "no leader known" in r.stderr
        st = json.loads(raftnet("status", "--json", "--cluster", c.cluster_arg).stdout)
        assert next(n for n in st["nodes"] if n["id"] == 1)["role"] == "pre-candidate"  # PreVote keeps it there
        line = one_line_error(raftnet("put", "k", "v", "--cluster", c.cluster_arg, "--timeout", "2"), 2)
        assert "no quorum: 1 of 3 nodes reachable, no leader" in line and "the write was not applied" in line
    finally:
        c.stop_all()


def test_a_crash_inside_serve_is_one_log_line_and_exit_1(tmp_path, monkeypatch):
    import raftnet.cli.serve as serve_module

    async def crash(*args):
        raise RuntimeError("a bug\nwith detail")

    monkeypatch.setattr(serve_module, "_run", crash)
    config = Cluster(tmp_path, nodes=1).config
    r = CliRunner().invoke(cli_main, ["serve", "--config", str(config), "--id", "1", "--log-level", "info"])
    assert r.exit_code == 1
    assert r.stderr.strip().endswith("node 1 crashed: RuntimeError: a bug"), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
