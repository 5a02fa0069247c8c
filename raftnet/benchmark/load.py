"""The load generator: logical clients driving a cluster through the trio
client library, as an application would.

``clients`` logical clients share ``conns`` ``Client`` objects (client i
uses number i mod conns, so each carries clients/conns of them; each
``Client`` holds one connection per node and one session). A closed-loop
client sends its next operation when the last one is answered. With
``rate``, the run is open-loop: operations are due at a fixed rate whether
or not earlier ones were answered, a free client takes the next one due,
and latency is measured from when it was due, not from when it was sent,
so a stalled cluster shows as latency rather than as fewer samples
(coordinated omission corrected).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..client import Client, ClientError
from .latency import Recorder

WORKLOADS = ("put", "get", "mixed", "cas")


@dataclass(frozen=True)
class LoadSpec:
    workload: str = "put"
    clients: int = 1
    conns: int = 1
    key_size: int = 16
    value_size: int = 100
    key_space: int = 100_000
    read_ratio: float = 0.5  # mixed: the share of gets
    stale: bool = False  # gets read any node's state, without ReadIndex
    total: int | None = None  # stop after this many operations (after the warmup) ...
    duration: float | None = 10.0  # ... or after this many seconds, whichever comes first
    warmup: float = 0.0
    rate: float | None = None  # open loop: operations per second
    timeout: float = 10.0  # per operation, retries included
    seed: int | None = None
    prefill: bool = False  # put every key of the key space once before the warmup

    def check(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}: choose from {', '.join(WORKLOADS)}")
        if self.clients < 1 or self.conns < 1:
            raise ValueError("--clients and --conns must be at least 1")
        if self.key_size < 1 or self.value_size < 0 or self.key_space < 1:
            raise ValueError("--key-size and --key-space must be at least 1, --value-size at least 0")
        if not 0.0 <= self.read_ratio <= 1.0:
            raise ValueError("--read-ratio must be between 0 and 1")
        if self.total is None and self.duration is None:
            raise ValueError("give --total or --duration: a run must end by itself")
        if (self.total is not None and self.total < 1) or (self.duration is not None and self.duration <= 0):
            raise ValueError("--total must be at least 1 and --duration above 0")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("--rate must be above 0")


def key_of(n: int, size: int) -> str:
    """Key number ``n``, ``size`` characters long (zero-padded, like etcd's
    benchmark; cut to size if the number is longer)."""
    return f"{n:0{size}d}"[-size:]


class Load:
    def __init__(self, spec: LoadSpec, addresses: list[str], secret: str | None = None):
        spec.check()
        self.spec = spec
        self.addresses = addresses
        self.secret = secret
        self.recorder = Recorder()
        self._rng = random.Random(spec.seed)
        self._value = self._rng.randbytes(spec.value_size)
        self._issued = 0  # operations started after the warmup
        self._answered = 0  # ... and answered (or failed)
        self._stop_at = math.inf
        self._finished = trio.Event()

    async def run(self, on_start: Callable[[], Awaitable[None]] | None = None) -> Recorder:
        """Run the load; ``on_start`` is awaited when the warmup ends (the
        caller samples CPU and counters there)."""
        spec = self.spec
        clients = [Client(self.addresses, timeout=spec.timeout, secret=self.secret) for _ in range(spec.conns)]
        async with trio.open_nursery() as nursery:
            for c in clients:
                await nursery.start(self._hold, c)
            if spec.prefill:
                await self._prefill(clients)
            begin = trio.current_time()
            measure_from = begin + spec.warmup
            slots = _Slots(spec.rate, begin) if spec.rate else None
            async with trio.open_nursery() as workers:
                for i in range(spec.clients):
                    workers.start_soon(self._client, clients[i % spec.conns], slots)
                await trio.sleep_until(measure_from)
                if on_start is not None:
                    await on_start()
                self.recorder.start(trio.current_time())
                if spec.duration is not None:
                    self._stop_at = self.recorder.started + spec.duration
                with trio.move_on_at(self._stop_at):
                    await self._finished.wait()
                self.recorder.stop(trio.current_time())
                workers.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        return self.recorder

    async def _prefill(self, clients: list[Client]) -> None:
        """Every key of the key space written once, by as many tasks as
        there are clients (failures are retried: the run needs them all)."""
        spec = self.spec
        keys = iter(range(spec.key_space))

        async def fill(client: Client) -> None:
            for n in keys:
                while True:
                    try:
                        await client.put(key_of(n, spec.key_size), self._value)
                        break
                    except ClientError:
                        await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            for i in range(min(spec.clients, spec.key_space)):
                nursery.start_soon(fill, clients[i % spec.conns])

    async def _hold(self, client: Client, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with client:
            task_status.started()
            await trio.sleep_forever()

    async def _client(self, client: Client, slots: _Slots | None) -> None:
        spec, rng, recorder = self.spec, self._rng, self.recorder
        total = spec.total if spec.total is not None else math.inf
        op = self._operation(client)
        while True:
            due = await slots.next() if slots is not None else trio.current_time()
            counted = due >= recorder.started
            if counted:
                if self._issued >= total:
                    return
                self._issued += 1
            key = key_of(rng.randrange(spec.key_space), spec.key_size)
            try:
                await op(key)
            except ClientError as exc:
                if counted:
                    recorder.failed(trio.current_time(), exc.code)
            else:
                if counted:
                    now = trio.current_time()
                    recorder.done(now, now - due)
            if counted:
                self._answered += 1
                if self._answered >= total:
                    self._finished.set()  # the last operation of --total is answered

    def _operation(self, client: Client) -> Callable[[str], Awaitable[object]]:
        spec, value, rng = self.spec, self._value, self._rng
        if spec.workload == "put":
            return lambda key: client.put(key, value)
        if spec.workload == "get":
            return lambda key: client.get(key, stale=spec.stale)
        if spec.workload == "cas":
            return lambda key: client.cas(key, None, value)

        async def mixed(key: str) -> object:
            if rng.random() < spec.read_ratio:
                return await client.get(key, stale=spec.stale)
            return await client.put(key, value)

        return mixed


class _Slots:
    """Open loop: the times operations are due, ``rate`` a second from
    ``begin``; each call takes the next one and sleeps until it is due."""

    def __init__(self, rate: float, begin: float):
        self.interval = 1.0 / rate
        self.begin = begin
        self.n = 0

    async def next(self) -> float:
        due = self.begin + self.n * self.interval
        self.n += 1
        await trio.sleep_until(due)
        return due
