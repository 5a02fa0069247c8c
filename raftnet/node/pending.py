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
    """Writes by log index; reads in batches. Reads that arrive between two
    turns of the ready loop are queued (``queue_read``) and then confirmed
    together by one ReadIndex (``take_read_batch``): one heartbeat round
    for the whole batch, not one per read (etcd batches the same way).
    Every read of a batch arrived before its ReadIndex began, so the round
    that confirms it started after each of them: still linearizable."""

    def __init__(self) -> None:
        self._writes: dict[int, Waiter] = {}
        self._queued_reads: list[Waiter] = []
        self._reads: dict[int, list[Waiter]] = {}  # ReadIndex context -> its batch
        self._next_read = 0

    def __len__(self) -> int:
        return len(self._writes) + len(self._queued_reads) + sum(len(b) for b in self._reads.values())

    def add_write(self, index: int, term: int, callback: Callable[[Waiter], None] | None = None) -> Waiter:
        w = Waiter(key=index, term=term, callback=callback)
        self._writes[index] = w
        return w

    def queue_read(self, query: Any, callback: Callable[[Waiter], None] | None = None) -> Waiter:
        w = Waiter(is_read=True, query=query, callback=callback)
        self._queued_reads.append(w)
        return w

    def take_read_batch(self) -> int | None:
        """The context of a new batch of every queued read, or None if none is queued."""
        if not self._queued_reads:
            return None
        self._next_read += 1
        batch, self._queued_reads = self._queued_reads, []
        for w in batch:
            w.key = self._next_read
        self._reads[self._next_read] = batch
        return self._next_read

    def applied(self, index: int, term: int, result: Any) -> None:
        w = self._writes.pop(index, None)
        if w is None:
            return
        if w.term == term:
            w.resolve(result)
        else:
            w.fail(RequestFailed("not_leader", f"entry {index} was replaced after a leader change"))

    def read_ready(self, ctx: int) -> list[Waiter]:
        return self._reads.pop(ctx, [])

    def read_dropped(self, ctx: int, leader: int | None) -> None:
        self.fail_reads(self._reads.pop(ctx, []), RequestFailed(
            "not_leader", "leadership lost before the read was confirmed", leader))

    @staticmethod
    def fail_reads(batch: list[Waiter], error: RequestFailed) -> None:
        for w in batch:
            w.fail(error)

    def forget(self, waiter: Waiter) -> None:
        """A caller gave up (timeout): stop tracking it."""
        if not waiter.is_read:
            if self._writes.get(waiter.key) is waiter:
                del self._writes[waiter.key]
            return
        batch = self._reads.get(waiter.key) if waiter.key else self._queued_reads
        if batch is not None and waiter in batch:
            batch.remove(waiter)

    def fail_all(self, error: RequestFailed) -> None:
        for w in self._writes.values():
            w.fail(error)
        self._writes.clear()
        for batch in [self._queued_reads, *self._reads.values()]:
            self.fail_reads(batch, error)
        self._queued_reads = []
        self._reads.clear()
