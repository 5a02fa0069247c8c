"""Group commit: concurrent appends share fsyncs; each returns once durable."""

from __future__ import annotations

import trio

from raftnet.core.messages import Entry
from raftnet.storage import LogWriter, Storage


async def test_concurrent_appends_are_grouped_and_durable(tmp_path):
    st = Storage.open(str(tmp_path), cluster="g", node_id=1)
    next_index = 0
    done = []

    async def proposer(k: int) -> None:
        nonlocal next_index
        for _ in range(25):
            next_index += 1
            index = next_index
            await writer.append([Entry(index, 1, b"p%d" % index)])
            done.append(index)

    with trio.fail_after(60):
        async with LogWriter(st) as writer:
            async with trio.open_nursery() as nursery:
                for k in range(16):
                    nursery.start_soon(proposer, k)
    assert sorted(done) == list(range(1, 401))
    # 400 appends, far fewer batches (each batch is one write + one fsync).
    assert writer.batches < 400
    assert st.fsyncs == writer.batches
    st.close()
    st = Storage.open(str(tmp_path), cluster="g", node_id=1)
    assert st.last_index == 400 and st.entries(400, 401)[0].data == b"p400"
