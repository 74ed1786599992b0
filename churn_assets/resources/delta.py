"""The table store on Delta Lake, read and written with Polars, on local disk or an object store.

Table ``"bronze.payments"`` lives at ``<root>/bronze/payments``. A partitioned table is partitioned
by a ``Date`` column, and ``replace_window`` overwrites exactly its window in one commit: a predicate
over the *whole* window, never an equality on its start. That is where dagster-deltalake-polars
0.29.27 loses data (see DESIGN.md), so this store does not use its IO manager.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any, Literal

import narwhals as nw
import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.exceptions import SchemaMismatchError as DeltaSchemaMismatchError
from pydantic import Field

from churn_assets.resources.store import (
    DateWindow,
    FileHealth,
    SchemaMismatch,
    TableNotFound,
    TableStore,
    Upkeep,
    WriteResult,
)

_TABLE_NAME = re.compile(r"([a-z][a-z0-9_]*)\.([a-z_][a-z0-9_]*)")
# Partition columns go into a SQL predicate: plain identifiers only, so quoting is enough.
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# delta-rs already retries commits that do not conflict (different windows of one table commit
# side by side). What reaches us as CommitFailedError is a logical conflict: two runs creating the
# table at once ("Protocol changed"), or a schema change committed while we wrote ("Metadata
# changed"). Re-reading the table and rebuilding the write is then safe, so retry a few times.
COMMIT_ATTEMPTS = 6
FIRST_BACKOFF_SECONDS = 0.2

# Delta has no unsigned integers: widen them so the value survives and the type reads back the same.
_SIGNED = {pl.UInt8: pl.Int16, pl.UInt16: pl.Int32, pl.UInt32: pl.Int64, pl.UInt64: pl.Int64}


class DeltaTableStore(TableStore):
    """Delta tables under one root, read lazily with ``pl.scan_delta`` and written with delta-rs.

    Timestamps are stored UTC-aware (``Datetime("us", "UTC")``); naive datetimes are taken as UTC.
    """

    root: str = Field(
        description="The lake: a directory, or an object-store URI such as s3://bucket/lake."
    )
    storage_options: dict[str, str] | None = Field(
        default=None,
        description="delta-rs storage options for object stores (credentials via dg.EnvVar).",
    )

    def location(self, table: str) -> str:
        layer, name = _split(table)
        if "://" in self.root:
            return f"{self.root.rstrip('/')}/{layer}/{name}"
        return str(Path(self.root).expanduser().resolve() / layer / name)

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.location(table), self.storage_options)

    def read(
        self,
        table: str,
        window: DateWindow | None = None,
        partition_column: str = "partition_date",
        columns: list[str] | None = None,
    ) -> pl.LazyFrame:
        delta = self._load(table)
        if delta is None:
            raise TableNotFound(
                f"table {table!r} does not exist at {self.location(table)}: materialize the asset "
                "that writes it first"
            )
        # Scanning the loaded DeltaTable pins this read to one version and keeps its storage options.
        frame = pl.scan_delta(delta)
        if window is not None:
            dtype = frame.collect_schema().get(partition_column)
            if dtype != pl.Date:
                raise SchemaMismatch(
                    f"cannot read a window of {table!r}: its column {partition_column!r} is "
                    f"{dtype or 'missing'}, not Date (columns: {frame.collect_schema().names()})"
                )
            frame = frame.filter(_in_window(partition_column, window))
        return frame.select(columns) if columns else frame

    def replace_window(
        self,
        table: str,
        frame: Any,
        window: DateWindow,
        partition_column: str = "partition_date",
        allow_new_columns: bool = False,
    ) -> WriteResult:
        frame = _collect(frame)
        if not _COLUMN_NAME.fullmatch(partition_column):
            raise ValueError(f"partition column {partition_column!r} must be a plain identifier")
        dtype = frame.schema.get(partition_column)
        if dtype != pl.Date:
            # A string or datetime partition column is how dagster-deltalake-polars silently
            # overwrote whole tables: refuse it rather than guess.
            raise SchemaMismatch(
                f"cannot write {table!r}: partition column {partition_column!r} is "
                f"{dtype or 'missing from the frame'}, it must be Date. Cast it first, e.g. "
                f"pl.col({partition_column!r}).str.to_date() or .dt.date()."
            )
        outside = frame.filter(~_in_window(partition_column, window).fill_null(False))
        if outside.height:
            raise ValueError(
                f"cannot write {table!r}: {outside.height} of {frame.height} rows have "
                f"{partition_column} outside the window {window} (e.g. "
                f"{outside[partition_column][0]}); filter the frame or widen the window"
            )
        predicate = (
            f"\"{partition_column}\" >= '{window.start.isoformat()}' "
            f"AND \"{partition_column}\" < '{window.end.isoformat()}'"
        )
        return self._write(
            table,
            frame,
            "overwrite",
            window=window,
            predicate=predicate,
            partition_column=partition_column,
            allow_new_columns=allow_new_columns,
        )

    def append(self, table: str, frame: Any, allow_new_columns: bool = False) -> WriteResult:
        return self._write(table, _collect(frame), "append", allow_new_columns=allow_new_columns)

    def overwrite(self, table: str, frame: Any) -> WriteResult:
        """Replace the whole table, schema included: the frame's schema becomes the table's."""
        return self._write(table, _collect(frame), "overwrite", replace_schema=True)

    def upkeep(self, table: str, retention_hours: int, small_file_bytes: int) -> Upkeep:
        """Bin-pack small files into larger ones (a commit that changes no data: readers see
        the same rows), then delete files that no version of the last ``retention_hours``
        reads. A commit conflict with a concurrent write is reported, not retried: the next
        upkeep compacts what this one left."""
        delta = self._load(table)
        if delta is None:
            return Upkeep(table, skipped="the table does not exist yet")
        before = _file_health(delta, small_file_bytes)
        try:
            compacted = delta.optimize.compact()
            # The retention is ours to set ([maintenance] vacuum_retention_hours), so the
            # table's own minimum (7 days by default) does not override it.
            vacuumed = delta.vacuum(retention_hours=retention_hours, dry_run=False,
                                    enforce_retention_duration=False)
        except CommitFailedError as error:
            return Upkeep(table, before, skipped=f"a concurrent write won the commit: {error}")
        after = _file_health(self._load(table), small_file_bytes)
        written = int(compacted["numFilesAdded"])
        # delta-rs lists a tombstone's file again on every vacuum until the tombstone leaves
        # the log, deleted or not: where the files are countable, count what really went.
        gone = (before.files_on_disk + written - after.files_on_disk
                if before.files_on_disk is not None and after.files_on_disk is not None
                else len(vacuumed))
        return Upkeep(table, before, after, files_compacted=int(compacted["numFilesRemoved"]),
                      files_written=written, files_vacuumed=gone)

    def _load(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.location(table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def _write(
        self,
        table: str,
        frame: pl.DataFrame,
        mode: Literal["append", "overwrite"],
        *,
        window: DateWindow | None = None,
        predicate: str | None = None,
        partition_column: str | None = None,
        allow_new_columns: bool = False,
        replace_schema: bool = False,
    ) -> WriteResult:
        uri = self.location(table)
        frame = _delta_types(frame)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            # Re-read the table on every attempt: a retry must align with what the winner committed.
            delta = self._load(table)
            if delta is None or replace_schema:
                _refuse_untyped(table, frame, frame.columns)
                data, new_columns = frame, ()
            else:
                data, new_columns = _align(
                    table, uri, frame, delta, partition_column, allow_new_columns
                )
            schema_mode = "overwrite" if replace_schema else "merge" if new_columns else None
            try:
                # Writing through the loaded DeltaTable makes delta-rs check for conflicts against
                # the version we aligned with, and leaves `delta` at the version we committed.
                write_deltalake(
                    delta if delta is not None else uri,
                    data.to_arrow(),
                    mode=mode,
                    predicate=predicate,
                    partition_by=[partition_column] if partition_column else None,
                    schema_mode=schema_mode,
                    storage_options=self.storage_options,
                )
            except (CommitFailedError, DeltaSchemaMismatchError) as error:
                # A Delta schema error is only a lost race when the table appeared after we looked.
                conflict = isinstance(error, CommitFailedError) or (
                    delta is None and self.exists(table)
                )
                if not conflict or attempt == COMMIT_ATTEMPTS:
                    raise
                time.sleep(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
                continue
            if delta is None:
                delta = DeltaTable(uri, storage_options=self.storage_options)
            return WriteResult(table, frame.height, window, delta.version(), new_columns)
        raise AssertionError("unreachable")  # the loop returns or raises


def _file_health(delta: DeltaTable, small_file_bytes: int) -> FileHealth:
    sizes = pl.DataFrame(delta.get_add_actions(flatten=True))
    uri = delta.table_uri
    # Only a local table is listed: on an object store a listing is a paid, slow call per page.
    local = Path(uri.removeprefix("file://")) if "://" not in uri or uri.startswith("file://") \
        else None
    on_disk = (sum(1 for f in local.rglob("*.parquet") if "_delta_log" not in f.parts)
               if local is not None else None)
    if sizes.height == 0:
        return FileHealth(0, 0, 0, on_disk)
    size = sizes["size_bytes"]
    return FileHealth(sizes.height, int((size < small_file_bytes).sum()), int(size.sum()),
                      on_disk)


def _split(table: str) -> tuple[str, str]:
    match = _TABLE_NAME.fullmatch(table)
    if not match:
        raise ValueError(
            f"table name {table!r} must be '<layer>.<table>' in lower snake case, e.g. 'bronze.payments'"
        )
    return match.group(1), match.group(2)


def _in_window(column: str, window: DateWindow) -> pl.Expr:
    return (pl.col(column) >= window.start) & (pl.col(column) < window.end)


def _collect(frame: Any) -> pl.DataFrame:
    frame = nw.to_native(frame, pass_through=True)  # transforms may hand over narwhals frames
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise TypeError(f"DeltaTableStore writes Polars frames, got {type(frame).__name__}")


def _delta_types(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to the types Delta stores, so a frame compares equal to what its table reads back."""
    casts = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            utc = (
                column.dt.replace_time_zone("UTC")
                if dtype.time_zone is None
                else column.dt.convert_time_zone("UTC")
            )
            casts.append(utc.dt.cast_time_unit("us"))
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            casts.append(column.cast(pl.String))
        elif dtype.base_type() in _SIGNED:
            casts.append(column.cast(_SIGNED[dtype.base_type()]))  # strict: overflow raises
    return frame.with_columns(casts) if casts else frame


def _align(
    table: str,
    uri: str,
    frame: pl.DataFrame,
    delta: DeltaTable,
    partition_column: str | None,
    allow_new_columns: bool,
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """The frame in the table's column order, missing columns as typed nulls, plus new columns."""
    schema = pl.scan_delta(delta).collect_schema()
    partitioned_by = delta.metadata().partition_columns
    if partition_column and partitioned_by != [partition_column]:
        raise SchemaMismatch(
            f"{table!r} at {uri} is partitioned by {partitioned_by}, not [{partition_column!r}]"
        )
    new_columns = tuple(c for c in frame.columns if c not in schema)
    if new_columns and not allow_new_columns:
        raise SchemaMismatch(
            f"{table!r} at {uri} has no columns {list(new_columns)}: pass allow_new_columns=True "
            f"to add them, or drop them (table columns: {schema.names()})"
        )
    _refuse_untyped(table, frame, new_columns)
    changed = [
        f"{c!r} is {schema[c]} in the table but {dtype} in the frame"
        for c, dtype in frame.schema.items()
        if c in schema and dtype != schema[c] and dtype != pl.Null
    ]
    if changed:
        raise SchemaMismatch(
            f"type change in {table!r} at {uri}: {'; '.join(changed)}. Cast the frame to the "
            "table's types, or migrate the table deliberately."
        )
    aligned = frame.select(
        *(
            pl.col(c).cast(dtype) if c in frame.columns else pl.lit(None, dtype).alias(c)
            for c, dtype in schema.items()
        ),
        *new_columns,
    )
    return aligned, new_columns


def _refuse_untyped(table: str, frame: pl.DataFrame, columns: Any) -> None:
    # An all-null column of type Null would become a Delta "void" column no later write can fill.
    untyped = [c for c in columns if frame.schema[c] == pl.Null]
    if untyped:
        raise SchemaMismatch(
            f"cannot add columns {untyped} to {table!r}: they have no type (pl.Null); cast them"
        )
