"""The ``raftnet`` command: a click group; each subcommand lives in a sibling module."""

from __future__ import annotations

import sys

import click

from . import exitcodes


class Group(click.Group):
    """Maps click's usage errors (exit 2 by default) to the shared code 64."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            exc.show()
            sys.exit(exitcodes.USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exitcodes.FAILURE)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(exitcodes.FAILURE)
        sys.exit(result if isinstance(result, int) else exitcodes.OK)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raftnet")
def main() -> None:
    """raftnet: a Raft consensus system (replicated log and key-value store)."""


def _register() -> None:
    from .inspect import inspect
    from .kv import cas, delete, get, put, status
    from .local import local
    from .serve import serve

    for command in (serve, local, put, get, delete, cas, status, inspect):
        main.add_command(command)


_register()
