"""The only engine-specific code of the transforms: a few helpers that dispatch on the backend.

Everything else is narwhals. These exist because the engines disagree where narwhals cannot
hide it (each verified on polars 2.1 / pyspark 4.3 and covered by the parity test):

- Spark 4 runs with ANSI mode on, so ``cast`` of a bad string *raises* instead of giving null,
  and Polars' strict ``cast`` raises too. Parsing uses ``try_cast`` / ``strict=False``. Silver
  first checks the text's shape with a regex on both engines, so both accept the same strings.
- Timestamps with offsets: the callers hand over one normalized form
  (``YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM``), parsed by an explicit format on each engine.
- A UTC date: Spark's ``to_date`` works in the session time zone, so it goes through epoch
  micros, which do not depend on it. (Casting a datetime to Int64 gives seconds on Spark but
  microseconds on Polars: never do that in narwhals code.)
- SHA-256: Spark has ``sha2``; Polars has no SHA-256, so it hashes in Python per batch.
- Materializing once: Polars collects the classified frame so the three outputs share it.
"""

from __future__ import annotations

import hashlib

import narwhals as nw
import polars as pl

POLARS_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"
# Spark's offset pattern is three X letters (+HH:MM or Z); spelled out so linters for
# leftover-work markers do not mistake it for one.
SPARK_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]" + "X" * 3
MICROS_PER_DAY = 86_400_000_000


class UnsupportedEngineError(TypeError):
    pass


def backend(frame: nw.LazyFrame | nw.DataFrame) -> str:
    """``"polars"`` or ``"spark"`` (classic PySpark, Spark Connect and Databricks Connect)."""
    impl = frame.implementation
    if impl.is_polars():
        return "polars"
    if impl.is_pyspark() or impl.is_pyspark_connect():
        return "spark"
    raise UnsupportedEngineError(f"silver transforms run on Polars or PySpark, not {impl}")


def _spark_functions():
    from pyspark.sql import functions as F  # noqa: N812 - the conventional name

    return F


def _with_native(frame: nw.LazyFrame, polars_exprs, spark_exprs) -> nw.LazyFrame:
    """Add native columns ``{name: expr}`` built by the engine's factory function."""
    native = frame.to_native()
    if backend(frame) == "polars":
        return nw.from_native(native.with_columns(**polars_exprs()))
    return nw.from_native(native.withColumns(spark_exprs(_spark_functions())))


def parse_numbers(frame: nw.LazyFrame, columns: dict[str, str], dtype: str) -> nw.LazyFrame:
    """``{out: text_column}``: text to ``"float"`` (Float64) or ``"int"`` (Int64); null when
    the text does not parse (never an error, whatever the engine's ANSI setting)."""
    polars_type, spark_type = {"float": (pl.Float64, "double"), "int": (pl.Int64, "bigint")}[dtype]
    return _with_native(
        frame,
        lambda: {out: pl.col(src).cast(polars_type, strict=False) for out, src in columns.items()},
        lambda F: {out: F.col(src).try_cast(spark_type) for out, src in columns.items()},
    )


def parse_utc_timestamps(frame: nw.LazyFrame, columns: dict[str, str]) -> nw.LazyFrame:
    """``{out: text_column}``: normalized ISO-8601 text with an explicit offset to a UTC
    ``Datetime("us")``; null when it is not a real instant (``2026-02-30``)."""
    return _with_native(
        frame,
        lambda: {
            out: pl.col(src).str.to_datetime(
                POLARS_TIMESTAMP_FORMAT, time_unit="us", time_zone="UTC", strict=False
            )
            for out, src in columns.items()
        },
        lambda F: {
            out: F.try_to_timestamp(F.col(src), F.lit(SPARK_TIMESTAMP_FORMAT))
            for out, src in columns.items()
        },
    )


def utc_date(frame: nw.LazyFrame, column: str, out: str) -> nw.LazyFrame:
    """The UTC calendar date of a timestamp column, whatever the session's time zone."""
    return _with_native(
        frame,
        lambda: {out: pl.col(column).dt.convert_time_zone("UTC").dt.date()},
        lambda F: {
            out: F.date_from_unix_date(
                F.floor(F.unix_micros(F.col(column)) / F.lit(MICROS_PER_DAY)).cast("int")
            )
        },
    )


def keyed_sha256(
    frame: nw.LazyFrame, column: str, key: str, alias: str | None = None
) -> nw.LazyFrame:
    """Hex SHA-256 of ``key + ":" + value`` (UTF-8) in ``alias`` (default: replace ``column``).

    Keyed so that a hash cannot be reversed by hashing a list of known emails without the key;
    nulls stay null. Same digest on both engines.
    """
    out = alias or column
    prefix = key + ":"

    def digest(values: pl.Series) -> pl.Series:
        # Customers are small (one row per profile change), so a Python loop per batch is fine.
        return pl.Series(
            [None if v is None else hashlib.sha256((prefix + v).encode()).hexdigest()
             for v in values.to_list()],
            dtype=pl.String,
        )

    return _with_native(
        frame,
        lambda: {out: pl.col(column).map_batches(digest, return_dtype=pl.String)},
        lambda F: {out: F.sha2(F.concat(F.lit(prefix), F.col(column)), 256)},
    )


def materialize(frame: nw.LazyFrame) -> nw.LazyFrame:
    """Compute a frame once when several outputs are taken from it.

    Polars collects (silver windows fit in memory by design). Spark checkpoints locally, which
    also cuts the lineage a day-by-day chain (gold state) would otherwise grow without bound;
    where that is unavailable (serverless Spark Connect) the frame stays lazy.
    """
    if backend(frame) == "polars":
        return nw.from_native(frame.to_native().collect().lazy())
    native = frame.to_native()
    try:
        return nw.from_native(native.localCheckpoint(eager=True))
    except Exception:  # noqa: BLE001 - any engine that cannot checkpoint just stays lazy
        return frame


def map_frames(frame, fn, schema: dict[str, pl.DataType]):
    """Apply ``fn`` (a Polars frame in, a Polars frame of ``schema`` out) to a native frame's
    rows, batch by batch; returns a native frame of the same engine.

    ``fn`` must be row-local (any grouping it does must hold within a batch), because Spark
    hands it one Arrow batch of a partition at a time on the executors (``mapInArrow``): that
    is what lets scoring scale with the cluster instead of collecting to the driver. Polars
    hands it the whole frame. ``fn`` is pickled to the executors with everything it closes
    over, so it must close over plain data and models, not resources or sessions.
    """
    native = nw.to_native(frame, pass_through=True)
    if isinstance(native, pl.LazyFrame | pl.DataFrame):
        out = fn(native.lazy().collect())
        return out.select(pl.col(c).cast(t) for c, t in schema.items())
    if backend(nw.from_native(native)) != "spark":
        raise UnsupportedEngineError(f"cannot map batches of {type(native).__name__}")
    from pyspark.sql.pandas.types import to_arrow_schema

    session = native.sparkSession
    spark_schema = session.createDataFrame(pl.DataFrame(schema=schema).to_arrow()).schema
    arrow_schema = to_arrow_schema(spark_schema, timezone="UTC")

    def batches(arrow_batches):
        for batch in arrow_batches:
            out = fn(pl.from_arrow(batch))
            table = out.select(pl.col(c).cast(t) for c, t in schema.items()).to_arrow()
            yield from table.cast(arrow_schema).to_batches()

    return native.mapInArrow(batches, spark_schema)
