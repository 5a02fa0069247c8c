"""Client requests a node holds while they wait on the log or on a ReadIndex.

A write waits for its entry to be applied. The entry is identified by
(index, term): if a different entry is applied at that index, leadership
changed and the write was lost; the client retries (with the same session
sequence number, so the retry cannot apply twice). A read waits for the core
to release its ReadState.

Every waiter is woken exactly once: with a result, or with an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("raftnet.node")


class RequestFailed(Exception):
    """The request will not complete here; ``code`` is the protocol's error
    name. ``maybe_applied``: the entry was in our log when we gave up on it,
    so another leader may still commit it (the client must treat the
    outcome as unknown); otherwise it certainly had no effect."""

    def __init__(self, code: str, message: str = "", leader: int | None = None, maybe_applied: bool = False):
        super().__init__(message or code)
        self.code = code
        self.leader = leader
        self.maybe_applied = maybe_applied


@dataclass(slots=True)
class Waiter:
    """One request's wait. Either a task ``await``s ``wait()``, or the
    request was started with a ``callback``, called (once, synchronously,
    from whoever resolves it: the ready loop) instead: a client connection
    answers that way without a task per request."""

    key: int = 0  # log index for a write, read context for a read
    is_read: bool = False
    term: int = 0
    query: Any = None
    callback: Callable[[Waiter], None] | None = None
    finished: bool = False
    result: Any = None
    error: RequestFailed | None = None
    _event: trio.Event | None = None

    def resolve(self, result: Any) -> None:
        if not self.finished:
            self.result = result
            self._finish()

    def fail(self, error: RequestFailed) -> None:
        if not self.finished:
            self.error = error
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        if self.callback is not None:
            try:
                self.callback(self)
            except Exception:  # noqa: BLE001 - one request's bug must not stop the ready loop
                log.exception("answering a request failed")
        if self._event is not None:
            self._event.set()

    async def wait(self) -> Any:
        if not self.finished:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        if self.error is not None:
            raise self.error
        return self.result


class Pending:
    def __init__(self) -> None:
        self._writes: dict[int, Waiter] = {}
        self._reads: dict[int, Waiter] = {}
        self._next_read = 0

    def __len__(self) -> int:
        return len(self._writes) + len(self._reads)

    def add_write(self, index: int, term: int, callback: Callable[[Waiter], None] | None = None) -> Waiter:
        w = Waiter(key=index, term=term, callback=callback)
        self._writes[index] = w
        return w

    def add_read(self, query: Any, callback: Callable[[Waiter], None] | None = None) -> tuple[int, Waiter]:
        self._next_read += 1
        w = Waiter(key=self._next_read, is_read=True, query=query, callback=callback)
        self._reads[self._next_read] = w
        return self._next_read, w

    def applied(self, index: int, term: int, result: Any) -> None:
        w = self._writes.pop(index, None)
        if w is None:
            return
        if w.term == term:
            w.resolve(result)
        else:
            w.fail(RequestFailed("not_leader", f"entry {index} was replaced after a leader change"))

    def read_ready(self, ctx: int) -> Waiter | None:
        return self._reads.pop(ctx, None)

    def read_dropped(self, ctx: int, leader: int | None) -> None:
        w = self._reads.pop(ctx, None)
        if w is not None:
            w.fail(RequestFailed("not_leader", "leadership lost before the read was confirmed", leader))

    def forget(self, waiter: Waiter) -> None:
        """A caller gave up (timeout): stop tracking it."""
        table = self._reads if waiter.is_read else self._writes
        if table.get(waiter.key) is waiter:
            del table[waiter.key]

    def fail_all(self, error: RequestFailed) -> None:
        for table in (self._writes, self._reads):
            for w in table.values():
                w.fail(error)
            table.clear()
