"""`raftnet inspect`: summary, entries, JSON, --verify, exit codes, read-only,
damage reported instead of dying."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import cbor2
from click.testing import CliRunner

from raftnet.cli import main
from raftnet.core.messages import Entry
from raftnet.core.ready import HardState
from raftnet.storage import Storage, list_segments, records as rec, scan


def raftnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftnet", *args], capture_output=True, text=True, timeout=60)


def make_dir(path) -> str:
    st = Storage.open(str(path), cluster="insp", node_id=2, segment_size=64 * 1024)
    st.save(HardState(3, 2, 0), [])
    for i in range(1, 81):
        st.save(None, [Entry(i, 3, cbor2.dumps({"op": "put", "key": f"k{i}", "value": b"v" * 2000}))])
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


def flip(path: str, offset: int) -> None:
    raw = bytearray(open(path, "rb").read())
    raw[offset] ^= 0x01
    open(path, "wb").write(bytes(raw))


def test_damage_without_verify_dumps_up_to_it_and_exits_0(tmp_path):
    d = make_dir(tmp_path / "n2")
    _, scans, _ = scan(d)
    seg = scans[0]  # not the last segment: damage, not a torn tail
    flip(seg.path, seg.end - 10)  # inside its last batch
    r = raftnet("inspect", d, "--json", "--entries", "1..80")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    damage = out["damage"]
    assert damage["file"] == seg.path and damage["offset"] < seg.end and damage["index"] == seg.last_index
    assert damage["message"].startswith("corruption: ") and out["all_damage"] == [damage]
    assert out["verified"] is False and out["last_index"] == seg.last_index - 1
    assert [e["index"] for e in out["entry_list"]] == list(range(1, seg.last_index))
    assert (out["term"], out["commit"]) == (3, 80)

    r = raftnet("inspect", d, "--entries", "1..80")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert f"DAMAGE: {damage['message']}" in r.stdout.splitlines()
    assert f"index 1..{seg.last_index - 1}" in r.stdout and "term 3  vote 2  commit 80" in r.stdout
    listed = [int(line.split()[0]) for line in r.stdout.splitlines() if line[:8].strip().isdigit()]
    assert listed == list(range(1, seg.last_index))
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and damage["message"] in warning[0]


def test_meta_and_hard_state_damage_are_reported_with_the_log_still_shown(tmp_path):
    d = make_dir(tmp_path / "n2")
    hs = os.path.join(d, "hardstate")
    os.truncate(hs, 70)
    r = raftnet("inspect", d)
    assert r.returncode == 0, r.stderr
    assert "hard state unknown" in r.stdout and "index 1..80" in r.stdout
    assert any(line.startswith("DAMAGE: corruption: ") and "hard state file is truncated" in line
               for line in r.stdout.splitlines())
    os.unlink(hs)
    with open(os.path.join(d, "meta"), "wb") as f:
        f.write(b"\xff not cbor")
    out = json.loads(raftnet("inspect", d, "--json").stdout)
    assert (out["cluster"], out["node_id"], out["term"], out["last_index"]) == (None, None, None, 80)
    assert [x["reason"] for x in out["all_damage"]][0].startswith("unreadable metadata")
    assert out["all_damage"][1]["reason"] == "hard state file is missing"
    r = raftnet("inspect", d, "--verify")
    assert r.returncode == 4 and "unreadable metadata" in r.stderr.strip().splitlines()[-1]


def test_json_reports_every_outcome_as_one_object(tmp_path):
    def run(*args: str) -> tuple[int, dict]:
        r = raftnet("inspect", "--json", *args)
        lines = r.stdout.splitlines()
        assert len(lines) == 1, r.stdout
        return r.returncode, json.loads(lines[0])

    d = make_dir(tmp_path / "n2")
    code, out = run(d, "--verify")
    assert code == 0 and out["damage"] is None and out["all_damage"] == [] and out["running"] is False
    code, out = run(str(tmp_path))
    assert code == 64 and out["error"] == "not_a_data_directory" and "no meta file" in out["message"]
    code, out = run(d, "--entries", "9..3")
    assert code == 64 and out["error"] == "usage" and "9..3" in out["message"]
    _, seg = list_segments(d)[0]
    flip(seg, 5000)  # inside a record of the first segment, past entry 1
    code, out = run(d, "--verify")
    assert code == 4 and out["error"] == "corruption"
    assert out["file"] == seg and isinstance(out["offset"], int) and out["index"] > 1
    assert out["message"].startswith(f"corruption: {seg} offset {out['offset']} (index {out['index']})")
    code, out = run(d)
    # The log ends where the damaged batch starts; the damage is the bad record in it.
    assert code == 0 and 0 <= out["damage"]["offset"] - out["segments"][0]["used_bytes"] < 4096


def _mutations(d: str, rng: random.Random):
    """(description, function damaging a copy of ``d``) for the robustness test."""
    segs = [os.path.basename(p) for _, p in list_segments(d)]
    names = segs + ["meta", "hardstate"]

    def truncate(name, at):
        def f(c):
            os.truncate(os.path.join(c, name), at)
        return f"truncate {name} to {at}", f

    def overwrite(name, at, data):
        def f(c):
            with open(os.path.join(c, name), "r+b") as fh:
                fh.seek(at)
                fh.write(data)
        return f"write {len(data)} bytes at {at} of {name} ({data[:8].hex()}...)", f

    def replace(name, data):
        def f(c):
            with open(os.path.join(c, name), "wb") as fh:
                fh.write(data)
        return f"replace {name} with {len(data)} bytes", f

    def remove(name):
        return f"remove {name}", lambda c: os.unlink(os.path.join(c, name))

    out = [remove("hardstate"), replace(segs[0], b""), replace(segs[-1], b""),
           replace("wal-00000000000000000040.log", b""), replace(segs[0], rng.randbytes(4096)),
           replace(segs[-1], rng.randbytes(4096)), replace("meta", rng.randbytes(20)),
           replace("hardstate", rng.randbytes(128)), replace("meta", cbor2.dumps({"format": 1, "cluster": b"\xff"})),
           # Right checksums, wrong shapes.
           replace(segs[-1], rec.frame(cbor2.dumps([rec.SEGMENT, "x"])) + bytes(64)),
           replace(segs[-1], rec.segment_record(9, 0) + rec.frame(cbor2.dumps([rec.BATCH])) + bytes(64))]
    for _ in range(30):
        name = rng.choice(names)
        size = os.path.getsize(os.path.join(d, name))
        at = rng.randrange(size)
        kind = rng.randrange(3)
        if kind == 0:
            out.append(truncate(name, at))
        elif kind == 1:
            out.append(overwrite(name, at, rng.randbytes(rng.randint(1, 64))))
        else:
            out.append(overwrite(name, at, bytes(rng.randint(1, 600))))
    return out


def test_no_file_content_makes_inspect_fail_with_a_traceback(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    base = make_dir(tmp_path / "base")
    runner = CliRunner()
    for k, (what, damage) in enumerate(_mutations(base, rng)):
        d = str(tmp_path / f"case{k}")
        shutil.copytree(base, d)
        damage(d)
        where = f"seed={seed} case {k}: {what}"
        before = snapshot_files(d)
        text = runner.invoke(main, ["inspect", d, "--entries", "1..200"])
        as_json = runner.invoke(main, ["inspect", d, "--json", "--verify"])
        for r in (text, as_json):
            assert r.exception is None or isinstance(r.exception, SystemExit), f"{where}: {r.exc_info}"
            assert "Traceback" not in r.stderr, where
        assert text.exit_code == 0, f"{where}: {text.stderr}"
        out = json.loads(as_json.stdout)
        assert len(as_json.stdout.splitlines()) == 1, where
        if as_json.exit_code == 0:
            assert out["damage"] is None and "DAMAGE" not in text.stdout, where
        else:
            assert as_json.exit_code == 4 and out["error"] == "corruption", f"{where}: {out}"
            assert f"DAMAGE: {out['message']}" in text.stdout.splitlines(), where
        assert snapshot_files(d) == before, f"{where}: inspect modified the directory"
    # And through the real command line, for a few of them.
    for k in (0, 4, 9):
        r = raftnet("inspect", str(tmp_path / f"case{k}"))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


# -- snapshots -------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    """``raftnet(...)`` in this process (faster), with the same result shape."""
    r = CliRunner().invoke(main, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def add_snapshots(d: str) -> tuple[str, str]:
    from raftnet.storage.snapshot import SnapshotMeta, write_snapshot

    old = write_snapshot(d, SnapshotMeta(40, 3, (1, 2, 3)), [b"x" * 100] * 5)
    new = write_snapshot(d, SnapshotMeta(60, 3, (1, 2, 3), (4,)), [b"y" * 100] * 7)
    return old, new


def test_snapshots_are_listed_and_verified_with_verify(tmp_path):
    d = make_dir(tmp_path / "n2")
    out = json.loads(cli("inspect", d, "--json").stdout)
    assert (out["snapshot"], out["snapshots"], out["snapshot_leftovers"]) == (None, [], [])
    old, new = add_snapshots(d)
    partial = os.path.basename(new).replace("60", "70") + ".partial"
    open(os.path.join(d, partial), "wb").write(b"half")
    before = snapshot_files(d)
    r = raftnet("inspect", d)
    assert r.returncode == 0, r.stderr
    assert "snapshot   index 60  term 3  (newest of 2)" in r.stdout
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  snap-")}
    assert f"index 40  term 3  {os.path.getsize(old)} bytes  voters [1, 2, 3]  learners []" \
        in lines[os.path.basename(old)]
    assert "learners [4]" in lines[os.path.basename(new)] and "UNFINISHED" in lines[partial]
    out = json.loads(cli("inspect", d, "--json").stdout)
    assert [s["index"] for s in out["snapshots"]] == [40, 60] and out["snapshot"] == out["snapshots"][-1]
    assert out["snapshot"]["voters"] == [1, 2, 3] and out["snapshot"]["verified"] is None
    assert out["snapshot_leftovers"] == [partial]
    r = cli("inspect", d, "--json", "--verify")
    assert r.returncode == 0 and "2 of 2 snapshot(s) verify" in r.stderr
    out = json.loads(r.stdout)
    assert [(s["verified"], s["blobs"], s["blob_bytes"]) for s in out["snapshots"]] == [(True, 5, 500), (True, 7, 700)]
    assert snapshot_files(d) == before, "inspect modified the data directory"


def test_a_damaged_newest_snapshot_is_damage_and_an_older_one_is_only_marked(tmp_path):
    d = make_dir(tmp_path / "n2")
    old, new = add_snapshots(d)
    flip(old, os.path.getsize(old) - 30)
    r = cli("inspect", d, "--json", "--verify")
    assert r.returncode == 0, r.stdout
    out = json.loads(r.stdout)
    assert out["damage"] is None and out["snapshots"][0]["verified"] is False
    assert out["snapshots"][0]["damage"]["file"] == old and out["snapshots"][1]["verified"] is True
    r = cli("inspect", d, "--verify")
    assert r.returncode == 0 and "DAMAGED: " in r.stdout and "1 of 2 snapshot(s) verify" in r.stderr

    flip(new, os.path.getsize(new) - 30)  # in the last blob: only a full read sees it
    r = cli("inspect", d, "--verify")
    assert r.returncode == 4
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"corruption: {new} offset ") and "checksum mismatch" in line
    code, out = (lambda r: (r.returncode, json.loads(r.stdout)))(cli("inspect", d, "--json", "--verify"))
    assert code == 4 and out["error"] == "corruption" and out["file"] == new
    assert cli("inspect", d).returncode == 0  # without --verify only the headers are read

    flip(new, 20)  # in the header: seen without --verify too, reported like the log's damage
    r = cli("inspect", d)
    assert r.returncode == 0 and any(line.startswith(f"DAMAGE: corruption: {new}") for line in r.stdout.splitlines())
    assert r.stderr.startswith("warning: damaged data directory")


def test_snapshot_option_prints_and_verifies_one_file(tmp_path):
    d = make_dir(tmp_path / "n2")
    _, new = add_snapshots(d)
    before = snapshot_files(d)
    r = cli("inspect", "--snapshot", new)
    assert r.returncode == 0, r.stderr
    assert "index      60  term 3" in r.stdout and "voters [1, 2, 3]  learners [4]" in r.stdout
    assert f"blobs      7, 700 bytes (file {os.path.getsize(new)} bytes)" in r.stdout
    assert r.stderr.startswith("verified: ")
    out = json.loads(cli("inspect", "--snapshot", new, "--json").stdout)
    assert out == {"snapshot": new, "index": 60, "term": 3, "voters": [1, 2, 3], "learners": [4], "blobs": 7,
                   "blob_bytes": 700, "bytes": os.path.getsize(new), "verified": True}
    assert snapshot_files(d) == before

    flip(new, os.path.getsize(new) - 3)  # in the trailer
    r = raftnet("inspect", "--snapshot", new)
    assert r.returncode == 4 and r.stdout == ""
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"corruption: {new} offset ")
    r = cli("inspect", "--snapshot", new, "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 4 and out["error"] == "corruption" and out["file"] == new

    assert cli("inspect", d, "--snapshot", new).returncode == 64  # one or the other
    assert cli("inspect").returncode == 64
    assert cli("inspect", "--snapshot", new, "--entries", "1..2").returncode == 64
    assert cli("inspect", "--snapshot", str(tmp_path / "missing")).returncode == 64
    r = cli("inspect", "--snapshot", new, "--entries", "1..2", "--json")
    assert r.returncode == 64 and json.loads(r.stdout)["error"] == "usage"


def test_no_snapshot_content_makes_inspect_fail_with_a_traceback(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    d = make_dir(tmp_path / "n2")
    _, new = add_snapshots(d)
    good = open(new, "rb").read()
    runner = CliRunner()
    cases = [b"", rng.randbytes(7), rng.randbytes(3000), good[:12], good + b"\0"]
    for _ in range(40):
        data = bytearray(good)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)):]
        else:
            at = rng.randrange(len(data))
            data[at : at + 8] = rng.randbytes(8)
        cases.append(bytes(data))
    for k, data in enumerate(cases):
        open(new, "wb").write(data)
        where = f"seed={seed} case {k}"
        for args in (["--snapshot", new], ["--snapshot", new, "--json"], [d, "--verify", "--json"], [d]):
            r = runner.invoke(main, ["inspect", *args])
            assert r.exception is None or isinstance(r.exception, SystemExit), f"{where} {args}: {r.exc_info}"
            assert "Traceback" not in r.stderr, where
            expect = (0,) if args == [d] or data == good else (4,)
            assert r.exit_code in expect, f"{where} {args}: {r.exit_code} {r.stderr}"
