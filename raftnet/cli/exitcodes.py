"""Exit codes shared by every raftnet command (a public contract)."""

OK = 0
FAILURE = 1  # key not found, cas mismatch, or any other failure
UNAVAILABLE = 2  # timeout, or no node reachable
NOT_LEADER = 3  # with --target: the node asked is not the leader
CORRUPTION = 4  # log corruption or inconsistency
USAGE = 64  # bad flags, bad config, a path that is not a data directory
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
