"""The ``raftnet`` command: a click group; each subcommand lives in a sibling module.

Errors reach the user as one line on stderr and an exit code from
``exitcodes.py``, never as a traceback: usage errors exit 64, Ctrl-C exits
130, and an error nobody anticipated prints one line and the hint to rerun
with ``--debug`` (or ``RAFTNET_DEBUG=1``), which shows the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from . import exitcodes


class Group(click.Group):
    """Maps click's usage errors (exit 2 by default) to the shared code 64,
    and every other failure to one line."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        debug = _debug_requested(args[0] if args else kwargs.get("args"))
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            # One line, pointing at the help, instead of click's usage block.
            where = exc.ctx.command_path if exc.ctx is not None else "raftnet"
            hint = f" (see '{where} --help')" if exc.ctx is not None else ""
            click.echo(f"{where}: error: {_one_line(exc)}{hint}", err=True)
            sys.exit(exitcodes.USAGE)
        except click.ClickException as exc:
            click.echo(f"raftnet: error: {_one_line(exc)}", err=True)
            sys.exit(exitcodes.FAILURE)
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                click.echo("interrupted", err=True)
                sys.exit(exitcodes.INTERRUPTED)
            click.echo("aborted", err=True)
            sys.exit(exitcodes.FAILURE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(exitcodes.INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
            if debug:
                traceback.print_exc()
            else:
                click.echo(f"raftnet: internal error: {type(exc).__name__}: {_one_line(exc)} "
                           "(run with --debug for the traceback)", err=True)
            sys.exit(exitcodes.FAILURE)
        sys.exit(result if isinstance(result, int) else exitcodes.OK)


def _debug_requested(argv) -> bool:
    argv = sys.argv[1:] if argv is None else list(argv)
    return "--debug" in argv[:1] or os.environ.get("RAFTNET_DEBUG") == "1"


def _one_line(exc: BaseException) -> str:
    text = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
    text = text.strip()
    return text.splitlines()[0] if text else "(no message)"


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raftnet")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error (or set RAFTNET_DEBUG=1).")
def main(debug: bool) -> None:
    """raftnet: a Raft consensus system (replicated log and key-value store)."""


def _register() -> None:
    from .bench import bench
    from .check import check
    from .inspect import inspect
    from .kv import cas, delete, get, put, status
    from .local import local
    from .serve import serve
    from .snapshot import snapshot

    for command in (serve, local, put, get, delete, cas, status, inspect, check, snapshot, bench):
        main.add_command(command)


_register()
