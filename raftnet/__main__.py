"""``python -m raftnet`` is the ``raftnet`` command."""

from .cli import main

main()
