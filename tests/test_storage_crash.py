"""kill -9 a real process appending to the WAL, many times; after each
restart every index it acknowledged is present and intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from raftnet.storage import Storage

HELPER = Path(__file__).parent / "helpers" / "wal_appender.py"
KILLS = 200 if os.environ.get("RAFTNET_LONG") == "1" else 20


def test_kill_minus_9_never_loses_an_acknowledged_entry(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acked = 0
    term = 1
    for kill in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(HELPER), str(tmp_path), str(term)],
                                stdout=subprocess.PIPE, text=True)
        try:
            start = proc.stdout.readline().split()
            assert start and start[0] == "start", f"seed={seed}: helper failed to start"
            recovered = int(start[1])
            assert recovered >= acked, f"seed={seed} kill={kill}: recovered {recovered} < acknowledged {acked}"
            # Let it run for a random number of acknowledgements, then kill it mid-stride.
            target = rng.randint(1, 400)
            deadline = time.monotonic() + 30
            seen = 0
            while seen < target and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                acked = int(line.split()[1])
                seen += 1
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        st = Storage.open(str(tmp_path), cluster="crash", node_id=1, segment_size=64 * 1024)
        try:
            assert st.last_index >= acked, f"seed={seed} kill={kill}: lost entries {st.last_index + 1}..{acked}"
            for e in st.entries(max(1, acked - 50), acked + 1):
                assert e.data == b"%d:%d" % (e.index, e.term) * 8, f"seed={seed}: entry {e.index} damaged"
        finally:
            st.close()
        # Sometimes the next incarnation starts a new term and overwrites
        # an unacknowledged tail (nothing here is ever overwritten below acked).
        if rng.random() < 0.3:
            term += 1
    assert acked > KILLS
