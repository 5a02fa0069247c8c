"""In-process clusters of real ``Node`` actors on the in-memory network and
memory disks that survive a node's "crash" (run them under trio's MockClock)."""

from __future__ import annotations

import random

import trio

from raftnet.config import parse_config
from raftnet.kv.store import encode_command
from raftnet.node import Node
from raftnet.node.logstore import MemoryLogStore
from raftnet.node.transport import MemoryNetwork


def sim_config(**sections) -> object:
    """A 3-node config on the memory network; ``sections`` add or replace tables."""
    return parse_config({
        "cluster": {"name": "sim"},
        "nodes": [{"id": i, "address": f"n{i}:1"} for i in (1, 2, 3)],
        "storage": {"data_dir": "unused-{id}"},
        "timing": {"tick_ms": 10, "heartbeat_ms": 50, "election_timeout_ms": [300, 600]},
        **sections,
    })


CONFIG = sim_config()


async def eventually(predicate, deadline: float) -> None:
    """Wait (in virtual time) until ``predicate()`` holds; fail after ``deadline`` seconds."""
    with trio.fail_after(deadline):
        while not predicate():
            await trio.sleep(0.05)


class SimCluster:
    def __init__(self, nursery: trio.Nursery, seed: int = 1, disk_latency: float = 0.0, config=CONFIG,
                 peer_queue_size: int = 4096):
        self.config = config
        self.peer_queue_size = peer_queue_size
        self.net = MemoryNetwork()
        # With a latency, every write takes that long and the node keeps
        # stepping messages and ticks meanwhile (readyloop.py).
        self.disks = {i: MemoryLogStore(latency=disk_latency) for i in (1, 2, 3)}
        self.nodes: dict[int, Node] = {}
        self._stops: dict[int, trio.CancelScope] = {}
        self.nursery = nursery
        self.rng = random.Random(seed)

    async def start(self, i: int) -> None:
        ready = trio.Event()

        async def run(task_status=trio.TASK_STATUS_IGNORED):
            with trio.CancelScope() as scope:
                self._stops[i] = scope
                node = Node(self.config, i, transport=self.net.transport(f"n{i}:1"), log_store=self.disks[i],
                            rng=random.Random(self.rng.random()), peer_queue_size=self.peer_queue_size)
                async with node:
                    self.nodes[i] = node
                    task_status.started()
                    await trio.sleep_forever()
            self.nodes.pop(i, None)

        await self.nursery.start(run)

    async def start_all_and_register(self) -> tuple[Node, dict]:
        """Start every node, wait for a leader, open a client session there."""
        for i in (1, 2, 3):
            await self.start(i)
        leader = await self.leader()
        _, reg = await leader.propose(encode_command("register"))
        return leader, reg

    def crash(self, i: int) -> None:
        self._stops[i].cancel()
        self.net.isolate(f"n{i}:1")

    async def leader(self, among=(1, 2, 3), deadline: float = 30) -> Node:
        with trio.fail_after(deadline):
            while True:
                leaders = [n for i, n in self.nodes.items() if i in among and n.raft.role.value == "leader"]
                if len(leaders) == 1:
                    lead = leaders[0]
                    if lead.raft.log.term_at(lead.raft.commit_index) == lead.raft.term:
                        return lead
                await trio.sleep(0.05)
