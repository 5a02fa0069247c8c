"""State machines for ``python -m raftnet.sim --state-machine`` tests."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable


class Counter:
    """A deterministic state machine: commands are signed 8-byte deltas."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    @staticmethod
    def sim_command(rng: random.Random) -> bytes:
        return struct.pack(">q", rng.randint(-1000, 1000))

    def apply(self, index: int, command: bytes):
        if len(command) != 8:
            return {"error": "bad command"}
        self.total += struct.unpack(">q", command)[0]
        self.count += 1
        return self.total

    def read(self, query):
        return self.total

    def snapshot(self) -> list[bytes]:
        # Encoded now, not lazily: the caller iterates later, after more applies.
        return [struct.pack(">qq", self.total, self.count)]

    def restore(self, blobs: Iterable[bytes]) -> None:
        blobs = list(blobs)
        if len(blobs) != 1 or len(blobs[0]) != 16:
            raise ValueError("a Counter snapshot is one blob of 16 bytes")
        self.total, self.count = struct.unpack(">qq", blobs[0])


class Nondeterministic(Counter):
    """Broken on purpose: each replica adds its own random noise, so replicas
    that applied the same log disagree."""

    def __init__(self) -> None:
        super().__init__()
        self.noise = random.Random().randint(1, 1 << 30)

    def apply(self, index: int, command: bytes):
        result = super().apply(index, command)
        self.total += self.noise % 3
        return result
