"""The table store: the one seam that knows where tables live and which engine reads them.

Assets ask it for a window of daily partitions and hand it a frame plus the window to replace.
Table names are ``"<layer>.<table>"`` (``"bronze.payments"``): a folder under the lake locally,
``catalog.<layer>.<table>`` on Databricks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import narwhals as nw


@dataclass(frozen=True)
class DateWindow:
    """A half-open window of days ``[start, end)``."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty window: end {self.end} must be after start {self.start}")

    @classmethod
    def day(cls, day: date) -> DateWindow:
        return cls(day, day + timedelta(days=1))

    @classmethod
    def from_time_window(cls, window: dg.TimeWindow) -> DateWindow:
        return cls(_as_date(window.start), _as_date(window.end))

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows_written: int
    window: DateWindow | None
    version: int | None = None
    new_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileHealth:
    """The data files a table's current version reads: how many, how many are small, bytes."""

    files: int
    # None where the engine reports no per-file sizes (Databricks' DESCRIBE DETAIL).
    small_files: int | None
    bytes: int
    # Data files under the table's location, read or not (a replaced window's old files stay
    # until vacuumed); None where listing the location is not done (object stores, catalogs).
    files_on_disk: int | None = None

    @property
    def small_file_ratio(self) -> float | None:
        if self.small_files is None:
            return None
        return self.small_files / self.files if self.files else 0.0


@dataclass(frozen=True)
class Upkeep:
    """What compacting and vacuuming one table did. ``skipped`` says why nothing was done."""

    table: str
    before: FileHealth | None = None
    after: FileHealth | None = None
    files_compacted: int = 0
    files_written: int = 0
    files_vacuumed: int = 0
    skipped: str | None = None


class TableStore(dg.ConfigurableResource, ABC):
    """Read and replace windows of daily-partitioned tables.

    Every partitioned table has a ``Date`` partition column (named by the caller, stable per
    table). Writes replace exactly the rows whose partition column falls in the window, in one
    commit: rows outside the window are never touched, and rerunning a window is idempotent.
    """

    @abstractmethod
    def exists(self, table: str) -> bool: ...

    @abstractmethod
    def read(
        self,
        table: str,
        window: DateWindow | None = None,
        partition_column: str = "partition_date",
        columns: list[str] | None = None,
    ) -> Any:
        """The rows of ``table`` (in ``window`` when given) as the engine's native lazy frame.

        A table that does not exist yet raises ``TableNotFound``.
        """

    @abstractmethod
    def replace_window(
        self,
        table: str,
        frame: Any,
        window: DateWindow,
        partition_column: str = "partition_date",
        allow_new_columns: bool = False,
    ) -> WriteResult:
        """Replace the rows of ``window`` with ``frame`` (which may be empty).

        Every row of ``frame`` must fall inside ``window``. New columns are added only when
        ``allow_new_columns`` is true; otherwise they are an error naming the columns.
        """

    @abstractmethod
    def append(self, table: str, frame: Any, allow_new_columns: bool = False) -> WriteResult: ...

    @abstractmethod
    def overwrite(self, table: str, frame: Any) -> WriteResult:
        """Replace a whole (unpartitioned) table."""

    def count_rows(
        self,
        table: str,
        window: DateWindow | None = None,
        partition_column: str = "partition_date",
    ) -> int:
        """Rows of ``table`` in ``window`` (all rows when ``None``), counted by the engine."""
        frame = nw.from_native(self.read(table, window, partition_column))
        counted = frame.select(nw.len())
        return int((counted.collect() if isinstance(counted, nw.LazyFrame) else counted).item())

    def count_rows_by_day(
        self, table: str, window: DateWindow, partition_column: str = "partition_date"
    ) -> dict[date, int]:
        """Rows of ``table`` per day of ``window`` (days without rows are absent); 0 rows when
        the table does not exist yet."""
        if not self.exists(table):
            return {}
        frame = nw.from_native(self.read(table, window, partition_column, [partition_column]))
        counted = frame.group_by(partition_column).agg(nw.len().alias("rows"))
        if isinstance(counted, nw.LazyFrame):
            counted = counted.collect()
        return {_as_date(day): int(rows) for day, rows in counted.iter_rows()}

    def upkeep(self, table: str, retention_hours: int, small_file_bytes: int) -> Upkeep:
        """Compact ``table``'s small files and delete the files no version newer than
        ``retention_hours`` reads. Stores without such a thing say why they skipped it."""
        return Upkeep(table, skipped=f"{type(self).__name__} does not compact or vacuum tables")

    @abstractmethod
    def location(self, table: str) -> str:
        """Where a person finds the table: a path locally, a catalog name on Databricks."""


class TableNotFound(LookupError):
    pass


class SchemaMismatch(ValueError):
    pass
