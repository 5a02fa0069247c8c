"""Jepsen-style fault testing of a real raftnet cluster (``python -m
raftnet.jepsen``): real ``raftnet serve`` processes on loopback, clients
recording a history, a nemesis killing, pausing and partitioning nodes,
then convergence and linearizability checks (``raftnet.check``).

A test tool: raftnet itself never imports it. See docs/jepsen.md.
"""
