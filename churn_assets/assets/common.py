"""What the thin assets share: windows in chunks, automation, metadata a person can read."""


from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import narwhals as nw
import polars as pl

from churn_assets.ingest.columns import PII_COLUMNS
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.transforms.contracts import PARTITION_COLUMN as ARRIVAL

# A backfill run commits at most this many days at once, which bounds its memory.
CHUNK_DAYS = 31
# Columns never shown in previews, even hashed: metadata is visible to everyone with UI access.
HIDDEN_COLUMNS = (*PII_COLUMNS, "email_hash", "phone_hash", "_ingested_at")


def chunks(window: DateWindow, days: int) -> Iterator[DateWindow]:
    start = window.start
    while start < window.end:
        end = min(window.end, start + timedelta(days=days))
        yield DateWindow(start, end)
        start = end


def on_upstream_change() -> dg.AutomationCondition:
    """Materialize any partition whose upstream partitions changed, once none is missing.

    ``eager()`` alone only looks at the latest day; a re-drop of an older day must flow on too.
    """
    return dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())


def markdown_preview(frame, rows: int = 5, columns: int = 12) -> str:
    """The first rows of a native frame as a Markdown table, without personal columns."""
    head = nw.from_native(frame).head(rows)
    head = head.lazy().collect() if isinstance(head, nw.LazyFrame) else head
    head = head.drop([c for c in HIDDEN_COLUMNS if c in head.columns])
    if head.is_empty():
        return "_no rows_"
    names = head.columns[:columns]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in head.select(names).iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v)[:40] for v in row) + " |")
    return "\n".join(lines)


def outcome_result(asset_key: dg.AssetKey, name: str, outcome) -> dg.AssetCheckResult:
    """An ``expectations.Outcome`` as a check result with its description and metadata."""
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity[outcome.severity],
        description=outcome.description,
        metadata={k: _metadata_value(v) for k, v in outcome.metadata.items()},
    )


def _metadata_value(value):
    if isinstance(value, list | dict | tuple):
        return dg.MetadataValue.json(value if not isinstance(value, tuple) else list(value))
    return value


def to_polars(frame) -> pl.DataFrame:
    """A native frame of any engine collected as one Polars frame (models train on one node)."""
    return nw.from_native(frame).lazy().collect(backend="polars").to_native()


def first_arrival(store: TableStore, table: str) -> date | None:
    return column_bound(store, table, ARRIVAL, "min")


def last_arrival(store: TableStore, table: str) -> date | None:
    return column_bound(store, table, ARRIVAL, "max")


def column_bound(store: TableStore, table: str, column: str, how: str) -> date | None:
    """The min or max of a (date) column over the whole table; None when it has no rows."""
    if not store.exists(table):
        return None
    frame = nw.from_native(store.read(table, columns=[column]))
    return frame.select(getattr(nw.col(column), how)()).lazy().collect().item()
