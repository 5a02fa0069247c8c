"""The sequential specification of one key: the model the checker replays.

A key's state is its value (a string) or ABSENT. Every rule of the model is
here; the search in ``linearizability.py`` knows nothing about put or cas.

* put v        -> state = v
* get          -> returns the state
* delete       -> returns whether the key was present; state = ABSENT
* cas(e, v)    -> if state == e (None == ABSENT): state = v, returns True;
                  otherwise returns False and changes nothing
"""

from __future__ import annotations

import dataclasses

from .history import Op

ABSENT = None
UNREAD = object()  # stands for every value that does not matter (see abstract)


def step(state: str | None, op: Op) -> tuple[bool, str | None]:
    """Apply an ok ``op`` to ``state``: (whether its recorded output is what
    the model returns, the state after it)."""
    f = op.f
    if f == "put":
        return True, op.value
    if f == "get":
        return op.output == state, state
    if f == "delete":
        return op.output == (state is not ABSENT), ABSENT
    swaps = state == op.expected  # cas
    return op.output == swaps, op.value if swaps else state


def step_unknown(state: str | None, op: Op) -> tuple[bool, str | None]:
    """Apply an unknown-outcome ``op``, whose output nobody saw.

    Any output is accepted, so the op always applies; but applying it when
    it leaves the state unchanged only uses it up (leaving it pending keeps
    every option open), so that is reported as not applicable. A get never
    changes the state: the search drops unknown gets before it starts.
    """
    f = op.f
    if f == "put":
        return state != op.value, op.value
    if f == "delete":
        return state is not ABSENT, ABSENT
    if f == "cas":
        return state == op.expected and op.value != op.expected, op.value
    return False, state


def abstract(ops: list[Op]) -> list[Op]:
    """The same ops with every value that can never be compared with a
    value some ok op saw replaced by UNREAD.

    A value matters if an ok get returned it or an ok cas compared with it,
    or an unknown cas compares with it and writes a value that matters.
    States holding values that do not matter are interchangeable: every op
    behaves the same from either (the key is present, and equal to nothing
    that counts). Merging them lets the search see that two configurations
    are the same.
    """
    matters = {op.output for op in ops if op.outcome == "ok" and op.f == "get"}
    matters.update(op.expected for op in ops if op.outcome == "ok" and op.f == "cas")
    chained = [op for op in ops if op.outcome != "ok" and op.f == "cas"]
    grew = True
    while grew:
        grew = False
        for op in chained:
            if op.value in matters and op.expected not in matters:
                matters.add(op.expected)
                grew = True
    matters.discard(None)

    def abstracted(op: Op) -> Op:
        value = op.value if op.value is None or op.value in matters else UNREAD
        expected = op.expected if op.expected is None or op.expected in matters else UNREAD
        return op if (value, expected) == (op.value, op.expected) else dataclasses.replace(op, value=value, expected=expected)

    return [abstracted(op) for op in ops]


def effect(op: Op) -> tuple:
    """What an unknown op does, whoever issued it and whenever: two unknown
    ops with the same effect are interchangeable once both are called."""
    return op.f, op.value, op.expected


def never_writes(op: Op) -> bool:
    """Whether an ok ``op`` leaves the state unchanged wherever it fits:
    a get, a cas or delete that returned False, a cas of a value to itself."""
    return op.f == "get" or op.output is False or (op.f == "cas" and op.value == op.expected)


def changes_state(op: Op) -> bool:
    """Whether an unknown ``op`` can change the state at all."""
    return op.f != "get"


def is_blind_write(op: Op) -> bool:
    """Whether the state after ``op`` does not depend on the state before it
    (whenever it applies)."""
    return op.f in ("put", "delete")
