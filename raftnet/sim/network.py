"""The simulated network: every message is an event at a virtual time.

It drops, delays (and so reorders), duplicates and partitions, all decided
by the run's seeded RNG. Partitions are sets of cut *directed* links, so a
one-way partition (A hears B, B does not hear A) is just half of a cut.
A link cut while a message is in flight loses that message too.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from ..core.messages import Message


@dataclass(slots=True)
class Faults:
    """How unreliable the network is. Times are in virtual time units (a node
    ticks every ``TICK`` units, see ``cluster.py``)."""

    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability a message is delivered twice
    delay_min: int = 1
    delay_max: int = 5
    long_delay: float = 0.0  # probability of a delay up to long_delay_max (reordering)
    long_delay_max: int = 200

    @classmethod
    def reliable(cls) -> Faults:
        return cls()

    @classmethod
    def unreliable(cls) -> Faults:
        return cls(drop=0.1, duplicate=0.05, delay_max=30, long_delay=0.05, long_delay_max=300)


class Network:
    def __init__(self, rng: Random, faults: Faults):
        self.rng = rng
        self.faults = faults
        self.cut: set[tuple[int, int]] = set()
        self.sent = 0  # messages handed to the network (the RPC count)
        self.delivered = 0

    def delays(self, m: Message) -> list[int]:
        """The delays at which ``m`` arrives: none if dropped, two if duplicated."""
        self.sent += 1
        f = self.faults
        rng = self.rng
        if (m.src, m.dst) in self.cut or (f.drop and rng.random() < f.drop):
            return []
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        out = []
        for _ in range(copies):
            if f.long_delay and rng.random() < f.long_delay:
                out.append(rng.randint(f.delay_min, f.long_delay_max))
            else:
                out.append(rng.randint(f.delay_min, f.delay_max))
        return out

    def can_deliver(self, m: Message) -> bool:
        return (m.src, m.dst) not in self.cut

    # -- partitions ----------------------------------------------------------

    def partition(self, *groups: list[int]) -> None:
        """Cut every link between different groups, both ways."""
        for a_group in groups:
            for b_group in groups:
                if a_group is b_group:
                    continue
                for a in a_group:
                    for b in b_group:
                        self.cut.add((a, b))

    def cut_one_way(self, src: int, dst: int) -> None:
        self.cut.add((src, dst))

    def isolate(self, node: int, everyone: list[int]) -> None:
        self.partition([node], [n for n in everyone if n != node])

    def reconnect(self, node: int) -> None:
        self.cut = {(a, b) for a, b in self.cut if node not in (a, b)}

    def heal(self) -> None:
        self.cut.clear()
