"""What a benchmark run measured: every operation's latency, the errors by
kind, and a per-second series for progress lines and plots.

Latencies are kept whole (8 bytes each: a million operations is 8 MB), so
the percentiles are exact, not bucketed.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(ordered: array | list, p: float) -> float:
    """The ``p``-th percentile of ``ordered`` (sorted), nearest rank."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Second:
    """One second of a run: the latencies of the operations completed in it,
    and how many failed."""

    latencies: array = field(default_factory=lambda: array("d"))
    errors: int = 0


class Recorder:
    """Collects one run's outcomes. ``start`` marks the end of the warmup:
    nothing completed before it counts."""

    def __init__(self) -> None:
        self.latencies = array("d")
        self.errors: Counter[str] = Counter()
        self.seconds: list[Second] = []
        self.started = math.inf
        self.ended = math.inf

    def start(self, now: float) -> None:
        self.started = now

    def done(self, now: float, latency: float) -> None:
        if now >= self.started:
            self.latencies.append(latency)
            self._second(now).latencies.append(latency)

    def failed(self, now: float, kind: str) -> None:
        if now >= self.started:
            self.errors[kind] += 1
            self._second(now).errors += 1

    def _second(self, now: float) -> Second:
        k = int(now - self.started)
        while len(self.seconds) <= k:
            self.seconds.append(Second())
        return self.seconds[k]

    def stop(self, now: float) -> None:
        self.ended = now

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.ended - self.started)

    def summary(self) -> dict:
        ordered = array("d", sorted(self.latencies))
        out = {"ops": len(ordered), "seconds": round(self.elapsed, 3), "ops_per_s": len(ordered) / self.elapsed,
               "errors": dict(self.errors)}
        for p in PERCENTILES:
            out[f"p{p:g}_ms"] = percentile(ordered, p) * 1000
        out["max_ms"] = (ordered[-1] if ordered else math.nan) * 1000
        out["mean_ms"] = (sum(ordered) / len(ordered) if ordered else math.nan) * 1000
        return out

    def series(self) -> list[dict]:
        """Per second: completed operations and their p50/p99/max latency (ms)."""
        out = []
        for k, s in enumerate(self.seconds):
            ordered = sorted(s.latencies)
            span = min(1.0, self.elapsed - k)  # the last second may be cut short
            out.append({"second": k, "ops": len(ordered), "ops_per_s": len(ordered) / span if span > 0 else 0.0,
                        "errors": s.errors,
                        **{f"p{p:g}_ms": percentile(ordered, p) * 1000 for p in (50.0, 99.0)},
                        "max_ms": (ordered[-1] if ordered else math.nan) * 1000})
        return out
