"""Throughput and memory of the simulator, for ``make bench``."""

from __future__ import annotations

import resource
import sys
import time

from churn_assets.settings import Paths
from churn_assets.simulator.config import SimConfig
from churn_assets.simulator.run import simulate


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_simulator(paths: Paths, customers: int = 50_000, days: int = 60, seed: int = 42) -> dict:
    """Simulate a world with default dirt into ``paths`` and report rows written per second."""
    started = time.perf_counter()
    summary = simulate(paths, SimConfig(customers=customers, days=days, seed=seed))
    seconds = time.perf_counter() - started
    rows = sum(summary.rows.values())
    return {
        "customers": customers,
        "days": days,
        "rows": dict(summary.rows),
        "total_rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
