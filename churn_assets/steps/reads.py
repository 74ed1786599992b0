"""Small reads every step and asset shares: windows in chunks, a table's first or last day, and
whole tables as Polars frames (for the one-node code: models, decisions, the lab)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import narwhals as nw
import polars as pl

from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.transforms.contracts import PARTITION_COLUMN as ARRIVAL

# A backfill run commits at most this many days at once, which bounds its memory.
CHUNK_DAYS = 31


def chunks(window: DateWindow, days: int) -> Iterator[DateWindow]:
    start = window.start
    while start < window.end:
        end = min(window.end, start + timedelta(days=days))
        yield DateWindow(start, end)
        start = end


def first_arrival(store: TableStore, table: str) -> date | None:
    return column_bound(store, table, ARRIVAL, "min")


def last_arrival(store: TableStore, table: str) -> date | None:
    return column_bound(store, table, ARRIVAL, "max")


def column_bound(store: TableStore, table: str, column: str, how: str,
                 window: DateWindow | None = None) -> date | None:
    """The min or max of a (date) column over the whole table, or over ``window`` of it when
    ``column`` is its partition column; None when there are no rows."""
    if not store.exists(table):
        return None
    frame = nw.from_native(store.read(table, window, column, [column]) if window
                           else store.read(table, columns=[column]))
    return frame.select(getattr(nw.col(column), how)()).lazy().collect().item()


def to_polars(frame) -> pl.DataFrame:
    """A native frame of any engine collected as one Polars frame (models train on one node)."""
    return nw.from_native(frame).lazy().collect(backend="polars").to_native()


def read_table(store: TableStore, table: str) -> pl.DataFrame | None:
    """The whole of ``table`` as Polars, through the store of the environment; None if absent."""
    return to_polars(store.read(table)) if store.exists(table) else None
