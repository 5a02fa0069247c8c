"""Linearizability checking for histories of raftnet's key-value operations.

``load_history`` reads the JSON Lines history format (``history.py``; the
contract is in docs/check.md) and ``check`` decides whether the history is
linearizable against the per-key model (``model.py``) with the search in
``linearizability.py``. ``simulate.py`` makes linearizable histories, for
tests and the benchmark.
"""

from .history import HistoryError, Op, load_history
from .linearizability import Result, check

__all__ = ["HistoryError", "Op", "Result", "check", "load_history"]
