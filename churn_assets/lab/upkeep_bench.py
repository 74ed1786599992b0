"""What a year of daily commits does to a Delta table, and what ``delta_maintenance`` does about
it: one daily-partitioned table written through the ``DeltaTableStore`` a day per commit, with a
re-drop a week (last week's first day written again), then one upkeep with retention 0.

It measures the table, not the pipeline: each daily commit replaces one day's partition, so a
day keeps one file, and the old files of re-dropped days stay on disk until a vacuum.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.store import DateWindow, Upkeep
from churn_assets.steps.upkeep import MB

TABLE = "gold.customer_state"
DAY = "snapshot_date"


def _day_rows(day: date, customers: int, value: float) -> pl.DataFrame:
    return pl.DataFrame({DAY: [day] * customers,
                         "customer_id": [f"C{i:08d}" for i in range(customers)],
                         "orders_total": list(range(customers)),
                         "revenue_total": [value] * customers})


def a_year_of_commits(root: Path, days: int, customers: int) -> dict:
    """Write, re-drop, read, upkeep, read again; the numbers of each step."""
    store = DeltaTableStore(root=str(root))
    start, commits = date(2025, 1, 1), 0
    began = time.perf_counter()
    for i in range(days):
        day = start + timedelta(days=i)
        store.replace_window(TABLE, _day_rows(day, customers, float(i)), DateWindow.day(day), DAY)
        commits += 1
        if i % 7 == 6:
            again = day - timedelta(days=6)
            store.replace_window(TABLE, _day_rows(again, customers, float(i)),
                                 DateWindow.day(again), DAY)
            commits += 1
    writing = time.perf_counter() - began

    def read() -> tuple[pl.DataFrame, float]:
        began = time.perf_counter()
        frame = store.read(TABLE).collect()
        return frame.sort(DAY, "customer_id"), time.perf_counter() - began

    before, read_before = read()
    began = time.perf_counter()
    upkeep = store.upkeep(TABLE, retention_hours=0, small_file_bytes=16 * MB)
    upkeep_seconds = time.perf_counter() - began
    after, read_after = read()
    return {"commits": commits, "rows": before.height, "write_seconds": writing,
            "read_before": read_before, "read_after": read_after,
            "upkeep_seconds": upkeep_seconds, "upkeep": upkeep,
            "identical": before.equals(after)}


def upkeep_section(home: Path, days: int, customers: int) -> list[str]:
    result = a_year_of_commits(home, days, customers)
    upkeep: Upkeep = result["upkeep"]
    rows = []
    for when, health, read in (("before upkeep", upkeep.before, result["read_before"]),
                               ("after upkeep", upkeep.after, result["read_after"])):
        rows.append(f"| {when} | {health.files:,} | {health.files_on_disk:,} | "
                    f"{health.small_file_ratio:.2f} | {health.bytes / MB:,.1f} | "
                    f"{read * 1000:,.0f} |")
    return [
        f"### Delta upkeep: {days} daily commits of {customers:,} rows, a re-drop a week "
        f"({result['commits']} commits, {result['write_seconds']:.1f} s)",
        "",
        "| table | data files | files on disk | small-file ratio (< 16 MB) | MB | full read, ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Upkeep took {result['upkeep_seconds']:.1f} s: {upkeep.files_compacted} files "
        f"compacted into {upkeep.files_written}, {upkeep.files_vacuumed} vacuumed; the table "
        f"reads back {'identical' if result['identical'] else 'DIFFERENT'}. A day partition "
        "written once holds one file, which compaction cannot merge with another day's; what "
        "upkeep removes is the re-dropped days' replaced files.",
    ]
