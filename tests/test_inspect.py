"""`raftnet inspect`: summary, entries, JSON, --verify, exit codes, read-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cbor2

from raftnet.core.messages import Entry
from raftnet.core.ready import HardState
from raftnet.storage import Storage, list_segments


def raftnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftnet", *args], capture_output=True, text=True, timeout=60)


def make_dir(path) -> str:
    st = Storage.open(str(path), cluster="insp", node_id=2, segment_size=4096)
    st.save(HardState(3, 2, 0), [])
    for i in range(1, 81):
        st.save(None, [Entry(i, 3, cbor2.dumps({"op": "put", "key": f"k{i}", "value": b"v"}))])
    st.save(HardState(3, 2, 80), [])
    st.close()
    return str(path)


def snapshot_files(d: str) -> dict:
    return {n: (os.stat(os.path.join(d, n)).st_mtime_ns, os.path.getsize(os.path.join(d, n))) for n in os.listdir(d)}


def test_summary_entries_and_json(tmp_path):
    d = make_dir(tmp_path / "n2")
    before = snapshot_files(d)
    r = raftnet("inspect", d, "--entries", "79..80")
    assert r.returncode == 0, r.stderr
    assert "cluster    insp  node 2" in r.stdout and "term 3  vote 2  commit 80" in r.stdout
    assert "index 1..80" in r.stdout and '"key": "k80"' in r.stdout
    r = raftnet("inspect", d, "--json", "--entries", "2..3", "--verify")
    assert r.returncode == 0
    out = json.loads(r.stdout)
    assert (out["node_id"], out["cluster"], out["term"], out["last_index"]) == (2, "insp", 3, 80)
    assert [e["index"] for e in out["entry_list"]] == [2, 3]
    assert out["entry_list"][0]["command"]["key"] == "k2"
    assert len(out["segments"]) >= 2
    assert snapshot_files(d) == before, "inspect modified the data directory"


def test_verify_names_the_corruption_and_exits_4(tmp_path):
    d = make_dir(tmp_path / "n2")
    _, seg = list_segments(d)[0]
    raw = bytearray(open(seg, "rb").read())
    raw[300] ^= 0x01
    open(seg, "wb").write(bytes(raw))
    r = raftnet("inspect", d, "--verify")
    assert r.returncode == 4
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("corruption: ") and os.path.basename(seg) in line and "offset" in line


def test_usage_errors_exit_64(tmp_path):
    assert raftnet("inspect", str(tmp_path)).returncode == 64  # not a data dir
    assert raftnet("inspect", str(tmp_path / "missing")).returncode == 64
    d = make_dir(tmp_path / "n2")
    assert raftnet("inspect", d, "--entries", "9..3").returncode == 64
    assert raftnet("inspect", d, "--bogus").returncode == 64
