"""raftnet: a Raft consensus system."""
