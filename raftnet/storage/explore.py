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

For each disk fault (a zeroed sector, or a flipped bit, in any file) the
storage must refuse with ``Corruption`` or recover the full log and the
newest term and vote. The one loss it cannot detect, reported as such: a
zeroed sector (or a bit flipped in the newest marker) that leaves exactly
the bytes a torn write of one of the newest batches would, which drops the
batches from that one on (see docs/storage.md).

Exit status 0 when nothing was wrong, 1 otherwise; every failure is printed
with the seed, the workload, the crash point and the operation there.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cbor2

from ..core.messages import Entry
from ..core.ready import HardState
from . import hardstate as hsmod, records as rec, replay
from .errors import Corruption
from .memfs import SECTOR, MemFS
from .replay import list_segments, scan
from .wal import Storage

DIR = "/data"
SEG = 64 << 10
CLUSTER, NODE = "explore", 1


# -- workloads ------------------------------------------------------------------------------


@dataclass
class Save:
    hard_state: HardState | None
    entries: list[Entry]


@dataclass
class Reopen:
    pass


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


WORKLOADS: dict[str, Callable[[random.Random], list]] = {
    "appends": appends, "truncations": truncations, "hard-states": hard_states, "restarts": restarts,
}


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


@dataclass
class Mark:
    """One save: the operations it spanned and the state it left."""
    start: int
    end: int
    log: tuple
    vote: tuple  # (term, vote)
    wrote: bool  # it had entries: one batch


@dataclass
class Recording:
    fs: MemFS
    base: dict[str, bytes]
    initial_log: tuple
    initial_vote: tuple
    marks: list[Mark] = field(default_factory=list)


def record(steps: list, seed: int, base: dict[str, bytes] | None = None) -> Recording:
    fs = MemFS(base)
    fs.makedirs(DIR)
    rng = random.Random(seed)
    st = _open(fs, rng)
    log = tuple(st.entries(1, st.last_index + 1))
    vote = (st.hard_state.term, st.hard_state.vote)
    r = Recording(fs, dict(base or {}), log, vote)
    for step in steps:
        if isinstance(step, Reopen):
            st.close()
            st = _open(fs, rng)
            assert tuple(st.entries(1, st.last_index + 1)) == log, "a clean restart changed the log"
            continue
        start = len(fs.ops)
        st.save(step.hard_state, step.entries)
        if step.entries:
            log = log[: step.entries[0].index - 1] + tuple(step.entries)
        if step.hard_state is not None:
            vote = (step.hard_state.term, step.hard_state.vote)
        r.marks.append(Mark(start, len(fs.ops), log, vote, bool(step.entries)))
    st.close()
    return r


def _open(fs: MemFS, rng: random.Random) -> Storage:
    return Storage.open(DIR, cluster=CLUSTER, node_id=NODE, segment_size=SEG, fs=fs, rng=rng)


def allowed(r: Recording, n: int) -> tuple[list[tuple], set[tuple]]:
    """For a crash after ``ops[:n]``: the logs, and the (term, vote) pairs,
    a recovery may return."""
    done = [m for m in r.marks if m.end <= n]
    log, vote = (done[-1].log, done[-1].vote) if done else (r.initial_log, r.initial_vote)
    logs, votes = [log], {vote}
    flight = next((m for m in r.marks if m.start < n < m.end), None)
    if flight is not None:
        logs.append(flight.log)
        votes.add(flight.vote)
    return logs, votes


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
    undetectable: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        for name in ("crash_points", "crash_states", "exhaustive_points", "faults", "refused", "refused_dead", "intact",
                     "undetectable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


def check_crash_state(r: Recording, n: int, state: dict[str, bytes], rng: random.Random,
                      nested: int = 8) -> str | None:
    """None if the state recovers correctly, else what went wrong. Recovery
    writes (it zeroes a torn tail, deletes leftovers): a crash in the middle
    of that is checked too, on up to ``nested`` states per operation."""
    want = allowed(r, n)
    fs = MemFS(state)
    try:
        st = _open(fs, rng)
    except Corruption as exc:
        return f"refused a crash state: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other failure is a bug
        return f"{type(exc).__name__} opening a crash state: {exc}"
    try:
        problem = _judge(st, *want)
        if problem is not None:
            return problem
        got, hs = tuple(st.entries(1, st.last_index + 1)), st.hard_state
        for k in range(1, len(fs.ops)):  # a second crash, during recovery's repairs
            for again in fs.crash_point(k).states(nested, rng):
                problem = _reopen_and_judge(again, want, rng)
                if problem is not None:
                    return f"crash during recovery (before: {fs.describe(k)}): {problem}"
        # Life goes on: a few more appends (one rolls a segment), a clean restart, all there.
        term = max(hs.term, got[-1].term if got else 0, 1)
        more = [_entry(len(got) + 1, term, 300), _entry(len(got) + 2, term, SEG // 2)]
        st.save(None, more[:1])
        st.save(None, more[1:])
        st.close()
        st = _open(fs, rng)
        if tuple(st.entries(1, st.last_index + 1)) != got + tuple(more):
            return "after recovering, appends did not survive a clean restart"
    except Corruption as exc:
        return f"a clean restart after recovering refused: {exc}"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__} after recovering: {exc}"
    finally:
        st.close()
    return None


def _judge(st: Storage, logs: list[tuple], votes: set[tuple]) -> str | None:
    got = tuple(st.entries(1, st.last_index + 1))
    hs = st.hard_state
    if got not in logs:
        return f"recovered log 1..{len(got)} is not one that was acknowledged ({_diff(got, logs[0])})"
    if (hs.term, hs.vote) not in votes:
        return f"recovered term/vote {(hs.term, hs.vote)} went back from {sorted(votes, key=str)}"
    return None


def _reopen_and_judge(state: dict[str, bytes], want: tuple, rng: random.Random) -> str | None:
    try:
        st = _open(MemFS(state), rng)
    except Corruption as exc:
        return f"refused: {exc}"
    try:
        return _judge(st, *want)
    finally:
        st.close()


def _diff(got: tuple, want: tuple) -> str:
    for k, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"first difference at index {k + 1}: {a.term}/{len(a.data)}B vs {b.term}/{len(b.data)}B"
    return f"length {len(got)} vs {len(want)}"


def explore_crashes(name: str, r: Recording, per_point: int, rng: random.Random, seed: int,
                    nested: int = 8) -> Report:
    rep = Report()
    for n in range(len(r.fs.ops) + 1):
        point = r.fs.crash_point(n)
        rep.crash_points += 1
        rep.exhaustive_points += point.count <= per_point
        for state in point.states(per_point, rng):
            rep.crash_states += 1
            problem = check_crash_state(r, n, state, rng, nested)
            if problem is not None:
                rep.failures.append(f"seed {seed} workload {name}: crash after op {n} "
                                    f"(before: {r.fs.describe(n)}): {problem}")
    return rep


def explore_faults(name: str, r: Recording, count: int, rng: random.Random, seed: int) -> Report:
    """Single disk faults on the final state: a zeroed sector or a flipped bit."""
    rep = Report()
    final = r.fs.files()
    clean = MemFS(final)
    want_log, want_vote = r.marks[-1].log, r.marks[-1].vote
    batches = _last_segment_batches(clean)
    entry_marks = [m for m in r.marks if m.wrote]  # one batch each
    live_ends = {s.path: s.end for s in scan(DIR, clean)[1] if not (s.empty or s.superseded)}
    targets = [(path, sector) for path, data in sorted(final.items()) for sector in range(-(-len(data) // SECTOR))]
    live = [t for t in targets if _nonzero(final[t[0]], t[1])]
    picks = []
    if count >= 2 * len(targets):
        picks = [(t, kind) for t in targets for kind in ("zero", "flip")]
    else:
        for _ in range(count):
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
        got = tuple(st.entries(1, st.last_index + 1))
        vote = (st.hard_state.term, st.hard_state.vote)
        st.close()
        if got == want_log and vote == want_vote:
            rep.intact += 1
        elif vote == want_vote and _looks_torn(got, path, lo, hi, kind, batches, entry_marks, r.initial_log):
            rep.undetectable += 1
        else:
            rep.failures.append(f"seed {seed} workload {name}: {what}: SILENT LOSS: recovered log 1..{len(got)} "
                                f"term/vote {vote}, expected 1..{len(want_log)} {want_vote}")
    return rep


def _last_segment_batches(fs: MemFS) -> tuple[str, list[tuple[int, int]]]:
    """The last segment and its batches' (start, end) offsets."""
    _, scans, _ = scan(DIR, fs)
    last = [s for s in scans if not (s.empty or s.superseded)][-1]
    view = memoryview(fs.read(last.path))
    _, offset = rec.read_record(view, 0)
    out = []
    while offset < last.end:
        _, end = replay._read_batch(view, offset, last.seed)
        out.append((offset, end))
        offset = end
    return last.path, out


def _looks_torn(got: tuple, path: str, lo: int, hi: int, kind: str, batches, entry_marks, initial) -> bool:
    """Did the fault drop exactly the batches a torn write of the first of
    them would: the fault overlaps that batch, and every later one lies
    wholly inside the zeroed sector (a flipped bit: only the newest batch)?"""
    seg, spans = batches
    if path != seg:
        return False
    for k in range(1, len(spans) + 1):
        first, rest = spans[-k], spans[-k + 1 :] if k > 1 else []
        before = entry_marks[-k - 1].log if len(entry_marks) > k else initial
        if got != before:
            continue
        overlaps = lo < first[1] and hi > first[0]
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
        print(f"{name:12} {len(r.fs.ops):4} ops  {rep.crash_points:4} crash points "
              f"({rep.exhaustive_points} exhaustive)  {rep.crash_states:6} crash states  "
              f"{rep.faults:5} faults: {rep.refused} refused ({rep.refused_dead} in the zeros after the log), "
              f"{rep.intact} recovered intact, "
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
          f"{rep.intact} recovered intact, {rep.undetectable} undetectable), "
          f"{len(rep.failures)} failures")
    for f in rep.failures[:50]:
        print("FAIL", f)
    if rep.failures:
        print(f"replay: python -m raftnet.storage.explore --seed {seed}")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
