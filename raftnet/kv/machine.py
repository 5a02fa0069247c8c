"""The state machine interface: what raftnet replicates.

``apply(index, command)`` runs on every replica, in log order, for every
committed command. It must be deterministic (no clocks, no randomness, no
unordered iteration, nothing node-local such as config) and must not raise
on bad input: a malformed command yields an error *result*, the same
everywhere. Results go back to the proposing client, so they must be
CBOR-encodable.

``read(query)`` answers from local state, once a ReadIndex read is safe or
at once for a stale read.

``snapshot()`` is called on the event loop between two ``apply`` calls and
must return within a few milliseconds, however large the state. It returns
a point-in-time view: an iterable of opaque byte blobs (ideally at most
about 1 MiB each) describing the state as of the last applied entry. The
node iterates it in a worker thread while it goes on calling ``apply`` and
``read``, so iterating must not see later applies and must not hold the GIL
for long (encode a few thousand items per ``cbor2.dumps`` call). At most
one view is outstanding (the node sees to it; raise RuntimeError on a
second), and a view must be released when the consumer stops early (a
``close()`` or a dropped iterator) as well as when it is exhausted.

``restore(blobs)`` replaces the whole state with the one that ``blobs``,
as produced by ``snapshot()``, describe. It may run in a worker thread
while no ``apply`` runs; stale ``read`` calls may run meanwhile and must see
the old state or the new one, never a mix: build the new state aside and
swap it in at the end. If iterating ``blobs`` raises, or they are not a
snapshot of this machine (raise ValueError), the state stays as it was.

A machine with a small state can encode it all in ``snapshot()`` and return
one blob in a list (not a generator that encodes lazily: that would see
later applies); see docs/state-machine.md. ``KVStore`` shows the large case.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class StateMachine(Protocol):
    def apply(self, index: int, command: bytes) -> Any: ...

    def read(self, query: Any) -> Any: ...

    def snapshot(self) -> Iterable[bytes]: ...

    def restore(self, blobs: Iterable[bytes]) -> None: ...
