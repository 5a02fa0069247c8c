"""What one simulated run did, over virtual time: the record behind
``--timeline out.svg`` (``timeline_svg.py`` draws it).

The cluster fills it as events happen; everything is plain data so it can
be drawn, dumped as JSON or compared. Times are virtual time units.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ClientOp:
    process: int  # the simulated client
    node: int  # the node it sent the operation to (last try)
    f: str  # put, get, cas, delete, stale-get
    key: str
    invoke: int
    complete: int | None  # None: still open at the end
    outcome: str  # ok, fail, unknown


@dataclass(slots=True)
class Timeline:
    seed: int
    nodes: list[int]
    # node -> [(time, role, term)]: role is "follower", "pre-candidate",
    # "candidate", "leader" or "down"; one entry per change.
    roles: dict[int, list[tuple[int, str, int]]] = field(default_factory=dict)
    # node -> [(time, commit index)], one entry per change.
    commits: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    crashes: list[tuple[int, int, str]] = field(default_factory=list)  # (time, node, where)
    restarts: list[tuple[int, int]] = field(default_factory=list)  # (time, node)
    # (time, the set of cut directed links (src, dst)) whenever it changes;
    # an empty set is a healed network.
    network: list[tuple[int, frozenset[tuple[int, int]]]] = field(default_factory=list)
    ops: list[ClientOp] = field(default_factory=list)
    violation: tuple[int, str] | None = None  # (time, what)
    end: int = 0  # the last virtual time of the run

    def role(self, t: int, node: int, role: str, term: int) -> None:
        lane = self.roles.setdefault(node, [])
        if not lane or lane[-1][1:] != (role, term):
            lane.append((t, role, term))

    def commit(self, t: int, node: int, index: int) -> None:
        lane = self.commits.setdefault(node, [])
        if not lane or lane[-1][1] != index:
            lane.append((t, index))

    def crash(self, t: int, node: int, where: str) -> None:
        self.crashes.append((t, node, where))
        self.role(t, node, "down", self.roles.get(node, [(0, "", 0)])[-1][2])

    def restart(self, t: int, node: int) -> None:
        self.restarts.append((t, node))

    def cut(self, t: int, links: set[tuple[int, int]]) -> None:
        now = frozenset(links)
        if not self.network or self.network[-1][1] != now:
            self.network.append((t, now))
