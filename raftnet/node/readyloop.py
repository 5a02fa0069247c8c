"""How a node carries out one ``Ready``: the order both the running node and
the simulator follow.

``carry_out`` is a generator so that one piece of code serves both worlds.
It does everything that needs no disk at once, and ``yield``s a ``Persist``
when the Ready needs a write; the caller makes that write durable however it
does it (``await store.save`` in the trio node, a timed event in the
simulator) and resumes the generator. While the write is in flight the
caller keeps stepping messages and ticks into the core, as the real node
does: the core holds everything that accumulates for the next Ready.

The order is the contract of ``raftnet/core/ready.py``: eager messages,
the write, messages that needed it, committed entries, served and dropped
reads, ``advance``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from ..core import Raft
from ..core.messages import Entry, InstallSnapshot, Message
from ..core.ready import HardState, Ready, ReadState


@dataclass(frozen=True, slots=True)
class Persist:
    """The write a Ready needs: resume the generator once it is durable.
    With a ``snapshot`` (a follower installing its leader's), "durable"
    includes the snapshot replacing the log and the state machine restored
    from it, all before the entries."""

    hard_state: HardState | None
    entries: list[Entry]
    snapshot: InstallSnapshot | None = None


class Effects(Protocol):
    """What carrying out a Ready does outside the core."""

    def send(self, m: Message) -> None: ...

    def apply(self, e: Entry) -> None: ...

    def serve_read(self, rs: ReadState) -> None: ...

    def read_dropped(self, ctx: Any) -> None: ...


def carry_out(raft: Raft, rd: Ready, fx: Effects) -> Generator[Persist, None, None]:
    for m in rd.messages:
        fx.send(m)
    if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
        yield Persist(rd.hard_state, rd.entries, rd.snapshot)
    for m in rd.after_persist:
        fx.send(m)
    for e in rd.committed_entries:
        fx.apply(e)
    for rs in rd.read_states:
        fx.serve_read(rs)
    for ctx in rd.dropped_reads:
        fx.read_dropped(ctx)
    raft.advance(rd)
