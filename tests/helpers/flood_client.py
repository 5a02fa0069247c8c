"""Child process for the kill-a-client test: open a client connection that
resets on close (SO_LINGER 0), put many writes in flight, say so, then wait
to be killed (exiting by itself after a minute at most)."""

import socket
import struct
import sys
import time

import cbor2


def frame(obj) -> bytes:
    body = cbor2.dumps(obj)
    return struct.pack(">I", len(body)) + body


def read_frame(sock) -> dict:
    head = b""
    while len(head) < 4:
        head += sock.recv(4 - len(head))
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return cbor2.loads(body)


port, cluster, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", port), timeout=30)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
read_frame(sock)  # challenge
sock.sendall(frame({"t": "hello", "role": "client", "id": None, "cluster": cluster}))
read_frame(sock)  # welcome
sock.sendall(frame({"t": "req", "rid": 0, "op": "register"}))
client = read_frame(sock).get("client")  # None on a follower: its puts are refused, which is fine
for seq in range(1, count + 1):
    sock.sendall(frame({"t": "req", "rid": seq, "op": "put", "key": f"flood-{seq}", "value": b"x" * 512,
                        "client": client or 1, "seq": seq, "ack": 1}))
    sock.sendall(frame({"t": "req", "rid": count + seq, "op": "get", "key": f"flood-{seq}", "stale": False}))
print("in flight", flush=True)
time.sleep(60)
