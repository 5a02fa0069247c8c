"""Group commit under trio: one writer task per log.

Callers ``await writer.append(entries, hard_state)``; the writer takes
everything queued so far, writes it as one batch with one fsync in a worker
thread (so the event loop, and the heartbeats it sends, never wait on the
disk), and wakes every caller in the batch. Callers arriving during an fsync
join the next batch. With ``fsync = "always"`` each append call gets its own
write and fsync (for comparison).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..core.messages import Entry
from ..core.ready import HardState
from .wal import Storage


class _Request:
    __slots__ = ("entries", "hard_state", "done", "error")

    def __init__(self, entries: Sequence[Entry], hard_state: HardState | None):
        self.entries = entries
        self.hard_state = hard_state
        self.done = trio.Event()
        self.error: BaseException | None = None


class LogWriter:
    def __init__(self, storage: Storage):
        self.storage = storage
        self._queue: list[_Request] = []
        self._wake = trio.Event()
        self._nursery_cm = None
        self.batches = 0

    async def __aenter__(self) -> LogWriter:
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        nursery.start_soon(self._run)
        self._cancel = nursery.cancel_scope
        return self

    async def __aexit__(self, *exc_info):
        # Let queued appends finish, then stop.
        while self._queue:
            await trio.sleep(0)
        self._cancel.cancel()
        return await self._nursery_cm.__aexit__(*exc_info)

    async def append(self, entries: Sequence[Entry], hard_state: HardState | None = None) -> None:
        """Returns once ``entries`` and ``hard_state`` are durable (per policy)."""
        req = _Request(entries, hard_state)
        self._queue.append(req)
        self._wake.set()
        await req.done.wait()
        if req.error is not None:
            raise req.error

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                if self.storage.fsync == "always":
                    batch, self._queue = self._queue[:1], self._queue[1:]
                else:
                    batch, self._queue = self._queue, []
                entries: list[Entry] = []
                hard_state = None
                for req in batch:
                    if entries and req.entries and req.entries[0].index != entries[-1].index + 1:
                        # A later request rewrites part of an earlier one's suffix.
                        first = req.entries[0].index
                        entries = [e for e in entries if e.index < first]
                    entries.extend(req.entries)
                    if req.hard_state is not None:
                        hard_state = req.hard_state
                try:
                    await trio.to_thread.run_sync(self.storage.save, hard_state, entries)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for req in batch:
                        req.error = exc
                self.batches += 1
                for req in batch:
                    req.done.set()
