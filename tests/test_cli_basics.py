"""The `raftnet` command's shared behaviour: help, version, usage errors exit 64."""

from __future__ import annotations

import subprocess
import sys


def raftnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftnet", *args], capture_output=True, text=True, timeout=60)


def test_help_and_version_exit_0():
    r = raftnet("--help")
    assert r.returncode == 0 and "Usage: " in r.stdout
    r = raftnet("--version")
    assert r.returncode == 0 and "0.1.0" in r.stdout


def test_unknown_command_is_a_usage_error():
    r = raftnet("frobnicate")
    assert r.returncode == 64
    assert "No such command" in r.stderr
