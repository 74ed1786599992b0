"""The table store on a Spark session: the same contract as ``DeltaTableStore``, on PySpark.

Two layouts, chosen by ``format``:

``format="parquet"`` (the local ``spark`` environment)
    Table ``"bronze.payments"`` is the directory ``<root>/bronze/payments``, partitioned by its
    ``Date`` column in Hive-style directories (``payment_date=2024-01-01/``). A window is replaced
    with *dynamic partition overwrite*: only the days present in the frame are rewritten, so days
    outside the window are never touched. The table's schema and partition column are kept in a
    small ``_churn_table.json`` beside the data (Spark ignores files starting with ``_``), because
    Parquet alone cannot say what an empty table looks like, nor which columns a later write
    added (without ``mergeSchema`` Spark reads the schema of one file and silently drops the rest).
    Delta on local Spark would need ``delta-spark``'s Maven jars, which these machines cannot
    reach, so local Spark writes Parquet. This layout manages directories through Hadoop's
    FileSystem API on the JVM, so it needs a classic (not Spark Connect) session. It is not
    transactional: one writer per table at a time, which the in-process executor gives.

``format="delta"`` (Databricks, Unity Catalog)
    Table ``"bronze.payments"`` is the table ``<catalog>.<schema_prefix>bronze.payments`` (each
    part backtick-quoted).
    A window is replaced in one Delta commit with ``replaceWhere`` over the *whole* window
    (``col >= start AND col < end``, never an equality on the start: see DESIGN.md), and
    ``mergeSchema`` is passed only when the caller allowed new columns and there are some.
    This path cannot run here (no workspace); the pieces it is built from that need no Delta --
    names, the predicate, the writer options -- are small pure functions with their own tests.

pyspark is imported lazily, so importing this module needs neither pyspark nor Java.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
import narwhals as nw
import polars as pl
from pydantic import Field, PrivateAttr

from churn_assets.resources.delta import _delta_types
from churn_assets.resources.spark.layout import (
    META_FILE,
    URI,
    check_column,
    delta_write_options,
    parquet_location,
    parquet_write_options,
    partition_directory_name,
    unity_catalog_name,
)
from churn_assets.resources.spark.session import session_for
from churn_assets.resources.store import (
    DateWindow,
    FileHealth,
    SchemaMismatch,
    TableNotFound,
    TableStore,
    Upkeep,
    WriteResult,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType


# ── The store ────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _TableInfo:
    schema: "StructType"
    partition_columns: list[str]


class SparkTableStore(TableStore):
    """Daily-partitioned tables on Spark: Parquet directories locally, Unity Catalog Delta tables
    on Databricks. Reads return lazy Spark DataFrames; writes accept Polars, narwhals or Spark
    frames (Polars goes through Arrow; naive timestamps are taken as UTC, as in the Delta store).
    """

    format: Literal["parquet", "delta"] = Field(
        "parquet",
        description="'parquet': Hive-partitioned directories under root (local Spark). "
        "'delta': Unity Catalog tables catalog.<schema_prefix><layer>.<table> (Databricks).",
    )
    root: str | None = Field(
        None, description="format='parquet': the lake directory (or a Hadoop URI)."
    )
    catalog: str | None = Field(None, description="format='delta': the Unity Catalog catalog.")
    schema_prefix: str = Field(
        "", description="format='delta': prepended to the layer to name the schema."
    )
    spark: dg.ConfigurableResource | None = Field(
        None,
        description="The resource owning the session (PySparkResource, DatabricksConnect: "
        "anything with .spark_session). None: the process's active or default session.",
    )
    _session: Any = PrivateAttr(default=None)

    # ── the session ──

    @property
    def spark_session(self) -> "SparkSession":
        if self._session is None:
            self._session = session_for(self.spark)
        return self._session

    # ── names ──

    def location(self, table: str) -> str:
        if self.format == "delta":
            if not self.catalog:
                raise ValueError("SparkTableStore(format='delta') needs a catalog")
            return unity_catalog_name(self.catalog, self.schema_prefix, table)
        if not self.root:
            raise ValueError("SparkTableStore(format='parquet') needs a root directory")
        return parquet_location(self.root, table)

    def _uri(self, table: str) -> str:
        location = self.location(table)
        return location if URI.match(location) else Path(location).as_uri()

    # ── reads ──

    def exists(self, table: str) -> bool:
        return self._info(table) is not None

    def read(
        self,
        table: str,
        window: DateWindow | None = None,
        partition_column: str = "partition_date",
        columns: list[str] | None = None,
    ) -> "DataFrame":
        from pyspark.sql.types import DateType

        info = self._info(table)
        if info is None:
            raise TableNotFound(
                f"table {table!r} does not exist at {self.location(table)}: materialize the asset "
                "that writes it first"
            )
        frame = self._scan(table, info)
        if window is not None:
            field = next((f for f in info.schema.fields if f.name == partition_column), None)
            if field is None or not isinstance(field.dataType, DateType):
                raise SchemaMismatch(
                    f"cannot read a window of {table!r}: its column {partition_column!r} is "
                    f"{field.dataType.simpleString() if field else 'missing'}, not date "
                    f"(columns: {info.schema.names})"
                )
            frame = frame.where(_in_window(partition_column, window))
        return frame.select(*[_col(c) for c in columns]) if columns else frame

    def count_rows(
        self,
        table: str,
        window: DateWindow | None = None,
        partition_column: str = "partition_date",
    ) -> int:
        return self.read(table, window, partition_column).count()

    # ── writes ──

    def replace_window(
        self,
        table: str,
        frame: Any,
        window: DateWindow,
        partition_column: str = "partition_date",
        allow_new_columns: bool = False,
    ) -> WriteResult:
        from pyspark.sql.types import DateType

        check_column(partition_column)
        data = self._to_spark(frame)
        dtype = next((f.dataType for f in data.schema.fields if f.name == partition_column), None)
        if not isinstance(dtype, DateType):
            # A string or datetime partition column is how dagster-deltalake-polars silently
            # overwrote whole tables: refuse it rather than guess.
            raise SchemaMismatch(
                f"cannot write {table!r}: partition column {partition_column!r} is "
                f"{dtype.simpleString() if dtype else 'missing from the frame'}, it must be Date. "
                f"Cast it first, e.g. F.to_date({partition_column!r}) or "
                f"pl.col({partition_column!r}).dt.date()."
            )
        info = self._info(table)
        aligned, new_columns, schema = _align(
            table, self.location(table), data, info, partition_column, allow_new_columns,
            self.format == "delta",
        )
        # One pass over the frame: its size, rows outside the window, and the days it fills.
        rows, outside, example, days = _window_stats(data, partition_column, window)
        if outside:
            raise ValueError(
                f"cannot write {table!r}: {outside} of {rows} rows have {partition_column} "
                f"outside the window {window} (e.g. {example}); filter the frame or widen the window"
            )
        if self.format == "delta":
            version = self._delta_replace(table, aligned, info, window, partition_column,
                                          new_columns, allow_new_columns)
        else:
            self._parquet_replace(table, aligned, info, schema, window, partition_column,
                                  set(days), new_columns)
            version = None
        return WriteResult(table, rows, window, version, new_columns)

    def append(self, table: str, frame: Any, allow_new_columns: bool = False) -> WriteResult:
        data = self._to_spark(frame)
        info = self._info(table)
        aligned, new_columns, schema = _align(
            table, self.location(table), data, info, None, allow_new_columns,
            self.format == "delta",
        )
        rows = aligned.count()
        partitioned_by = info.partition_columns if info else []
        if self.format == "delta":
            writer = aligned.write.format("delta").mode("append")
            options = delta_write_options(allow_new_columns=bool(new_columns))
            writer.options(**options).saveAsTable(self.location(table))
            return WriteResult(table, rows, None, self._delta_version(table), new_columns)
        fs, uri = _HadoopFS(self.spark_session), self._uri(table)
        if info is not None and new_columns:
            _save_meta(fs, uri, schema, partitioned_by)  # readers must know the new columns first
        writer = aligned.write.mode("append")
        if partitioned_by:
            writer = writer.partitionBy(*partitioned_by)
        writer.parquet(uri)
        if info is None:
            _save_meta(fs, uri, schema, partitioned_by)
        return WriteResult(table, rows, None, None, new_columns)

    def overwrite(self, table: str, frame: Any) -> WriteResult:
        """Replace the whole table, schema included: the frame's schema becomes the table's."""
        data = self._to_spark(frame)
        _refuse_untyped(table, data.schema, data.columns)
        rows = data.count()
        if self.format == "delta":
            (
                data.write.format("delta")
                .mode("overwrite")
                .options(**delta_write_options(replace_schema=True))
                .saveAsTable(self.location(table))
            )
            return WriteResult(table, rows, None, self._delta_version(table))
        fs, uri = _HadoopFS(self.spark_session), self._uri(table)
        # Static overwrite deletes the whole directory (old partitions and metadata included).
        data.write.mode("overwrite").option("partitionOverwriteMode", "static").parquet(uri)
        _save_meta(fs, uri, _nullable(data.schema), [])
        return WriteResult(table, rows, None, None)

    # ── the two layouts ──

    def _info(self, table: str) -> _TableInfo | None:
        session = self.spark_session
        if self.format == "delta":
            name = self.location(table)
            if not session.catalog.tableExists(name):
                return None
            detail = session.sql(f"DESCRIBE DETAIL {name}").select("partitionColumns").first()
            return _TableInfo(session.table(name).schema, list(detail[0] or []))
        fs, uri = _HadoopFS(session), self._uri(table)
        meta_path = f"{uri}/{META_FILE}"
        if not fs.exists(meta_path):
            return None
        from pyspark.sql.types import StructType

        meta = json.loads(fs.read_text(meta_path))
        return _TableInfo(StructType.fromJson(meta["schema"]), list(meta["partition_columns"]))

    def _scan(self, table: str, info: _TableInfo) -> "DataFrame":
        session = self.spark_session
        if self.format == "delta":
            return session.table(self.location(table))
        # The recorded schema names every column (files written before a column was added read
        # it as null) and types the partition column, which Spark would otherwise infer from
        # directory names. Spark moves partition columns last: select restores the table's order.
        frame = session.read.schema(info.schema).parquet(self._uri(table))
        return frame.select(*[_col(c) for c in info.schema.names])

    def _parquet_replace(
        self,
        table: str,
        frame: "DataFrame",
        info: _TableInfo | None,
        schema: "StructType",
        window: DateWindow,
        partition_column: str,
        days_with_rows: set[date],
        new_columns: tuple[str, ...],
    ) -> None:
        fs, uri = _HadoopFS(self.spark_session), self._uri(table)
        if info is not None and new_columns:
            _save_meta(fs, uri, schema, [partition_column])  # readers must know them first
        (
            frame.write.mode("overwrite")
            .options(**parquet_write_options())
            .partitionBy(partition_column)
            .parquet(uri)
        )
        # Dynamic partition overwrite only rewrites the partitions that appear in the frame: a day
        # of the window with no rows now (an empty frame, or a day whose rows all went away) would
        # keep its old files and the window would not be replaced. Delete those days' directories
        # through Hadoop FS. (Writing the whole window back with a filter would read and rewrite
        # every day; deleting touches only the empty days.) Deleting after the write means a crash
        # in between leaves stale days, never lost ones; rerunning the window repairs it.
        stale = {
            partition_directory_name(partition_column, day)
            for day in window.days
            if day not in days_with_rows
        }
        for name in fs.children(uri):
            if name in stale:
                fs.delete(f"{uri}/{name}")
        if info is None:
            _save_meta(fs, uri, schema, [partition_column])

    def _delta_replace(
        self,
        table: str,
        frame: "DataFrame",
        info: _TableInfo | None,
        window: DateWindow,
        partition_column: str,
        new_columns: tuple[str, ...],
        allow_new_columns: bool,
    ) -> int | None:
        from pyspark.errors import AnalysisException

        name = self.location(table)
        if info is None:
            # A new table: create it partitioned by the Date column. "errorifexists" makes a run
            # that lost a creation race fail here instead of writing over the winner's window.
            try:
                frame.write.format("delta").mode("errorifexists").partitionBy(
                    partition_column
                ).saveAsTable(name)
                return self._delta_version(table)
            except AnalysisException as error:
                if "ALREADY_EXISTS" not in str(error).upper().replace(" ", "_"):
                    raise
                info = self._info(table)
                # Lost the race: align with the winner's table and replace our window in it.
                frame, new_columns, _ = _align(
                    table, name, frame, info, partition_column, allow_new_columns, True
                )
        options = delta_write_options(window, partition_column, allow_new_columns=bool(new_columns))
        frame.write.format("delta").mode("overwrite").options(**options).saveAsTable(name)
        return self._delta_version(table)

    def upkeep(self, table: str, retention_hours: int, small_file_bytes: int) -> Upkeep:
        """On Databricks, ``OPTIMIZE`` and ``VACUUM … RETAIN n HOURS`` (a retention under the
        table's 7 days is refused there unless the workspace disables its retention check).
        Local Spark writes plain Parquet: a window is replaced by deleting its partition's
        files, so there is no log of old files to vacuum, and nothing is done."""
        if self.format != "delta":
            return Upkeep(table, skipped="local Spark tables are plain Parquet: replacing a "
                          "window deletes its old files, so there is nothing to vacuum, and "
                          "compaction (OPTIMIZE) needs Delta")
        if not self.exists(table):
            return Upkeep(table, skipped="the table does not exist yet")
        name, session = self.location(table), self.spark_session
        before = self._delta_health(name)
        optimized = session.sql(f"OPTIMIZE {name}").first()
        metrics = optimized["metrics"] if optimized is not None else None
        session.sql(f"VACUUM {name} RETAIN {int(retention_hours)} HOURS").collect()
        return Upkeep(table, before, self._delta_health(name),
                      files_compacted=int(metrics["numFilesRemoved"]) if metrics else 0,
                      files_written=int(metrics["numFilesAdded"]) if metrics else 0)

    def _delta_health(self, name: str) -> FileHealth:
        detail = self.spark_session.sql(f"DESCRIBE DETAIL {name}").first()
        return FileHealth(int(detail["numFiles"]), None, int(detail["sizeInBytes"]))

    def _delta_version(self, table: str) -> int | None:
        """The table's latest version after our write (a concurrent writer may have followed)."""
        row = self.spark_session.sql(f"DESCRIBE HISTORY {self.location(table)} LIMIT 1").first()
        return None if row is None else int(row["version"])

    # ── frames ──

    def _to_spark(self, frame: Any) -> "DataFrame":
        from pyspark.sql import DataFrame
        from pyspark.sql.types import TimestampNTZType

        native = nw.to_native(frame, pass_through=True)  # transforms may hand over narwhals frames
        if isinstance(native, pl.LazyFrame):
            native = native.collect()
        if isinstance(native, pl.DataFrame):
            # UTC microsecond timestamps, no Categorical or unsigned types (Spark has neither),
            # exactly as the Delta store stores them; then Arrow, which keeps the time zone.
            table = _delta_types(native).to_arrow()
            try:
                return self.spark_session.createDataFrame(table)
            except TypeError:  # a Spark (Connect) client older than 4.0 takes no Arrow table
                return self.spark_session.createDataFrame(table.to_pandas())
        if isinstance(native, DataFrame):
            naive = [f.name for f in native.schema.fields
                     if isinstance(f.dataType, TimestampNTZType)]
            if naive:  # taken as UTC, like naive Polars datetimes (the session is UTC)
                native = native.withColumns({c: _col(c).cast("timestamp") for c in naive})
            return native
        raise TypeError(
            "SparkTableStore writes Spark, Polars or narwhals frames, got "
            f"{type(native).__name__}"
        )


# ── Helpers ──────────────────────────────────────────────────────────────────────────────────────


def _col(name: str) -> "Column":
    """A column by its exact name (dots in a name are not struct access)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _in_window(column: str, window: DateWindow) -> "Column":
    from pyspark.sql import functions as F

    return (_col(column) >= F.lit(window.start)) & (_col(column) < F.lit(window.end))


def _window_stats(
    frame: "DataFrame", partition_column: str, window: DateWindow
) -> tuple[int, int, str | None, list[date]]:
    """Rows, rows outside the window (null days count as outside), an example, days with rows."""
    from pyspark.sql import functions as F

    column = _col(partition_column)
    inside = F.coalesce(_in_window(partition_column, window), F.lit(False))
    row = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(~inside, F.lit(1))).alias("outside"),
        F.min(F.when(~inside, F.coalesce(column.cast("string"), F.lit("null")))).alias("example"),
        F.collect_set(F.when(inside, column)).alias("days"),
    ).first()
    return int(row["rows"]), int(row["outside"]), row["example"], list(row["days"])


def _nullable(schema: "StructType") -> "StructType":
    # File sources read every column as nullable; record them so, so reads compare equal.
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(f.name, f.dataType, True) for f in schema.fields])


def _align(
    table: str,
    where: str,
    frame: "DataFrame",
    info: _TableInfo | None,
    partition_column: str | None,
    allow_new_columns: bool,
    unpartitioned_ok: bool,
) -> tuple["DataFrame", tuple[str, ...], "StructType"]:
    """The frame in the table's column order, missing columns as typed nulls, plus new columns;
    the new columns; and the table's schema after the write."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NullType, StructField, StructType

    if info is None:
        _refuse_untyped(table, frame.schema, frame.columns)
        return frame, (), _nullable(frame.schema)
    # replaceWhere works on any column, so a Delta table Databricks clusters instead of
    # partitioning (liquid clustering: no partition columns) is fine; Parquet needs the directories.
    allowed = [[partition_column]] + ([[]] if unpartitioned_ok else [])
    if partition_column and info.partition_columns not in allowed:
        raise SchemaMismatch(
            f"{table!r} at {where} is partitioned by {info.partition_columns}, "
            f"not [{partition_column!r}]"
        )
    table_types = {f.name: f.dataType for f in info.schema.fields}
    frame_types = {f.name: f.dataType for f in frame.schema.fields}
    new_columns = tuple(c for c in frame.columns if c not in table_types)
    if new_columns and not allow_new_columns:
        raise SchemaMismatch(
            f"{table!r} at {where} has no columns {list(new_columns)}: pass allow_new_columns=True "
            f"to add them, or drop them (table columns: {list(table_types)})"
        )
    _refuse_untyped(table, frame.schema, new_columns)
    changed = [
        f"{c!r} is {table_types[c].simpleString()} in the table but {dtype.simpleString()} "
        "in the frame"
        for c, dtype in frame_types.items()
        if c in table_types
        and dtype.simpleString() != table_types[c].simpleString()  # nullability aside
        and not isinstance(dtype, NullType)
    ]
    if changed:
        raise SchemaMismatch(
            f"type change in {table!r} at {where}: {'; '.join(changed)}. Cast the frame to the "
            "table's types, or migrate the table deliberately."
        )
    aligned = frame.select(
        *(
            (_col(c) if frame_types[c] == dtype else _col(c).cast(dtype)).alias(c)
            if c in frame_types
            else F.lit(None).cast(dtype).alias(c)
            for c, dtype in table_types.items()
        ),
        *(_col(c) for c in new_columns),
    )
    schema = StructType(
        [
            *(StructField(f.name, f.dataType, True) for f in info.schema.fields),
            *(StructField(c, frame_types[c], True) for c in new_columns),
        ]
    )
    return aligned, new_columns, schema


def _refuse_untyped(table: str, schema: "StructType", columns: Any) -> None:
    # An all-null column of type void could never be filled by a later write.
    from pyspark.sql.types import NullType

    types = {f.name: f.dataType for f in schema.fields}
    untyped = [c for c in columns if isinstance(types[c], NullType)]
    if untyped:
        raise SchemaMismatch(
            f"cannot add columns {untyped} to {table!r}: they have no type (void); cast them"
        )


def _save_meta(fs: "_HadoopFS", uri: str, schema: "StructType", partition_columns: list[str]):
    meta = {"version": 1, "partition_columns": partition_columns, "schema": schema.jsonValue()}
    fs.write_text(f"{uri}/{META_FILE}", json.dumps(meta, indent=1))


class _HadoopFS:
    """The few file operations the Parquet layout needs, through Hadoop's FileSystem on the JVM,
    so a root on HDFS or an object store (s3a://, abfss://) works like a local directory."""

    def __init__(self, session: "SparkSession") -> None:
        try:
            context = session.sparkContext
            self._jvm = context._jvm
            self._conf = context._jsc.hadoopConfiguration()
        except Exception as error:  # Spark Connect: no JVM on this side
            raise RuntimeError(
                "SparkTableStore(format='parquet') manages partition directories through Hadoop "
                "FS, which needs a classic (JVM) Spark session; on Spark Connect or Databricks "
                "use format='delta'"
            ) from error

    def _resolve(self, path: str) -> tuple[Any, Any]:
        jpath = self._jvm.org.apache.hadoop.fs.Path(path)
        return jpath.getFileSystem(self._conf), jpath

    def exists(self, path: str) -> bool:
        fs, jpath = self._resolve(path)
        return bool(fs.exists(jpath))

    def delete(self, path: str) -> None:
        fs, jpath = self._resolve(path)
        fs.delete(jpath, True)

    def children(self, path: str) -> list[str]:
        fs, jpath = self._resolve(path)
        if not fs.exists(jpath):
            return []
        return [status.getPath().getName() for status in fs.listStatus(jpath)]

    def read_text(self, path: str) -> str:
        fs, jpath = self._resolve(path)
        stream = fs.open(jpath)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode()
        finally:
            stream.close()

    def write_text(self, path: str, text: str) -> None:
        # Write a temporary file, then rename: a reader never sees a half-written file.
        fs, jpath = self._resolve(path)
        _, temporary = self._resolve(f"{path}.{uuid.uuid4().hex}.tmp")
        stream = fs.create(temporary, True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        fs.delete(jpath, False)  # rename does not replace an existing file on every file system
        if not fs.rename(temporary, jpath):
            raise OSError(f"could not write {path}")
