"""The state machine interface: what raftnet replicates.

Implement these four methods to replicate your own state::

    class StateMachine(Protocol):
        def apply(self, index: int, command: bytes) -> Any: ...
        def read(self, query: Any) -> Any: ...
        def snapshot(self) -> bytes: ...
        def restore(self, data: bytes) -> None: ...

``apply`` runs on every replica, in log order, for every committed command.
It must be deterministic (same commands, same results, on every machine:
no clocks, no randomness, no iteration over unordered sets) and must not
raise on bad input: a committed command applies everywhere, so a malformed
one yields an error *result*. Its return value goes back to the client that
proposed the command (results must be CBOR-encodable).

``read`` answers a query from local state without going through the log; the
node calls it once a ReadIndex read is safe (linearizable) or at once for a
stale read. ``snapshot``/``restore`` capture and replace the whole state
(used by log compaction, which comes next).
"""

from __future__ import annotations

from typing import Any, Protocol


class StateMachine(Protocol):
    def apply(self, index: int, command: bytes) -> Any: ...

    def read(self, query: Any) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...
