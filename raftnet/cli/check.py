"""``raftnet check HISTORY.jsonl``: is a recorded history linearizable?

HISTORY is a JSON Lines history of key-value operations (the format is in
docs/check.md), ``-`` for stdin. On a violation it names the key, prints
the end of the longest linearizable prefix the search found, the op that
cannot be placed after it and the ops concurrent with that op. With
``--json`` every outcome, errors included, is one JSON object on stdout.

Exit codes (``exitcodes.py``): 0 linearizable; 1 a violation; 2 undecided
(``--timeout`` ran out); 64 the history cannot be read or is malformed
(the message names the line).
"""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from ..check import HistoryError, Op, Result, check as check_history, load_history
from . import exitcodes

SHOWN = 10  # ops of the prefix, and of those concurrent with the stuck op, printed (the last ones)
EXIT_CODES = {"ok": exitcodes.OK, "violation": exitcodes.FAILURE, "undecided": exitcodes.UNAVAILABLE}


@click.command("check")
@click.argument("history", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up after this long and exit 2 (undecided). Default: no limit.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (errors too).")
def check(history: str, timeout: float | None, as_json: bool) -> None:
    """Check that the operations in HISTORY are linearizable."""
    try:
        ops = load_history(sys.stdin.buffer if history == "-" else history)
    except OSError as exc:
        _unreadable(as_json, "unreadable", f"cannot read {history}: {exc.strerror or exc}")
    except HistoryError as exc:
        _unreadable(as_json, "malformed", f"{history} {exc}", line=exc.line)
    result = check_history(ops, timeout=timeout)
    if as_json:
        click.echo(json.dumps(result.to_dict(), separators=(",", ":")))
    elif result.status == "ok":
        click.echo(f"OK: {_scope(result)} are linearizable")
    elif result.status == "undecided":
        click.echo(f"UNDECIDED: gave up after {timeout:g}s on key {_quoted(result.key)} "
                   f"({result.keys_checked} of {result.keys} keys checked, no violation found)")
    else:
        _print_violation(result)
    sys.stdout.flush()
    raise SystemExit(EXIT_CODES[result.status])


def _print_violation(result: Result) -> None:
    prefix, concurrent = result.prefix, result.concurrent
    click.echo(f"VIOLATION: key {_quoted(result.key)} is not linearizable ({_scope(result)})")
    click.echo(f"longest linearizable prefix: {len(prefix)} ops" +
               (f", the last {SHOWN}:" if len(prefix) > SHOWN else ""))
    _print_ops(prefix, "earlier ops")
    state = "absent" if result.state is None else json.dumps(result.state)
    click.echo(f"  state after it: {state}")
    click.echo("cannot be placed next:")
    _print_ops([result.op])
    click.echo(f"concurrent with it: {len(concurrent) or 'none'}")
    _print_ops(concurrent, "called earlier (--json lists them all)")


def _print_ops(ops: list[Op] | tuple[Op, ...], cut: str = "") -> None:
    """The last SHOWN of ``ops``, one a line; ``cut`` names the ones left out."""
    if len(ops) > SHOWN:
        click.echo(f"  ... {len(ops) - SHOWN} {cut}")
    for op in ops[-SHOWN:]:
        click.echo(f"  {op.describe()}")


def _scope(result: Result) -> str:
    n, k = result.operations, result.keys
    return f"{n} operation{'s' * (n != 1)} on {k} key{'s' * (k != 1)}"


def _quoted(key: str | None) -> str:
    return json.dumps(key)


def _unreadable(as_json: bool, error: str, message: str, line: int | None = None) -> NoReturn:
    if as_json:
        obj = {"status": "error", "error": error, "message": message}
        if line is not None:
            obj["line"] = line
        click.echo(json.dumps(obj, separators=(",", ":")))
        sys.stdout.flush()
    else:
        click.echo(f"raftnet check: error: {message}", err=True)
    raise SystemExit(exitcodes.USAGE)
