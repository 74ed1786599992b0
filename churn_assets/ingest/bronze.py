"""Turn complete landing drops into bronze rows and quarantined rows (pure: files in, frames out).

Bronze keeps every record as delivered — all data columns as text — and adds where it came from.
A record that cannot be parsed goes to quarantine with its file, line and reason, so that
``records in files == bronze rows + quarantined rows`` holds for every batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl

from churn_assets.ingest.columns import COLUMNS
from churn_assets.ingest.landing import Drop
from churn_assets.ingest.readers import read_landing_file

PARTITION_COLUMN = "_drop_date"
METADATA_SCHEMA: dict[str, pl.DataType] = {
    "_source_file": pl.String(),
    "_row_number": pl.Int64(),
    "_batch_id": pl.String(),
    "_ingested_at": pl.Datetime("us", "UTC"),
    PARTITION_COLUMN: pl.Date(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "_source_file": pl.String(),
    "_row_number": pl.Int64(),
    "reason": pl.String(),
    "raw": pl.String(),
    "_batch_id": pl.String(),
    "_ingested_at": pl.Datetime("us", "UTC"),
    PARTITION_COLUMN: pl.Date(),
}


@dataclass
class BronzeBatch:
    rows: pl.DataFrame
    quarantine: pl.DataFrame
    records_in_files: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    # Records in the files per drop day: what bronze + quarantine must hold for that day.
    records_by_day: Counter[date] = field(default_factory=Counter)


def empty_bronze(domain: str) -> pl.DataFrame:
    """The shape of a domain's bronze table before any drop arrived (absent domains stay empty)."""
    schema = {name: pl.String() for name in COLUMNS[domain]} | METADATA_SCHEMA
    return pl.DataFrame(schema=schema)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def ingest_drops(domain: str, drops: list[Drop], ingested_at: datetime, landing_root=None) -> BronzeBatch:
    """Parse every file of ``drops`` into one bronze batch for ``domain``."""
    row_parts = [empty_bronze(domain)]
    quarantine_parts = [empty_quarantine()]
    batch = BronzeBatch(rows=row_parts[0], quarantine=quarantine_parts[0])
    for drop in drops:
        if drop.domain != domain:
            raise ValueError(f"drop {drop.path} belongs to {drop.domain!r}, not {domain!r}")
        for path in drop.file_paths():
            source = display_path(path, landing_root)
            parsed = read_landing_file(path)
            stamp = {
                "_source_file": pl.lit(source, pl.String()),
                "_batch_id": pl.lit(drop.batch_id, pl.String()),
                "_ingested_at": pl.lit(ingested_at, pl.Datetime("us", "UTC")),
                PARTITION_COLUMN: pl.lit(drop.day, pl.Date()),
            }
            row_parts.append(parsed.rows.with_columns(**stamp))
            quarantine_parts.append(parsed.quarantine.with_columns(**stamp))
            batch.records_in_files += parsed.records_in_file
            batch.records_by_day[drop.day] += parsed.records_in_file
            batch.quarantine_reasons.update(parsed.quarantine["reason"].to_list())
    batch.rows = pl.concat(row_parts, how="diagonal_relaxed")
    batch.quarantine = pl.concat(quarantine_parts, how="diagonal_relaxed").select(
        list(QUARANTINE_SCHEMA)
    )
    return batch


def contiguous_runs(
    days: list[date],
    max_days: int,
    size: dict[date, int] | None = None,
    max_size: int | None = None,
) -> list[tuple[date, date]]:
    """Group days into half-open ``[start, end)`` runs of consecutive days.

    A run holds at most ``max_days`` days and, when ``size`` is given, at most ``max_size`` in
    total (a single bigger day still gets its own run). Bronze replaces only days that have a
    drop, so a day whose landing files were cleaned up never wipes what was ingested before;
    grouping keeps that to one commit per run, and the size bound keeps a run's memory bounded.
    """
    runs: list[tuple[date, date]] = []
    total = 0
    for day in sorted(set(days)):
        weight = size.get(day, 0) if size else 0
        extends = runs and runs[-1][1] == day and (day - runs[-1][0]).days < max_days
        if extends and (max_size is None or total + weight <= max_size):
            runs[-1] = (runs[-1][0], day + timedelta(days=1))
            total += weight
        else:
            runs.append((day, day + timedelta(days=1)))
            total = weight
    return runs


def drop_bytes(drop: Drop) -> int:
    """The drop's size as its marker lists it (the files were verified against it)."""
    return sum(entry["bytes"] for entry in drop.manifest.values())


def shrinking_days(
    records_by_day: dict[date, int], held_by_day: dict[date, int], drops: dict[date, Drop]
) -> dict[date, str]:
    """Days whose drop has fewer records than bronze holds for it, and the drop does not say its
    source shrank: replacing them would silently delete rows, so they are refused with a reason."""
    refused = {}
    for day, held in held_by_day.items():
        arriving = records_by_day.get(day, 0)
        drop = drops.get(day)
        if drop is not None and arriving < held and not drop.source_shrank:
            refused[day] = (
                f"it has {arriving:,} records but bronze holds {held:,} for that day; a drop "
                "never deletes rows unless its marker says the source shrank "
                "(`churn-assets import` of a corrected export sets it)")
    return refused


def display_path(path, landing_root) -> str:
    """A landing file as bronze names it: relative to the landing root (both engines)."""
    if landing_root is None:
        return str(path)
    try:
        return str(path.relative_to(landing_root))
    except ValueError:
        return str(path)
