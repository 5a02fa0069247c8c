"""Child process for the crash tests: append entries forever, printing each
index once it is durable. The parent kill -9s us at random moments."""

import sys

from raftnet.core.messages import Entry
from raftnet.core.ready import HardState
from raftnet.storage import Storage

data_dir, start_term = sys.argv[1], int(sys.argv[2])
st = Storage.open(data_dir, cluster="crash", node_id=1, segment_size=64 * 1024)
index = st.last_index
term = max(start_term, st.hard_state.term)
st.save(HardState(term, 1, st.hard_state.commit), [])
print(f"start {index} {term}", flush=True)
for k in range(1_000_000):
    batch = [Entry(index + j + 1, term, b"%d:%d" % (index + j + 1, term) * 8) for j in range(1 + k % 7)]
    st.save(None, batch)
    index = batch[-1].index
    print(f"ack {index}", flush=True)
