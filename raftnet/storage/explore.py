"""The WAL's crash-state explorer: run a workload on the recording file
system (memfs.py), then open the storage on every state a crash after every
operation may leave, and on states with a disk fault injected.

    python -m raftnet.storage.explore [--states-per-point N] [--faults N] [--seed S] [--workload NAME]

For each crash state the storage must open (a crash alone never justifies
a refusal), with exactly the log the last acknowledged save left or the one
the save in flight would leave (a batch is all or nothing, a truncation
too), and term and vote those of the last acknowledged save or of the one
in flight; so must every state a second crash leaves in the middle of
recovery's own repairs; and it must then take more appends and open again
with them.

With snapshots (the compaction and install workloads) the same holds of
every step. The snapshot recovered is the newest one written, or the one
being written, and holds exactly what was written; the log is the one
acknowledged, possibly still preceded by entries a compaction in flight was
deleting, and never one the snapshot contradicts (an install drops the old
log, and recovery must finish that); the hard state's commit index never
points past both the log and the snapshot.

For each disk fault (a zeroed sector, or a flipped bit, in any file) the
storage must refuse with ``Corruption`` or recover the full log and the
newest term and vote. The one loss it cannot detect, reported as such: a
zeroed sector (or a bit flipped in the newest marker) that leaves exactly
the bytes a torn write of one of the newest batches would, which drops the
batches from that one on (see docs/storage.md). A damaged snapshot must not
be used: recovery refuses, or falls back to an older snapshot that the
(intact) log still follows. Every sector of every snapshot file is damaged
first, both ways, whatever the sample size.

Exit status 0 when nothing was wrong, 1 otherwise; every failure is printed
with the seed, the workload, the crash point, the operation there and the
step in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import cbor2

from ..core.messages import Entry
from ..core.ready import HardState
from . import hardstate as hsmod, records as rec, replay, snapshot as snapmod
from .errors import Corruption
from .memfs import SECTOR, MemFS
from .replay import list_segments, scan
from .snapshot import SNAPSHOT_RE, PartialSnapshot, SnapshotMeta, read_snapshot, write_snapshot
from .wal import Storage

DIR = "/data"
SEG = 64 << 10
BIG = 20000  # three entries of this size fill a segment
CHUNK = 1000  # the size of the chunks a leader's snapshot arrives in
CLUSTER, NODE = "explore", 1
VOTERS = (1, 2, 3)


# -- workloads ------------------------------------------------------------------------------


@dataclass
class Save:
    hard_state: HardState | None
    entries: list[Entry]


@dataclass
class Reopen:
    pass


@dataclass
class Begin:
    """Crash points start here: the steps before it only build the starting directory."""


@dataclass
class Snapshot:
    """A snapshot this node wrote (``write_snapshot``), or one a leader sent
    in chunks (``PartialSnapshot``, ``received``)."""
    meta: SnapshotMeta
    blobs: list[bytes]
    received: bool = False


@dataclass
class Compact:
    index: int


@dataclass
class Reset:
    index: int  # the index of the snapshot just installed


def _entry(index: int, term: int, size: int) -> Entry:
    return Entry(index, term, (b"%d.%d:" % (index, term)).ljust(size, b"x"))


def appends(rng: random.Random) -> list:
    """Appends of many sizes across several segments, one batch bigger than
    a segment, term and vote changes and commit-only updates between."""
    steps: list = [Save(HardState(1, 1, 0), [])]
    last, commit = 0, 0
    sizes = [1, 40, 300, 511, 512, 513, 1500, 4000, 9000, 20000]
    for k in range(36):
        n = rng.choice([1, 1, 2, 5])
        size = 70000 if k == 20 else rng.choice(sizes)
        entries = [_entry(last + i, 1, size) for i in range(1, n + 1)]
        last += n
        hs = None
        if k % 4 == 3:
            commit = last - n
            hs = HardState(1, 1, commit)
        steps.append(Save(hs, entries))
    steps.append(Save(HardState(2, 2, commit), []))
    steps.append(Save(None, [_entry(last + 1, 2, 700)]))
    return steps


def truncations(rng: random.Random) -> list:
    """Conflicting suffixes overwritten: at a segment's exact first index
    (a middle one, the current one), inside an earlier segment, inside the
    current one, and at index 1. The points are picked from where the
    segments really start, on a scratch copy of the storage."""
    steps: list = []
    fs = MemFS()
    fs.makedirs(DIR)
    scratch = _open(fs, random.Random(0))

    def save(hs: HardState | None, entries: list[Entry]) -> None:
        steps.append(Save(hs, entries))
        scratch.save(hs, entries)

    def grow(n: int, term: int) -> None:
        for _ in range(n):
            save(None, [_entry(scratch.last_index + 1, term, rng.choice([200, 9000, 9000]))])

    save(HardState(1, 1, 0), [])
    grow(24, 1)
    for term, where in enumerate(["middle first", "current first", "earlier inside", "current inside", "one"], 2):
        firsts = [first for first, _ in list_segments(DIR, fs)]
        at = {"middle first": firsts[len(firsts) // 2], "current first": firsts[-1],
              "earlier inside": firsts[0] + 1, "current inside": firsts[-1] + (scratch.last_index > firsts[-1]),
              "one": 1}[where]
        save(HardState(term, 2, 0), [])  # a new leader's term, and this node's vote for it
        save(None, [_entry(at + i, term, rng.choice([200, 9000])) for i in range(3)])
        grow(rng.randint(6, 14), term)
    scratch.close()
    return steps


def hard_states(rng: random.Random) -> list:
    """Many term, vote and commit changes around a few appends."""
    steps: list = []
    term, vote, commit, last = 0, None, 0, 0
    for _ in range(30):
        if rng.random() < 0.4:
            term, vote = term + 1, rng.choice([None, 1, 2, 3])
            steps.append(Save(HardState(term, vote, commit), []))
        if rng.random() < 0.5:
            last += 1
            steps.append(Save(None, [_entry(last, max(term, 1), 100)]))
        if commit < last:
            commit = rng.randint(commit + 1, last)
            steps.append(Save(HardState(term, vote, commit), []))
    return steps


def restarts(rng: random.Random) -> list:
    """Appends, restarts (recovery's own writes are crash points too), more appends."""
    steps: list = [Save(HardState(1, 1, 0), [])]
    last = 0
    for _ in range(3):
        for _ in range(6):
            last += 1
            steps.append(Save(None, [_entry(last, 1, rng.choice([100, 6000, 30000]))]))
        steps.append(Reopen())
    return steps


def _log_of(n: int) -> list:
    """A log 1..n of term 1, one entry per save, three to a segment."""
    return [Save(HardState(1, 1, 0), [])] + [Save(None, [_entry(i, 1, BIG)]) for i in range(1, n + 1)]


def _state(index: int, rng: random.Random) -> list[bytes]:
    return [(b"state@%d/%d:" % (index, k)).ljust(rng.choice([40, 700, 1500]), b"s") for k in range(3)]


def compaction(rng: random.Random) -> list:
    """A log of four segments; a snapshot at 7 and compaction (two segments
    deleted at once); appends that fill the segment and roll one, a new
    term; a snapshot at 12 and compaction (two more); one more append and a
    last snapshot, not compacted (what damage to it falls back from)."""
    steps = _log_of(10) + [Save(HardState(1, 1, 9), []), Begin()]
    steps += [Snapshot(SnapshotMeta(7, 1, VOTERS), _state(7, rng)), Compact(7),
              Save(None, [_entry(11, 1, BIG), _entry(12, 1, BIG)]), Save(HardState(2, 2, 12), []),
              Save(None, [_entry(13, 2, BIG)]),
              Snapshot(SnapshotMeta(12, 1, VOTERS), _state(12, rng)), Compact(12),
              Save(None, [_entry(14, 2, 300)]), Save(HardState(2, 2, 14), []),
              Snapshot(SnapshotMeta(14, 2, VOTERS), _state(14, rng))]
    return steps


def install(rng: random.Random) -> list:
    """A follower whose log ends at 11 (compacted once, to a snapshot at 3:
    three segments left) receives a leader's snapshot at 20 in chunks and
    installs it: the log is reset, a new term with commit 20 saved, and
    entries from 21 appended, the last batch rolling a segment."""
    steps = _log_of(11) + [Save(HardState(1, 1, 3), []), Snapshot(SnapshotMeta(3, 1, VOTERS), _state(3, rng)),
                           Compact(3), Begin()]
    steps += [Snapshot(SnapshotMeta(20, 2, VOTERS), _state(20, rng), received=True), Reset(20),
              Save(HardState(2, None, 20), []), Save(None, [_entry(21, 2, 6000)]),
              Save(None, [_entry(22, 2, BIG), _entry(23, 2, BIG)]), Save(None, [_entry(24, 2, BIG)]),
              Save(HardState(2, None, 23), [])]
    return steps


def install_conflict(rng: random.Random) -> list:
    """A follower's log 1..8 (term 1, three segments) conflicts with a
    leader's snapshot at 6 of term 2 (the last entry of the middle segment):
    written, the log reset, commit 6, entries from 7 appended (the new
    segment takes the name of an old one)."""
    steps = _log_of(8) + [Save(HardState(1, 1, 3), []), Begin()]
    steps += [Snapshot(SnapshotMeta(6, 2, VOTERS), _state(6, rng)), Reset(6), Save(HardState(2, 3, 6), []),
              Save(None, [_entry(7, 2, 300), _entry(8, 2, 300)]), Save(None, [_entry(9, 2, BIG)]),
              Save(HardState(2, 3, 9), [])]
    return steps


def compaction_roll(rng: random.Random) -> list:
    """A log 1..5 (two segments); a snapshot at 5 covers all of the segment
    being written, so the next append rolls a new one; a snapshot at 6 and
    a compaction then delete the rolled-away segment whole."""
    steps = _log_of(5) + [Save(HardState(1, 1, 5), []), Begin()]
    steps += [Snapshot(SnapshotMeta(5, 1, VOTERS), _state(5, rng)), Compact(5),
              Save(None, [_entry(6, 1, 300)]), Save(HardState(1, 1, 6), []),
              Snapshot(SnapshotMeta(6, 1, VOTERS), _state(6, rng)), Compact(6),
              Save(None, [_entry(7, 1, BIG)]), Save(HardState(1, 1, 7), [])]
    return steps


WORKLOADS: dict[str, Callable[[random.Random], list]] = {
    "appends": appends, "truncations": truncations, "hard-states": hard_states, "restarts": restarts,
    "compaction": compaction, "compaction-roll": compaction_roll, "install": install,
    "install-conflict": install_conflict,
}
SNAPSHOT_WORKLOADS = ("compaction", "compaction-roll", "install", "install-conflict")


def legacy_image() -> dict[str, bytes]:
    """A data directory in the first format (bare CBOR meta, a two-slot hard
    state, segment headers without a seed), to explore its upgrade."""
    hs = HardState(3, 2, 4)
    entries = [_entry(i, 3, 700) for i in range(1, 7)]
    body = rec.frame(cbor2.dumps([rec.SEGMENT, 1])) + _legacy_batch([rec.entry_record(e) for e in entries])
    return {
        f"{DIR}/meta": cbor2.dumps({"cluster": CLUSTER, "node_id": NODE, "format": 1}),
        f"{DIR}/hardstate": hsmod._encode(2, hs, hsmod.LEGACY_SLOT) + hsmod._encode(1, HardState(), hsmod.LEGACY_SLOT),
        f"{DIR}/wal-{1:020d}.log": body.ljust(SEG, b"\0"),
    }


def _legacy_batch(records: list[bytes]) -> bytes:
    body, marker = b"".join(records), rec.frame(cbor2.dumps([rec.MARKER]))
    header_len = 0
    while True:
        header = rec.frame(cbor2.dumps([rec.BATCH, len(body) + len(marker) + header_len]))
        if len(header) == header_len:
            return header + body + marker
        header_len = len(header)


# -- the model: what may be on disk after a crash at each point ----------------------------------


@dataclass(frozen=True)
class Expect:
    """A log a recovery may return: ``log`` whole, preceded by any suffix of
    ``kept`` (the entries a compaction in flight deleted: a crash may keep
    their segments), with ``snap`` as the newest snapshot."""
    log: tuple
    kept: tuple = ()
    snap: SnapshotMeta | None = None


@dataclass
class Mark:
    """One step: the operations it spanned and the state it left."""
    start: int
    end: int
    expect: Expect
    vote: tuple  # (term, vote)
    wrote: bool  # it had entries: one batch
    what: str


@dataclass
class Recording:
    fs: MemFS
    base: dict[str, bytes]
    initial: Expect
    initial_vote: tuple
    marks: list[Mark] = field(default_factory=list)
    blobs: dict[tuple[int, int], tuple] = field(default_factory=dict)  # what each snapshot holds


def record(steps: list, seed: int, base: dict[str, bytes] | None = None) -> Recording:
    fs = MemFS(base)
    fs.makedirs(DIR)
    rng = random.Random(seed)
    st = _open(fs, rng)
    r = Recording(fs, dict(base or {}), Expect(_log(st), (), _snap(st)), _vote(st))
    expect, vote = r.initial, r.initial_vote
    with _seeded_snapshots(random.Random(f"{seed}/snapshots")):
        for step in steps:
            if isinstance(step, (Reopen, Begin)):
                st.close()
                expect = Expect(expect.log, (), expect.snap)
                if isinstance(step, Begin):  # the directory as it is now is where the crash points start
                    fs = MemFS(fs.files())
                    r = Recording(fs, fs.files(), expect, vote, blobs=r.blobs)
                st = _open(fs, rng)
                assert (_log(st), _snap(st)) == (expect.log, expect.snap), "a clean restart changed the log"
                continue
            start = len(fs.ops)
            expect, vote, what = _step(st, step, expect, vote, r)
            r.marks.append(Mark(start, len(fs.ops), expect, vote, isinstance(step, Save) and bool(step.entries), what))
    st.close()
    return r


def _step(st: Storage, step, expect: Expect, vote: tuple, r: Recording) -> tuple[Expect, tuple, str]:
    """Run one step on the storage; the state it leaves, by the model."""
    if isinstance(step, Save):
        st.save(step.hard_state, step.entries)
        if step.entries:
            at = step.entries[0].index
            expect = Expect(tuple(e for e in expect.log if e.index < at) + tuple(step.entries), (), expect.snap)
        if step.hard_state is not None:
            vote = (step.hard_state.term, step.hard_state.vote)
        return expect, vote, "save"
    if isinstance(step, Snapshot):
        m = step.meta
        _put_snapshot(st.fs, step)
        r.blobs[(m.index, m.term)] = tuple(step.blobs)
        # A log that does not hold the snapshot's last entry is dropped by the install (§7), so by recovery too.
        holds = any(e.index == m.index and e.term == m.term for e in expect.log) or \
            bool(expect.log) and m.index < expect.log[0].index
        return Expect(expect.log if holds else (), (), m), vote, f"snapshot {m.index}/{m.term}"
    if isinstance(step, Compact):
        st.compact(step.index)
        assert st.first_index - 1 <= step.index, "compaction deleted entries the snapshot does not cover"
        gone = tuple(e for e in expect.log if e.index < st.first_index)
        return Expect(expect.log[len(gone) :], gone, expect.snap), vote, f"compact({step.index})"
    if isinstance(step, Reset):
        assert expect.snap is not None and expect.snap.index == step.index, "reset without its snapshot"
        st.reset(step.index)
        return Expect((), (), expect.snap), vote, f"reset({step.index})"
    raise TypeError(f"unknown step {step!r}")


def _put_snapshot(fs: MemFS, step: Snapshot) -> None:
    if not step.received:
        write_snapshot(DIR, step.meta, step.blobs, fs=fs)
        return
    leader = MemFS()
    leader.makedirs(DIR)
    data = leader.read(write_snapshot(DIR, step.meta, step.blobs, fs=leader))
    partial = PartialSnapshot(DIR, step.meta.index, step.meta.term, len(data), fs=fs)
    for at in range(0, len(data), CHUNK):
        partial.write(at, data[at : at + CHUNK])
    partial.finish()


@contextlib.contextmanager
def _seeded_snapshots(rng: random.Random):
    """``write_snapshot`` draws each file's checksum seed from ``secrets``;
    here from ``rng``, so that ``--seed`` replays a run byte for byte."""
    real = snapmod.secrets
    snapmod.secrets = types.SimpleNamespace(randbits=rng.getrandbits)
    try:
        yield
    finally:
        snapmod.secrets = real


def _open(fs: MemFS, rng: random.Random) -> Storage:
    return Storage.open(DIR, cluster=CLUSTER, node_id=NODE, segment_size=SEG, fs=fs, rng=rng)


def _log(st: Storage) -> tuple:
    return tuple(st.entries(st.first_index, st.last_index + 1))


def _snap(st: Storage) -> SnapshotMeta | None:
    return st.snapshot[0] if st.snapshot else None


def _vote(st: Storage) -> tuple:
    return st.hard_state.term, st.hard_state.vote


def allowed(r: Recording, n: int) -> tuple[list[Expect], set[tuple]]:
    """For a crash after ``ops[:n]``: the logs (with their snapshots), and
    the (term, vote) pairs, a recovery may return."""
    done = [m for m in r.marks if m.end <= n]
    expect, vote = (done[-1].expect, done[-1].vote) if done else (r.initial, r.initial_vote)
    expects, votes = [Expect(expect.log, (), expect.snap)], {vote}  # a finished compaction's deletions are durable
    flight = _in_flight(r, n)
    if flight is not None:
        expects.append(flight.expect)
        votes.add(flight.vote)
    return expects, votes


def _in_flight(r: Recording, n: int) -> Mark | None:
    return next((m for m in r.marks if m.start < n < m.end), None)


# -- checking --------------------------------------------------------------------------------------


@dataclass
class Report:
    crash_points: int = 0
    crash_states: int = 0
    exhaustive_points: int = 0
    faults: int = 0
    refused: int = 0
    refused_dead: int = 0  # of those, faults only in bytes no recovery needs (the zeros after a log's end)
    intact: int = 0
    fell_back: int = 0  # a damaged snapshot skipped for an older one the log still follows
    undetectable: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        for name in ("crash_points", "crash_states", "exhaustive_points", "faults", "refused", "refused_dead", "intact",
                     "fell_back", "undetectable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


def check_crash_state(r: Recording, n: int, state: dict[str, bytes], rng: random.Random,
                      nested: int = 8) -> str | None:
    """None if the state recovers correctly, else what went wrong. Recovery
    writes (it zeroes a torn tail, deletes leftovers, drops a log an install
    replaced): a crash in the middle of that is checked too, on up to
    ``nested`` states per operation."""
    want = allowed(r, n)
    fs = MemFS(state)
    try:
        st = _open(fs, rng)
    except Corruption as exc:
        return f"refused a crash state: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other failure is a bug
        return f"{type(exc).__name__} opening a crash state: {exc}"
    try:
        problem = _judge(st, want, r)
        if problem is not None:
            return problem
        got, hs, snap = _log(st), st.hard_state, _snap(st)
        for k in range(1, len(fs.ops)):  # a second crash, during recovery's repairs
            for again in fs.crash_point(k).states(nested, rng):
                problem = _reopen_and_judge(again, want, r, rng)
                if problem is not None:
                    return f"crash during recovery (before: {fs.describe(k)}): {problem}"
        # Life goes on: a few more appends (one rolls a segment), a clean restart, all there.
        term = max(hs.term, got[-1].term if got else 0, snap.term if snap else 0, 1)
        more = (_entry(st.last_index + 1, term, 300), _entry(st.last_index + 2, term, SEG // 2))
        st.save(None, more[:1])
        st.save(None, more[1:])
        st.close()
        st = _open(fs, rng)
        if _log(st) != got + more or _snap(st) != snap:
            return "after recovering, appends did not survive a clean restart"
    except Corruption as exc:
        return f"a clean restart after recovering refused: {exc}"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__} after recovering: {exc}"
    finally:
        st.close()
    return None


def _judge(st: Storage, want: tuple[list[Expect], set[tuple]], r: Recording) -> str | None:
    expects, votes = want
    got, snap, hs = _log(st), _snap(st), st.hard_state
    if snap is not None:
        for e in got:
            if e.index == snap.index and e.term != snap.term or e.index > snap.index and e.term < snap.term:
                return (f"kept a log the snapshot contradicts: entry {e.index} of term {e.term} "
                        f"with the snapshot at {snap.index} of term {snap.term}")
    if not any(_fits(st, got, snap, e) for e in expects):
        return (f"recovered {_show(got, snap)} is not one that was acknowledged "
                f"(expected {' or '.join(_show(e.log, e.snap) for e in expects)}{_diff(got, expects[0])})")
    if (hs.term, hs.vote) not in votes:
        return f"recovered term/vote {(hs.term, hs.vote)} went back from {sorted(votes, key=str)}"
    if hs.commit > max(st.last_index, snap.index if snap else 0):
        return f"commit {hs.commit} points past the log ({_show(got, snap)})"
    return _snapshot_problem(st, r)


def _fits(st: Storage, got: tuple, snap: SnapshotMeta | None, e: Expect) -> bool:
    full = e.kept + e.log
    last = e.log[-1].index if e.log else e.snap.index if e.snap else 0
    return snap == e.snap and st.last_index == last and len(e.log) <= len(got) <= len(full) and \
        got == full[len(full) - len(got) :]


def _snapshot_problem(st: Storage, r: Recording) -> str | None:
    """Does the snapshot recovery chose read back whole, with what was written?"""
    if st.snapshot is None:
        return None
    meta, path = st.snapshot
    try:
        header, blobs = read_snapshot(path, fs=st.fs)
        blobs = tuple(blobs)
    except Corruption as exc:
        return f"recovered a damaged snapshot: {exc}"
    if header != meta or blobs != r.blobs.get((meta.index, meta.term)):
        return f"the snapshot at {meta.index} (term {meta.term}) does not hold what was written"
    return None


def _reopen_and_judge(state: dict[str, bytes], want: tuple, r: Recording, rng: random.Random) -> str | None:
    try:
        st = _open(MemFS(state), rng)
    except Corruption as exc:
        return f"refused: {exc}"
    try:
        return _judge(st, want, r)
    finally:
        st.close()


def _show(log: tuple, snap: SnapshotMeta | None) -> str:
    out = f"log {log[0].index}..{log[-1].index}" if log else "no log"
    return out + (f" after snapshot {snap.index}/{snap.term}" if snap else "")


def _diff(got: tuple, want: Expect) -> str:
    at = {e.index: e for e in want.kept + want.log}
    for e in got:
        w = at.get(e.index)
        if w != e:
            return f"; first difference at index {e.index}: {e.term}/{len(e.data)}B vs " + \
                (f"{w.term}/{len(w.data)}B" if w else "none")
    return ""


def explore_crashes(name: str, r: Recording, per_point: int, rng: random.Random, seed: int,
                    nested: int = 8) -> Report:
    rep = Report()
    for n in range(len(r.fs.ops) + 1):
        point = r.fs.crash_point(n)
        rep.crash_points += 1
        rep.exhaustive_points += point.count <= per_point
        flight = _in_flight(r, n)
        where = f"before: {r.fs.describe(n)}" + (f"; during {flight.what}" if flight else "")
        for state in point.states(per_point, rng):
            rep.crash_states += 1
            problem = check_crash_state(r, n, state, rng, nested)
            if problem is not None:
                rep.failures.append(f"seed {seed} workload {name}: crash after op {n} ({where}): {problem}")
    return rep


def explore_faults(name: str, r: Recording, count: int, rng: random.Random, seed: int) -> Report:
    """Single disk faults on the final state: a zeroed sector or a flipped
    bit; every sector of every snapshot file first, both ways."""
    rep = Report()
    final = r.fs.files()
    clean = MemFS(final)
    want, want_vote = r.marks[-1].expect, r.marks[-1].vote
    batches = _last_segment_batches(clean)
    befores = [prev.log for prev, m in zip([r.initial] + [m.expect for m in r.marks], r.marks) if m.wrote]
    live_ends = {s.path: s.end for s in scan(DIR, clean)[1] if not (s.empty or s.superseded)}
    targets = [(path, sector) for path, data in sorted(final.items()) for sector in range(-(-len(data) // SECTOR))]
    live = [t for t in targets if _nonzero(final[t[0]], t[1])]
    if count >= 2 * len(targets):
        picks = [(t, kind) for t in targets for kind in ("zero", "flip")]
    else:
        snaps = [t for t in targets if SNAPSHOT_RE.match(os.path.basename(t[0]))]
        picks = [(t, kind) for t in snaps for kind in ("zero", "flip")][:count]
        for _ in range(count - len(picks)):
            t = rng.choice(live if rng.random() < 0.8 and live else targets)
            picks.append((t, rng.choice(["zero", "flip"])))
    for (path, sector), kind in picks:
        data = bytearray(final[path])
        lo, hi = sector * SECTOR, min((sector + 1) * SECTOR, len(data))
        if kind == "zero":
            data[lo:hi] = bytes(hi - lo)
            what = f"zeroed sector {sector} of {path}"
            first_change = next(k for k in range(lo, hi) if final[path][k]) if any(final[path][lo:hi]) else hi
        else:
            at = first_change = rng.randrange(lo, hi)
            data[at] ^= 1 << rng.randrange(8)
            what = f"flipped a bit at byte {at} of {path}"
        if bytes(data) == final[path]:
            continue
        rep.faults += 1
        state = dict(final)
        state[path] = bytes(data)
        try:
            st = _open(MemFS(state), rng)
        except Corruption:
            rep.refused += 1
            rep.refused_dead += path in live_ends and first_change >= live_ends[path]
            continue
        except Exception as exc:  # noqa: BLE001
            rep.failures.append(f"seed {seed} workload {name}: {what}: {type(exc).__name__}: {exc}")
            continue
        try:
            got, snap, vote, damaged = _log(st), _snap(st), _vote(st), _snapshot_problem(st, r)
        finally:
            st.close()
        first = want.log[0].index if want.log else 0
        if damaged is not None:
            rep.failures.append(f"seed {seed} workload {name}: {what}: SILENTLY ACCEPTED: {damaged}")
        elif vote == want_vote and snap == want.snap and _complete(got, snap, want.log):
            rep.intact += 1
        elif vote == want_vote and want.snap is not None and (snap is None or snap.index < want.snap.index) and \
                _complete(got, snap, want.log):
            rep.fell_back += 1
        elif vote == want_vote and snap == want.snap and _looks_torn(got, path, lo, hi, kind, batches, befores, first):
            rep.undetectable += 1
        else:
            rep.failures.append(f"seed {seed} workload {name}: {what}: SILENT LOSS: recovered {_show(got, snap)} "
                                f"term/vote {vote}, expected {_show(want.log, want.snap)} {want_vote}")
    return rep


def _complete(got: tuple, snap: SnapshotMeta | None, want: tuple) -> bool:
    """Is nothing lost: ``got`` a suffix of the log ``want`` with every entry
    the snapshot does not cover? (A fault that drops the newest batch loses
    nothing when a snapshot holds it.)"""
    need = sum(e.index > (snap.index if snap else 0) for e in want)
    return need <= len(got) <= len(want) and got == want[len(want) - len(got) :]


def _last_segment_batches(fs: MemFS) -> tuple[str, list[tuple[int, int]]]:
    """The last segment and its batches' (start, end) offsets."""
    _, scans, _ = scan(DIR, fs)
    live = [s for s in scans if not (s.empty or s.superseded)]
    if not live:
        return "", []
    last = live[-1]
    view = memoryview(fs.read(last.path))
    _, offset = rec.read_record(view, 0)
    out = []
    while offset < last.end:
        _, end = replay._read_batch(view, offset, last.seed)
        out.append((offset, end))
        offset = end
    return last.path, out


def _looks_torn(got: tuple, path: str, lo: int, hi: int, kind: str, batches, befores: list[tuple], first: int) -> bool:
    """Did the fault drop exactly the batches a torn write of the first of
    them would: the fault overlaps that batch, and every later one lies
    wholly inside the zeroed sector (a flipped bit: only the newest batch)?
    ``befores``: the log before each batch written, from index ``first`` on
    (what compaction left)."""
    seg, spans = batches
    if path != seg:
        return False
    for k in range(1, min(len(spans), len(befores)) + 1):
        span, rest = spans[-k], spans[-k + 1 :] if k > 1 else []
        if got != tuple(e for e in befores[-k] if e.index >= first):
            continue
        overlaps = lo < span[1] and hi > span[0]
        swallowed = all(lo <= a and b <= hi for a, b in rest)
        return overlaps and swallowed and (kind == "zero" or k == 1)
    return False


def _nonzero(data: bytes, sector: int) -> bool:
    return any(data[sector * SECTOR : (sector + 1) * SECTOR])


def run(workloads: list[str], per_point: int, faults: int, seed: int, out=sys.stdout, nested: int = 8) -> Report:
    total = Report()
    for name in workloads:
        t0 = time.perf_counter()
        rng = random.Random(f"{seed}/{name}")
        if name == "upgrade":
            r = record([Save(None, [_entry(7, 3, 500)]), Save(HardState(3, 2, 6), [])], seed, base=legacy_image())
        else:
            r = record(WORKLOADS[name](rng), seed)
        rep = explore_crashes(name, r, per_point, rng, seed, nested)
        rep.add(explore_faults(name, r, faults, rng, seed))
        print(f"{name:16} {len(r.fs.ops):4} ops  {rep.crash_points:4} crash points "
              f"({rep.exhaustive_points} exhaustive)  {rep.crash_states:6} crash states  "
              f"{rep.faults:5} faults: {rep.refused} refused ({rep.refused_dead} in the zeros after the log), "
              f"{rep.intact} recovered intact, {rep.fell_back} fell back to an older snapshot, "
              f"{rep.undetectable} undetectable  {len(rep.failures)} failures  "
              f"{time.perf_counter() - t0:.1f}s", file=out)
        total.add(rep)
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raftnet.storage.explore", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", action="append", choices=[*WORKLOADS, "upgrade"],
                   help="run only this workload (repeatable; default: all)")
    p.add_argument("--states-per-point", type=int, default=4096,
                   help="crash states per crash point: all of them when there are at most this many, "
                        "else a sample of this size (default 4096)")
    p.add_argument("--faults", type=int, default=100000,
                   help="disk faults per workload; at least twice the number of sectors means every "
                        "sector of every file zeroed and bit-flipped once (default 100000)")
    p.add_argument("--nested", type=int, default=8,
                   help="crash states checked per operation of recovery's own repairs, for a second crash "
                        "during recovery (default 8; 0 skips)")
    p.add_argument("--seed", type=int, default=None, help="replay a run (default: random, printed)")
    args = p.parse_args(argv)
    logging.getLogger("raftnet.storage").setLevel(logging.CRITICAL)  # recovery's warnings, thousands of times
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"crash-state explorer: seed {seed}")
    rep = run(args.workload or [*WORKLOADS, "upgrade"], args.states_per_point, args.faults, seed,
              nested=args.nested)
    print(f"total: {rep.crash_points} crash points, {rep.crash_states} crash states, {rep.faults} faults "
          f"({rep.refused} refused, {rep.refused_dead} of them for damage only in the zeros after the log; "
          f"{rep.intact} recovered intact, {rep.fell_back} fell back to an older snapshot, "
          f"{rep.undetectable} undetectable), {len(rep.failures)} failures")
    for f in rep.failures[:50]:
        print("FAIL", f)
    if rep.failures:
        print(f"replay: python -m raftnet.storage.explore --seed {seed}")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
