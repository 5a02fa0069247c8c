"""A deliberately broken raftnet, to prove the harness can fail.

``python -m raftnet.jepsen.broken serve ...`` runs ``raftnet serve`` with
one bug put in, named by ``RAFTNET_BROKEN``:

* ``stale-reads``: a linearizable get is answered from the local state
  machine by whichever node is asked, without ReadIndex and without being
  the leader (the mistake that gives stale reads under a partition).

Only the Jepsen harness and its tests start it; raftnet never imports it.
"""

from __future__ import annotations

import os
import sys

from ..cli import main
from ..node.node import Node
from ..node.pending import Waiter


async def _local_read(self: Node, query):
    return self.state_machine.read(query)


def _local_read_then(self: Node, query, callback=None) -> Waiter:
    waiter = Waiter(is_read=True, query=query, callback=callback)
    waiter.resolve(self.state_machine.read(query))
    return waiter


# bug -> the Node methods it replaces (client gets go through read_then, barriers through read)
BUGS = {"stale-reads": {"read": _local_read, "read_then": _local_read_then}}

if __name__ == "__main__":
    bug = os.environ.get("RAFTNET_BROKEN", "")
    if bug not in BUGS:
        sys.exit(f"RAFTNET_BROKEN must be one of {', '.join(BUGS)}, not {bug!r}")
    for name, replacement in BUGS[bug].items():
        setattr(Node, name, replacement)
    main()
