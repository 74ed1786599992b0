"""Bronze ingestion where Spark reads the landing files: the same rows, quarantine and counts.

``ingest_drops`` reads files on the driver, so they must be on its disk. Here Spark's
``binaryFile`` source reads them (so they may live on cluster storage), and executors parse each
file's bytes with the *same* parser, ``parse_landing_bytes``: what counts as a malformed record,
its reason and its line number have one definition, and bronze reconciles exactly as it does
with ``ingest_drops`` (the tests compare both paths on a dirty world).

Spark needs the output schema before the parser runs, but a file's columns are only known after,
so ``mapInArrow`` emits one long frame with a fixed schema, one record per

- ``row``: a parsed record, its text columns as a JSON object (null and "" stay distinct);
- ``quarantine``: a rejected record with its line number, reason and raw text;
- ``file``: a file with its record count and its column names (a file whose every record was
  rejected still adds its header's columns, as in ``ingest_drops``), or the message of the
  ``LandingFileError`` that made the whole file unusable.

The driver computes that frame once, collects the few ``file`` records, then spreads the JSON
into one string column per name and joins each file's drop metadata on Spark's path of the file.

Executors import this package and Polars, so their Python must be the project's environment
(locally: ``PYSPARK_PYTHON`` set to the virtualenv's interpreter).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import narwhals as nw
import polars as pl

from churn_assets.ingest.bronze import (
    METADATA_SCHEMA,
    PARTITION_COLUMN,
    QUARANTINE_SCHEMA,
    display_path,
    empty_bronze,
    empty_quarantine,
)
from churn_assets.ingest.columns import COLUMNS
from churn_assets.ingest.landing import Drop
from churn_assets.ingest.readers import ROW_NUMBER, LandingFileError, parse_landing_bytes
from churn_assets.transforms.engine import materialize

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

_LONG_SCHEMA: dict[str, pl.DataType] = {
    "_kind": pl.String(),
    "_source": pl.String(),
    ROW_NUMBER: pl.Int64(),
    "record": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
    "records": pl.Int64(),
}
_LONG_DDL = ", ".join(
    f"`{name}` {'bigint' if dtype == pl.Int64 else 'string'}"
    for name, dtype in _LONG_SCHEMA.items()
)
# Per-file metadata, joined on Spark's path of the file (``_ingested_at`` is one literal).
_STAMPED = ("_source_file", "_batch_id", PARTITION_COLUMN)
# Spark reports `file:/x` for the local file `/x` (and `dbfs:/x` for a Databricks path).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?(?=/)")
# Spark expands glob patterns in load() paths; a file name is never meant as one.
_GLOB = re.compile(r"([\\*?\[\]{}])")


@dataclass
class SparkBronzeBatch:
    rows: DataFrame
    quarantine: DataFrame
    records_in_files: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    records_by_day: Counter = field(default_factory=Counter)


def ingest_drops_spark(
    spark: SparkSession,
    domain: str,
    drops: list[Drop],
    ingested_at: datetime,
    landing_root: Path | None = None,
) -> SparkBronzeBatch:
    """``ingest_drops`` with Spark reading and parsing the files; lazy Spark frames out.

    Rows hold the domain's known columns, then any other data columns by name, then the
    metadata; ``ingest_drops`` puts the others after the metadata, in the order it met them.
    """
    from pyspark.sql import functions as F  # noqa: N812 - the conventional name

    stamp_of: dict[str, tuple] = {}  # absolute path -> its _STAMPED values
    for drop in drops:
        if drop.domain != domain:
            raise ValueError(f"drop {drop.path} belongs to {drop.domain!r}, not {domain!r}")
        for path in drop.file_paths():
            stamp_of[os.path.abspath(path)] = (
                display_path(path, landing_root),
                drop.batch_id,
                drop.day,
            )
    if not stamp_of:
        return SparkBronzeBatch(
            rows=spark.createDataFrame(empty_bronze(domain).to_arrow()),
            quarantine=spark.createDataFrame(empty_quarantine().to_arrow()),
        )

    reader = spark.read.format("binaryFile").option("ignoreMissingFiles", "false")
    files = reader.load([_GLOB.sub(r"\\\1", p) for p in stamp_of])
    parsed = files.select("path", "content").mapInArrow(_parse_files, _LONG_DDL)
    # Computed once: the summary, the reasons and both outputs below would each re-read the files.
    long = materialize(nw.from_native(parsed)).to_native()

    summary = long.filter(F.col("_kind") == "file").collect()
    errors = sorted(row["reason"] for row in summary if row["reason"] is not None)
    if errors:
        more = f" (and {len(errors) - 1} more unusable files)" if len(errors) > 1 else ""
        raise LandingFileError(errors[0] + more)
    read = {row["_source"]: _without_scheme(row["_source"]) for row in summary}
    unknown = sorted(source for source, key in read.items() if key not in stamp_of)
    if unknown:
        raise RuntimeError(f"Spark read {unknown[0]!r}, which maps back to no file of the drops")
    # Spark's file scan skips zero-byte files. A vanished file fails the read (ignoreMissingFiles
    # is off), so a file without a summary is empty: no records and no columns, or unusable
    # where the Polars path says so (an empty Parquet file), which parsing no bytes tells.
    for key in set(stamp_of) - set(read.values()):
        parse_landing_bytes(key, b"")

    names = {name for row in summary for name in json.loads(row["record"])}
    # Metadata columns win over same-named data columns, as the stamps do in ingest_drops.
    extra = sorted(names - set(COLUMNS[domain]) - set(METADATA_SCHEMA))
    stamps = pl.DataFrame(
        [(source, *stamp_of[key]) for source, key in read.items()],
        schema={"_source": pl.String(), **{k: METADATA_SCHEMA[k] for k in _STAMPED}},
        orient="row",
    ).with_columns(_ingested_at=pl.lit(ingested_at, METADATA_SCHEMA["_ingested_at"]))
    stamped = long.join(F.broadcast(spark.createDataFrame(stamps.to_arrow())), "_source")

    values = F.from_json("record", "map<string,string>")
    rows = stamped.filter(F.col("_kind") == "row").withColumn("record", values)
    rows = rows.select(
        *[F.col("record").getItem(name).alias(name) for name in [*COLUMNS[domain], *extra]],
        *METADATA_SCHEMA,
    )
    quarantine = stamped.filter(F.col("_kind") == "quarantine").select(*QUARANTINE_SCHEMA)
    reasons = long.filter(F.col("_kind") == "quarantine").groupBy("reason").count().collect()
    records_by_day: Counter = Counter()
    for row in summary:
        records_by_day[stamp_of[read[row["_source"]]][2]] += row["records"]
    return SparkBronzeBatch(
        rows=rows,
        quarantine=quarantine,
        records_in_files=sum(row["records"] for row in summary),
        quarantine_reasons=Counter({row["reason"]: row["count"] for row in reasons}),
        records_by_day=records_by_day,
    )


def _parse_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """On an executor: each file's bytes to its long-format records."""
    for batch in batches:
        paths = batch.column("path").to_pylist()
        contents = batch.column("content").to_pylist()
        for source, content in zip(paths, contents, strict=True):
            yield from _parse_file(source, content).to_arrow().to_batches()


def _parse_file(source: str, content: bytes) -> pl.DataFrame:
    try:
        parsed = parse_landing_bytes(_without_scheme(source), content)
    except LandingFileError as error:
        # Reported as data so the driver raises it by itself, not inside a worker traceback.
        return _long(source, pl.DataFrame({"_kind": ["file"], "reason": [str(error)]}))
    data = parsed.rows.drop(ROW_NUMBER)
    # A JSON-lines file of `{}` records parses to rows without columns.
    record = pl.struct(data.columns).struct.json_encode() if data.width else pl.lit("{}")
    summary = {"record": [json.dumps(data.columns)], "records": [parsed.records_in_file]}
    return _long(
        source,
        parsed.rows.select(pl.lit("row").alias("_kind"), ROW_NUMBER, record.alias("record")),
        parsed.quarantine.select(pl.lit("quarantine").alias("_kind"), pl.all()),
        pl.DataFrame({"_kind": ["file"], **summary}),
    )


def _long(source: str, *parts: pl.DataFrame) -> pl.DataFrame:
    # The empty typed frame first fixes the column order and types of every part.
    frame = pl.concat([pl.DataFrame(schema=_LONG_SCHEMA), *parts], how="diagonal_relaxed")
    return frame.with_columns(_source=pl.lit(source, pl.String()))


def _without_scheme(path: str) -> str:
    return _SCHEME.sub("", path)
