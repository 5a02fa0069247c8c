"""Child process for the kill-a-client test: open a client connection that
resets on close (SO_LINGER 0), put many writes in flight, say so, then wait
to be killed (exiting by itself after a minute at most)."""

import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cluster_harness import frame, handshaken, read_frame  # noqa: E402 - after the path it lives on

port, cluster, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sock = handshaken(port, cluster=cluster, timeout=30)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
sock.sendall(frame({"t": "req", "rid": 0, "op": "register"}))
client = read_frame(sock).get("client")  # None on a follower: its puts are refused, which is fine
for seq in range(1, count + 1):
    sock.sendall(frame({"t": "req", "rid": seq, "op": "put", "key": f"flood-{seq}", "value": b"x" * 512,
                        "client": client or 1, "seq": seq, "ack": 1}))
    sock.sendall(frame({"t": "req", "rid": count + seq, "op": "get", "key": f"flood-{seq}", "stale": False}))
print("in flight", flush=True)
time.sleep(60)
