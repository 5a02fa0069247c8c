"""The history format: one JSON object per operation, one operation a line.

Other tools write this format (a public contract; docs/check.md)::

    {"process": 3, "f": "cas", "key": "k1", "value": "v7", "expected": "v6",
     "output": true, "outcome": "ok", "invoke": 12.001, "complete": 12.010}

Everything that decides whether a line is well formed lives in this file:
``parse_op`` either returns an ``Op`` or raises ``HistoryError`` naming the
line and what is wrong with it. Fields outside the contract are ignored,
so writers may add their own (a node id, an error text).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FUNCTIONS = ("put", "get", "delete", "cas")
OUTCOMES = ("ok", "fail", "unknown")


class HistoryError(ValueError):
    """A malformed history: ``line`` is the 1-based line (or position, for
    operations given as dicts) and ``reason`` says what is wrong with it."""

    def __init__(self, line: int, reason: str, where: str = "line"):
        super().__init__(f"{where} {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Op:
    """One operation of a history, as the format describes it.

    ``complete`` is None only when the outcome is not ``ok``; an unknown
    operation's ``complete`` is kept but never used (its effect may land
    later). ``line`` is where the operation came from, for messages.
    """

    process: int
    f: str  # one of FUNCTIONS
    key: str
    value: str | None  # what put writes, and what cas writes if it swaps
    expected: str | None  # cas only: the value it compares with (None: the key is absent)
    output: Any  # ok ops only: get -> str | None, delete and cas -> bool, put -> None
    outcome: str  # one of OUTCOMES
    invoke: float
    complete: float | None
    line: int = 0

    def to_dict(self) -> dict:
        """The operation in the history format (``line`` left out)."""
        d = {"process": self.process, "f": self.f, "key": self.key}
        if self.f in ("put", "cas"):
            d["value"] = self.value
        if self.f == "cas":
            d["expected"] = self.expected
        d.update(output=self.output, outcome=self.outcome, invoke=self.invoke, complete=self.complete)
        return d

    def describe(self) -> str:
        """One compact line: process, f, key, arguments, output, outcome, times."""
        args = ""
        if self.f == "put":
            args = " " + _show(self.value)
        elif self.f == "cas":
            args = f" {_show(self.expected)}->{_show(self.value)}"
        output = f" -> {_show(self.output)}" if self.outcome == "ok" and self.f != "put" else ""
        until = "?" if self.complete is None else _time(self.complete)
        return f"p{self.process} {self.f} {_key(self.key)}{args}{output}  {self.outcome}  {_time(self.invoke)}..{until}"


def load_history(source: str | os.PathLike | Iterable[str | bytes]) -> list[Op]:
    """Read a history: a path (str or path-like) or an iterable of lines.

    Blank lines are skipped; line numbers count them. Raises HistoryError
    for the first malformed line, OSError if the file cannot be read.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return _parse_lines(f)
    return _parse_lines(source)


def _parse_lines(lines: Iterable[str | bytes]) -> list[Op]:
    ops = []
    for number, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HistoryError(number, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(number, f"not JSON: {exc.msg} at column {exc.colno}") from None
        ops.append(parse_op(obj, number))
    return ops


def as_ops(ops: Iterable[Op | Mapping]) -> list[Op]:
    """Ops as given, with plain dicts (the history format) parsed; a bad
    dict raises HistoryError naming its 1-based position."""
    return [op if isinstance(op, Op) else parse_op(op, i, where="operation") for i, op in enumerate(ops, 1)]


def parse_op(obj: object, line: int, where: str = "line") -> Op:
    """One operation from its decoded JSON object, or HistoryError."""

    def bad(reason: str) -> HistoryError:
        return HistoryError(line, reason, where)

    if not isinstance(obj, Mapping):
        raise bad(f"expected a JSON object, got {_kind(obj)}")
    for name in ("process", "f", "key", "outcome", "invoke"):
        if name not in obj:
            raise bad(f'missing field "{name}"')
    process, f, key, outcome = obj["process"], obj["f"], obj["key"], obj["outcome"]
    if not _is_int(process):
        raise bad(f'"process" must be an integer, got {_kind(process)}')
    if f not in FUNCTIONS:
        raise bad(f'"f" must be one of {", ".join(FUNCTIONS)}, got {_shown(f)}')
    if not isinstance(key, str):
        raise bad(f'"key" must be a string, got {_kind(key)}')
    if outcome not in OUTCOMES:
        raise bad(f'"outcome" must be one of {", ".join(OUTCOMES)}, got {_shown(outcome)}')
    invoke, complete = obj["invoke"], obj.get("complete")
    if not _is_time(invoke):
        raise bad(f'"invoke" must be a finite number, got {_shown(invoke)}')
    if complete is not None:
        if not _is_time(complete):
            raise bad(f'"complete" must be a finite number or null, got {_shown(complete)}')
        if complete < invoke:
            raise bad(f'"complete" ({complete}) is before "invoke" ({invoke})')
    elif outcome == "ok":
        raise bad('an ok operation needs a "complete" time')

    value, expected = obj.get("value"), obj.get("expected")
    if f in ("put", "cas"):
        if not isinstance(value, str):
            raise bad(f'{f} needs a string "value", got {_kind(value)}')
    elif value is not None:
        raise bad(f'{f} takes no "value" (got {_kind(value)}); what it read belongs in "output"')
    if f == "cas":
        if "expected" not in obj:
            raise bad('cas needs "expected" (a string, or null for "the key is absent")')
        if expected is not None and not isinstance(expected, str):
            raise bad(f'"expected" must be a string or null, got {_kind(expected)}')
    elif expected is not None:
        raise bad(f'only cas takes "expected" ({f} has {_kind(expected)})')

    output = obj.get("output")
    if outcome == "ok":
        if f != "put" and "output" not in obj:
            raise bad(f'an ok {f} needs "output"')
        if f == "get" and output is not None and not isinstance(output, str):
            raise bad(f'an ok get\'s "output" is the value read (a string) or null, got {_kind(output)}')
        if f in ("delete", "cas") and not isinstance(output, bool):
            what = "whether the key existed" if f == "delete" else "whether it swapped"
            raise bad(f'an ok {f}\'s "output" is {what} (true or false), got {_kind(output)}')
        if f == "put" and output is not None:
            raise bad(f'an ok put\'s "output" must be null, got {_kind(output)}')
    return Op(process, f, key, value, expected, output, outcome, invoke, complete, line)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_time(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _kind(x: object) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, (int, float)):
        return f"the number {x}"
    if isinstance(x, str):
        return f"the string {_shown(x)}"
    return "an array" if isinstance(x, list) else "an object" if isinstance(x, Mapping) else type(x).__name__


def _shown(x: object) -> str:
    text = json.dumps(x) if isinstance(x, (str, int, float, bool, type(None))) else _kind(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _show(x: object) -> str:
    return json.dumps(x)


def _key(key: str) -> str:
    plain = key and all(c.isalnum() or c in "_-.:/" for c in key)
    return key if plain else json.dumps(key)


def _time(t: float) -> str:
    return json.dumps(t)
