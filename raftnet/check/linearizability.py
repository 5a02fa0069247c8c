"""Is a history linearizable? The Wing–Gong/Lowe search, one key at a time.

The model is per key (``model.py``), so a history is linearizable exactly
when each key's sub-history is; keys are checked one after the other and
the first violation ends the check.

For one key the search walks a doubly linked list of call and return
events ordered by time, a call before a return at the same instant (equal
times are concurrent). The ops that may take effect next are the ones whose
call comes before the first return still in the list: the op of that
return cannot wait any longer. The search linearizes one of them (it must
be consistent with the model), lifts its two events out of the list and
goes on; when the first return is reached with nothing left to try, it
backtracks. Every configuration it enters — which ops are linearized and
the model state — is remembered, so none is explored twice (Lowe's
memoization, as in Porcupine).

Two rules prune without losing a linearization. An ok op that never
changes the state (a get, a cas or delete that returned False) and fits
now is placed now, and nothing else is tried in that configuration: if any
linearization exists, one places it here (moving it earlier breaks no
real-time order and changes no state). Such ops are tried before the
others. And values that can never be compared with one an ok op saw are
merged into one (``model.abstract``), so orders of writes that leave
equivalent states meet in the memo.

Unknown-outcome ops have no return event: they may take effect at any
point after their call, or never (which is the same as at the very end).
They live in a second list, are tried only after the ok ops, and never
have to be linearized. A configuration that is no better than another one
the search enters is pruned; so an unknown op

* is applied only where it changes the state (``model.step_unknown``);
* is not applied while an unknown op with the same effect called no later
  is pending: once both are called they are interchangeable;
* if it is a put or delete, is not applied right after another unknown
  op: applying it instead of that one reaches the same state with one more
  op still pending;

and a configuration is pruned if one with the same linearized ok ops and
state, and a subset of its unknown ops applied, was entered before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .history import Op, as_ops
from .model import ABSENT, abstract, changes_state, effect, is_blind_write, never_writes, step, step_unknown

INFINITY = float("inf")
_CLOCK_EVERY = 1024  # search steps between two looks at the clock


@dataclass(frozen=True)
class Result:
    """What ``check`` found.

    For a violation: ``key``, the longest linearizable ``prefix`` the search
    found (in the order it linearized them), the model ``state`` after it,
    the ok ``op`` that could not be placed after it, and the ops
    ``concurrent`` with that op. For "undecided": ``key`` is the key the
    time ran out on.
    """

    status: str  # "ok" | "violation" | "undecided"
    operations: int
    counts: Mapping[str, int]  # outcome -> how many
    keys: int
    keys_checked: int  # keys found linearizable before the check stopped (all, if "ok")
    seconds: float
    key: str | None = None
    prefix: tuple[Op, ...] = ()
    state: str | None = ABSENT
    op: Op | None = None
    concurrent: tuple[Op, ...] = ()

    def to_dict(self) -> dict:
        """The result as JSON-ready data; ops in the history format."""
        d = {"status": self.status, "operations": self.operations, "counts": dict(self.counts),
             "keys": self.keys, "keys_checked": self.keys_checked, "seconds": round(self.seconds, 6)}
        if self.status == "undecided":
            d["key"] = self.key
        if self.status == "violation":
            d.update(key=self.key, prefix=[op.to_dict() for op in self.prefix], state=self.state,
                     op=self.op.to_dict(), concurrent=[op.to_dict() for op in self.concurrent])
        return d


def check(ops: Iterable[Op | Mapping], timeout: float | None = None) -> Result:
    """Check a history (``Op``s, or dicts in the history format).

    ``timeout`` bounds the wall-clock seconds spent; when it runs out the
    status is "undecided". Raises HistoryError for a malformed dict.
    """
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    ops = as_ops(ops)
    counts = {"ok": 0, "unknown": 0, "fail": 0}
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        counts[op.outcome] += 1
        if op.outcome != "fail":
            by_key.setdefault(op.key, []).append(op)
    keys = len({op.key for op in ops})

    def result(status: str, checked: int, **found) -> Result:
        return Result(status, len(ops), counts, keys, checked, time.monotonic() - start, **found)

    for checked, (key, key_ops) in enumerate(by_key.items()):
        try:
            found = _check_key(key_ops, deadline)
        except _OutOfTime:
            return result("undecided", checked, key=key)
        if found is not None:
            prefix, state, stuck = found
            return result("violation", checked, key=key, prefix=prefix, state=state, op=stuck,
                          concurrent=_concurrent_with(stuck, key_ops))
    return result("ok", keys)


class _OutOfTime(Exception):
    pass


def _end(op: Op) -> float:
    return op.complete if op.outcome == "ok" else INFINITY


def _concurrent_with(op: Op, ops: list[Op]) -> tuple[Op, ...]:
    """The ops whose intervals overlap ``op``'s (unknown ones never end)."""
    start, end = op.invoke, _end(op)
    return tuple(sorted((o for o in ops if o is not op and o.invoke <= end and start <= _end(o)),
                        key=lambda o: o.invoke))


def _check_key(key_ops: list[Op], deadline: float | None) -> tuple[tuple[Op, ...], str | None, Op] | None:
    """None if one key's ops (no fail ones) are linearizable, else the
    deepest prefix reached, the state after it and the op stuck there.
    Raises _OutOfTime past ``deadline``."""
    if deadline is not None and time.monotonic() >= deadline:
        raise _OutOfTime
    ok = [op for op in key_ops if op.outcome == "ok"]
    unknown = sorted((op for op in key_ops if op.outcome == "unknown" and changes_state(op)),
                     key=lambda op: op.invoke)
    if not ok:
        return None
    return _Search(ok, unknown, deadline).run()


class _Search:
    """The search over one key's ok ops (which must all be linearized) and
    unknown ops (which may be). Iterative: the path is a linked stack of
    frames, so no history is too long for Python's recursion limit."""

    def __init__(self, ok: list[Op], unknown: list[Op], deadline: float | None):
        self.ok, self.unknown, self.deadline = ok, unknown, deadline
        moves = abstract(ok + unknown)  # what the search steps the model with
        self.ok_moves, self.unknown_moves = moves[:len(ok)], moves[len(ok):]
        # List A: the ok ops' events at positions 1..2m between the head 0
        # and the tail 2m+1. A call sorts before a return at the same time.
        events = sorted([(op.invoke, 0, i) for i, op in enumerate(ok)] + [(op.complete, 1, i) for i, op in enumerate(ok)])
        n = len(events)
        self.nxt = list(range(1, n + 2)) + [0]
        self.prv = [0] + list(range(n + 1))
        self.op_at = [-1] + [i for _, _, i in events] + [-1]
        self.is_call = [False] + [kind == 0 for _, kind, _ in events] + [False]
        self.time_at = [0.0] + [t for t, _, _ in events] + [INFINITY]
        self.call_pos = [0] * len(ok)
        self.ret_pos = [0] * len(ok)
        for pos, (_, kind, i) in enumerate(events, 1):
            (self.call_pos if kind == 0 else self.ret_pos)[i] = pos
        # List B: the unknown ops by invoke time, positions 1..k. Ops with the
        # same effect form a class, used in invoke order: the first still
        # pending stands for all (once called they are interchangeable), so
        # the applied ops of a class are always its first few.
        k = len(unknown)
        self.u_nxt = list(range(1, k + 2)) + [0]
        self.u_prv = [0] + list(range(k + 1))
        self.u_end = k + 1
        classes: dict[tuple, int] = {}
        self.u_class = [-1] + [classes.setdefault(effect(op), len(classes)) for op in self.unknown_moves]
        self.members: list[list[int]] = [[] for _ in classes]
        for pos in range(1, k + 1):
            self.members[self.u_class[pos]].append(pos)
        self.used = [0] * len(classes)  # per class: how many are applied
        # Configurations entered: (linearized ok ops, state) -> the minimal
        # sets of applied unknown ops seen with them (bitsets).
        self.seen: dict[tuple[int, object], list[int]] = {}

    def _enter(self, linearized: int, state: object, applied: int) -> bool:
        """Remember a configuration; False if it (or one that dominates it)
        was entered before."""
        key = (linearized, state)
        minimal = self.seen.get(key)
        if minimal is None:
            self.seen[key] = [applied]
            return True
        for m in minimal:
            if m & ~applied == 0:
                return False
        minimal[:] = [m for m in minimal if applied & ~m]
        minimal.append(applied)
        return True

    def _lift(self, i: int) -> None:
        nxt, prv = self.nxt, self.prv
        for pos in (self.call_pos[i], self.ret_pos[i]):
            nxt[prv[pos]] = nxt[pos]
            prv[nxt[pos]] = prv[pos]

    def _unlift(self, i: int) -> None:
        nxt, prv = self.nxt, self.prv
        for pos in (self.ret_pos[i], self.call_pos[i]):  # the reverse order of _lift
            nxt[prv[pos]] = pos
            prv[nxt[pos]] = pos

    def run(self) -> tuple[tuple[Op, ...], str | None, Op] | None:
        ok, unknown, deadline = self.ok_moves, self.unknown_moves, self.deadline
        nxt, op_at, is_call, time_at = self.nxt, self.op_at, self.is_call, self.time_at
        read_only = [never_writes(op) for op in ok]
        u_nxt, u_prv, u_end = self.u_nxt, self.u_prv, self.u_end
        u_class, members, used = self.u_class, self.members, self.used
        u_blind = [False] + [is_blind_write(op) for op in unknown]
        u_invoke = [0.0] + [op.invoke for op in unknown] + [INFINITY]
        enter = self._enter
        remaining = len(ok)
        linearized = applied = 0  # bitsets: ok op i is bit i, unknown op at position p is bit p - 1
        state = ABSENT
        # A frame is (unknown?, ok index or unknown position, state before,
        # ok: whether it was forced / unknown: the time bound it was tried under, parent).
        path = None
        best_depth, best = -1, None
        entry, u, bound = nxt[0], 0, 0.0
        mode = _TRY_READS
        steps = 0
        while True:
            steps += 1
            if deadline is not None and steps % _CLOCK_EVERY == 0 and time.monotonic() >= deadline:
                raise _OutOfTime
            if mode is _TRY_READS:
                # An ok op that never writes and fits now is placed now (the
                # rule above): nothing else is tried in this configuration.
                while is_call[entry]:
                    i = op_at[entry]
                    if read_only[i] and step(state, ok[i])[0]:
                        if enter(linearized | (1 << i), state, applied):
                            path = (False, i, state, True, path)
                            self._lift(i)
                            linearized |= 1 << i
                            remaining -= 1
                            if remaining == 0:
                                return None
                            entry = nxt[0]
                        else:
                            mode = _BACKTRACK
                        break
                    entry = nxt[entry]
                else:
                    entry, mode = nxt[0], _TRY_WRITES
                continue
            if mode is _TRY_WRITES:
                if is_call[entry]:
                    i = op_at[entry]
                    if not read_only[i]:
                        fits, after = step(state, ok[i])
                        if fits and enter(linearized | (1 << i), after, applied):
                            path = (False, i, state, False, path)
                            self._lift(i)
                            linearized |= 1 << i
                            state = after
                            remaining -= 1
                            if remaining == 0:
                                return None
                            entry, mode = nxt[0], _TRY_READS
                            continue
                    entry = nxt[entry]
                    continue
                # The first return: its op cannot wait, so only ops called before it may go now.
                depth = len(ok) - remaining
                if depth > best_depth:
                    best_depth, best = depth, (path, op_at[entry])
                bound, u = time_at[entry], u_nxt[0]
                mode = _TRY_UNKNOWN
            if mode is _TRY_UNKNOWN:
                after_unknown = path is not None and path[0]
                while u != u_end and u_invoke[u] <= bound:
                    c = u_class[u]
                    if members[c][used[c]] == u and not (after_unknown and u_blind[u]):
                        fits, after = step_unknown(state, unknown[u - 1])
                        if fits and enter(linearized, after, applied | (1 << (u - 1))):
                            path = (True, u, state, bound, path)
                            u_nxt[u_prv[u]] = u_nxt[u]
                            u_prv[u_nxt[u]] = u_prv[u]
                            applied |= 1 << (u - 1)
                            used[c] += 1
                            state = after
                            entry, mode = nxt[0], _TRY_READS
                            break
                    u = u_nxt[u]
                else:
                    mode = _BACKTRACK
                continue
            # _BACKTRACK: undo the last op and try what comes after it.
            if path is None:
                return self._report(*best)
            was_unknown, x, state, extra, path = path
            if was_unknown:
                u_nxt[u_prv[x]] = x
                u_prv[u_nxt[x]] = x
                applied &= ~(1 << (x - 1))
                used[u_class[x]] -= 1
                u, bound, mode = u_nxt[x], extra, _TRY_UNKNOWN
            else:
                self._unlift(x)
                linearized &= ~(1 << x)
                remaining += 1
                if not extra:  # a forced op's configuration fails with it: keep backtracking
                    entry, mode = nxt[self.call_pos[x]], _TRY_WRITES

    def _report(self, path, stuck: int) -> tuple[tuple[Op, ...], str | None, Op]:
        """The prefix a path linearized (the ops as given, not as abstracted),
        the state after it and the ok op stuck there."""
        prefix = []
        while path is not None:
            was_unknown, x, _, _, path = path
            prefix.append(self.unknown[x - 1] if was_unknown else self.ok[x])
        prefix.reverse()
        state = ABSENT
        for op in prefix:
            state = (step if op.outcome == "ok" else step_unknown)(state, op)[1]
        return tuple(prefix), state, self.ok[stuck]


_TRY_READS, _TRY_WRITES, _TRY_UNKNOWN, _BACKTRACK = "try reads", "try writes", "try unknown", "backtrack"
