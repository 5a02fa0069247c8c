"""Cluster membership (thesis chapter 4): what a configuration is, and
which changes to it are safe.

A ``Membership`` names every member of the cluster, its address, and its
suffrage:

* ``voters``: the configuration's voters (C_new while joint);
* ``outgoing``: while joint, the voters of the configuration being left
  (C_old). Empty otherwise. A decision (an election, a commit) then needs a
  majority of ``voters`` *and* a majority of ``outgoing`` (thesis §4.3);
* ``learners``: members that receive the log and snapshots but never vote
  and never count towards a quorum (thesis §4.2.1, etcd's learners).

A member is never both a learner and a voter of either side.

The rules a change must follow live here, as pure functions from one
membership to the next, each refusing a bad change with a ``ChangeRefused``
that says why. What depends on the leader's state (one change at a time,
an entry of the leader's own term committed first, a learner caught up
before its promotion) is checked by the core, which knows it.

* A *simple* change adds or removes at most one voter (thesis §4.1): any
  majority of the old voters and any majority of the new ones then share a
  member, so the change takes effect in one step.
* Anything larger enters a *joint* configuration first (``enter_joint``)
  and leaves it with ``leave_joint`` once the joint entry has committed.
* Learners may be added or removed freely: they are in no quorum.

A configuration travels as a log entry (``EntryKind.CONFIG``) whose data is
``encode()``: a few lines of text, readable in ``raftnet inspect``:

    raftnet membership 1
    voter 1 127.0.0.1:7001
    outgoing 3 127.0.0.1:7003
    learner 4 127.0.0.1:7004

with a member that is in both C_old and C_new listed as ``voter+outgoing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .quorum import JointConfig, MajorityConfig

HEADER = "raftnet membership 1"
MAX_MEMBERS = 64  # far more than any Raft cluster should have; bounds what a decoded entry may hold
MAX_ADDRESS = 255


class ChangeRefused(ValueError):
    """A membership change that may not be made; the message says why."""


@dataclass(frozen=True, slots=True)
class Membership:
    voters: frozenset[int]
    learners: frozenset[int] = frozenset()
    outgoing: frozenset[int] = frozenset()
    addresses: Mapping[int, str] = field(default_factory=dict, compare=True, hash=False)

    def __post_init__(self) -> None:
        for name in ("voters", "learners", "outgoing"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        if not self.voters:
            raise ChangeRefused("a configuration needs at least one voter")
        both = self.learners & (self.voters | self.outgoing)
        if both:
            raise ChangeRefused(f"node {min(both)} cannot be a learner and a voter at once")
        for node in self.members:
            if isinstance(node, bool) or not isinstance(node, int) or node < 1:
                raise ChangeRefused(f"member ids are positive integers, not {node!r}")
        if len(self.members) > MAX_MEMBERS:
            raise ChangeRefused(f"at most {MAX_MEMBERS} members, not {len(self.members)}")
        unknown = set(self.addresses) - self.members
        if unknown:
            raise ChangeRefused(f"an address is given for {sorted(map(repr, unknown))[0]}, which is not a member")
        object.__setattr__(self, "addresses", dict(sorted(self.addresses.items())))
        seen: dict[str, int] = {}
        for node, address in self.addresses.items():
            if not isinstance(address, str) or not address or len(address) > MAX_ADDRESS or any(
                    c.isspace() for c in address):
                raise ChangeRefused(f"node {node}'s address {address!r} is not a host:port")
            if address in seen:
                raise ChangeRefused(f"nodes {seen[address]} and {node} have the same address {address}")
            seen[address] = node

    @classmethod
    def of(cls, voters: Iterable[int], learners: Iterable[int] = (),
           addresses: Mapping[int, str] | None = None) -> Membership:
        return cls(frozenset(voters), frozenset(learners), frozenset(), dict(addresses or {}))

    # -- reading it ----------------------------------------------------------------

    @property
    def members(self) -> frozenset[int]:
        return self.voters | self.outgoing | self.learners

    @property
    def is_joint(self) -> bool:
        return bool(self.outgoing)

    @property
    def quorum(self) -> JointConfig:
        return JointConfig(MajorityConfig(self.voters), MajorityConfig(self.outgoing))

    def can_vote(self, node: int) -> bool:
        return node in self.voters or node in self.outgoing

    def suffrage(self, node: int) -> str | None:
        """"voter", "outgoing" (in C_old only), "learner", or None."""
        if node in self.voters:
            return "voter"
        if node in self.outgoing:
            return "outgoing"
        if node in self.learners:
            return "learner"
        return None

    def describe(self) -> str:
        """One line for messages and logs, e.g. ``voters 1,2,3 learners 4``."""
        parts = [f"voters {_ids(self.voters)}"]
        if self.outgoing:
            parts.append(f"(joint with outgoing {_ids(self.outgoing)})")
        if self.learners:
            parts.append(f"learners {_ids(self.learners)}")
        return " ".join(parts)

    # -- the changes ----------------------------------------------------------------

    def add_learner(self, node: int, address: str) -> Membership:
        self._refuse_while_joint("add a learner")
        self._refuse_member(node, address)
        return Membership(self.voters, self.learners | {node}, frozenset(), {**self.addresses, node: address})

    def add_voter(self, node: int, address: str) -> Membership:
        """A simple change: one voter more."""
        self._refuse_while_joint("add a voter")
        self._refuse_member(node, address)
        return Membership(self.voters | {node}, self.learners, frozenset(), {**self.addresses, node: address})

    def promote(self, node: int) -> Membership:
        """A simple change: a learner becomes a voter (the core checks first
        that it has caught up)."""
        self._refuse_while_joint("promote a learner")
        if node not in self.learners:
            what = "a voter already" if node in self.voters else "not a member"
            raise ChangeRefused(f"node {node} is {what}: only a learner can be promoted")
        return Membership(self.voters | {node}, self.learners - {node}, frozenset(), self.addresses)

    def remove(self, node: int) -> Membership:
        """A simple change: a voter or a learner leaves."""
        self._refuse_while_joint("remove a member")
        if node not in self.members:
            raise ChangeRefused(f"node {node} is not a member")
        if self.voters == {node}:
            raise ChangeRefused(f"node {node} is the last voter: a cluster needs one")
        addresses = {k: v for k, v in self.addresses.items() if k != node}
        return Membership(self.voters - {node}, self.learners - {node}, frozenset(), addresses)

    def enter_joint(self, voters: Iterable[int], learners: Iterable[int] = (),
                    addresses: Mapping[int, str] | None = None) -> Membership:
        """C_old,new: the current voters become ``outgoing``; ``voters`` and
        ``learners`` are the configuration to reach. New members need an
        address; a member leaving altogether stays listed (as outgoing)
        until the joint configuration is left."""
        self._refuse_while_joint("start another change")
        voters, learners = frozenset(voters), frozenset(learners)
        given = dict(addresses or {})
        merged = {**self.addresses, **given}
        for node in sorted((voters | learners) - self.members):
            if node not in given:
                raise ChangeRefused(f"node {node} is new: give its address")
        for node, address in given.items():
            if node in self.addresses and self.addresses[node] != address:
                raise ChangeRefused(f"node {node} is already a member at {self.addresses[node]}")
        if voters == self.voters and learners == self.learners:
            raise ChangeRefused(f"the configuration is already {self.describe()}")
        kept = voters | learners | self.voters
        return Membership(voters, learners, self.voters, {k: v for k, v in merged.items() if k in kept})

    def leave_joint(self) -> Membership:
        """C_new, once C_old,new has committed."""
        if not self.is_joint:
            raise ChangeRefused("the configuration is not joint")
        kept = self.voters | self.learners
        return Membership(self.voters, self.learners, frozenset(),
                          {k: v for k, v in self.addresses.items() if k in kept})

    def is_simple_step_to(self, other: Membership) -> bool:
        """Whether going from this configuration to ``other`` in one step
        is safe: neither is joint and the voters differ by at most one."""
        return not self.is_joint and not other.is_joint and len(self.voters ^ other.voters) <= 1

    def _refuse_while_joint(self, what: str) -> None:
        if self.is_joint:
            raise ChangeRefused(f"cannot {what} while a joint change ({self.describe()}) is unfinished")

    def _refuse_member(self, node: int, address: str) -> None:
        if node in self.members:
            raise ChangeRefused(f"node {node} is already a member ({self.suffrage(node)})")
        for other, used in self.addresses.items():
            if used == address:
                raise ChangeRefused(f"address {address} is node {other}'s")

    # -- as a log entry --------------------------------------------------------------

    def encode(self) -> bytes:
        lines = [HEADER]
        for node in sorted(self.members):
            roles = [r for r, s in (("voter", self.voters), ("outgoing", self.outgoing), ("learner", self.learners))
                     if node in s]
            address = self.addresses.get(node, "-")
            lines.append(f"{'+'.join(roles)} {node} {address}")
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> Membership:
        """The inverse of ``encode``; raises ``ChangeRefused`` naming what is wrong."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ChangeRefused("a membership entry must be ASCII text") from None
        lines = text.split("\n")
        if lines[0] != HEADER or lines[-1] != "":
            raise ChangeRefused(f"a membership entry starts with {HEADER!r} and ends with a newline")
        sets: dict[str, set[int]] = {"voter": set(), "outgoing": set(), "learner": set()}
        addresses: dict[int, str] = {}
        for k, line in enumerate(lines[1:-1], start=2):
            parts = line.split(" ")
            if len(parts) != 3 or not parts[1].isdigit():
                raise ChangeRefused(f"membership entry line {k}: expected 'ROLES ID ADDRESS', got {line[:80]!r}")
            roles, node = parts[0].split("+"), int(parts[1])
            if node in addresses or any(node in s for s in sets.values()):
                raise ChangeRefused(f"membership entry line {k}: node {node} is listed twice")
            for role in roles:
                if role not in sets or roles.count(role) > 1:
                    raise ChangeRefused(f"membership entry line {k}: unknown or repeated role {role!r}")
                sets[role].add(node)
            if parts[2] != "-":
                addresses[node] = parts[2]
        return cls(frozenset(sets["voter"]), frozenset(sets["learner"]), frozenset(sets["outgoing"]), addresses)


def _ids(nodes: Iterable[int]) -> str:
    return ",".join(str(n) for n in sorted(nodes))
