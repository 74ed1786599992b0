"""Bronze load: a window of landing drops into the bronze and quarantine tables, reconciled.

Each day with a complete drop is parsed (``ingest/bronze.py``, or Spark through the landing
zone) and replaces that day of both tables; days without a drop are never touched, so a day
whose landing files were cleaned up keeps what was ingested. Afterwards the tables are counted
again -- what they hold, not what was meant to be written -- so the reconciliation
``records in files == bronze rows + quarantined rows`` covers the store too.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from churn_assets import catalog
from churn_assets.ingest.bronze import (
    PARTITION_COLUMN,
    contiguous_runs,
    drop_bytes,
    empty_bronze,
    empty_quarantine,
    shrinking_days,
)
from churn_assets.ingest.landing import Drop, DropError
from churn_assets.ingest.readers import LandingFileError
from churn_assets.resources.store import DateWindow, TableStore

if TYPE_CHECKING:
    from churn_assets.resources.landing import LandingZone

# One commit covers at most this many days and this many bytes of landing files, which bounds
# a backfill run's memory (parsed text takes a few times its file size).
MAX_DAYS_PER_COMMIT = 31
MAX_BYTES_PER_COMMIT = 512 * 1024**2

_log = logging.getLogger(__name__)


@dataclass
class BronzeLoad:
    """What one load of a domain's window found, wrote and counted."""

    domain: str
    window: DateWindow
    drops: list[Drop] = field(default_factory=list)
    # Days whose folder exists without a completion marker: still being written, skipped.
    partial_days: list[str] = field(default_factory=list)
    records_in_files: int = 0
    # Counted in the tables after the write, over the days that had a drop.
    bronze_rows: int = 0
    quarantined_rows: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    new_columns: set[str] = field(default_factory=set)
    # Drop folder -> why it was refused (marker contract, unusable file, unannounced shrink);
    # bronze keeps what it held for those days.
    refused: dict[str, str] = field(default_factory=dict)
    # Drop folder -> files its marker does not list (reported, not ingested).
    unlisted: dict[str, list[str]] = field(default_factory=dict)

    @property
    def difference(self) -> int:
        return self.records_in_files - self.bronze_rows - self.quarantined_rows

    @property
    def reconciled(self) -> bool:
        return self.difference == 0

    @property
    def days_without_drop(self) -> int:
        return len(self.window.days) - len(self.drops) - len(self.refused)


def load_bronze(domain: str, window: DateWindow, store: TableStore, landing: LandingZone,
                ingested_at: datetime, log=_log, pii=None) -> BronzeLoad:
    """Ingest ``domain``'s complete drops in ``window`` into its bronze and quarantine tables.

    A drop that breaks its marker's contract, has a file that cannot be read at all, or has
    fewer records than bronze holds for its day (unless its marker says the source shrank) is
    refused on its own (``BronzeLoad.refused``); the other days are ingested. With ``pii`` (the
    ``PiiKey`` resource), real drops are refused outright under the public local key
    (``PiiKeyError``).
    """
    table = catalog.bronze(domain).full_name
    quarantine_table = catalog.bronze_quarantine(domain).full_name
    load = BronzeLoad(domain, window)
    by_day: dict = {}
    for day in window.days:
        try:
            drop, extra = landing.checked_drop(domain, day)
        except DropError as error:
            load.refused[str(error.path)] = "; ".join(error.problems)
            continue
        if drop is not None:
            by_day[day] = drop
            if extra:
                load.unlisted[str(drop.path)] = extra
        elif landing.has_partial_drop(domain, day):
            load.partial_days.append(day.isoformat())
    if load.partial_days:
        log.warning(f"{domain}: drops without a completion marker skipped: {load.partial_days}")
    for folder, names in load.unlisted.items():
        log.warning(f"{folder}: files not listed in its marker, not ingested: {names}")
    if pii is not None:
        pii.refuse_public_key_for(by_day.values())

    def parse(days: list) -> list:
        """Batches over contiguous ``days``; a drop with an unusable file (a truncated Parquet
        file, say) is refused on its own and the other days are parsed without it."""
        try:
            return [(DateWindow(days[0], days[-1] + timedelta(days=1)),
                     landing.ingest(domain, [by_day[d] for d in days], ingested_at))]
        except LandingFileError as error:
            if len(days) == 1:
                load.refused[str(by_day[days[0]].path)] = str(error)
                return []
        return [part for day in days for part in parse([day])]

    written_days: list = []
    sizes = {day: drop_bytes(drop) for day, drop in by_day.items()}
    for start, end in contiguous_runs(list(by_day), MAX_DAYS_PER_COMMIT, sizes,
                                      MAX_BYTES_PER_COMMIT):
        batches = []
        for run, batch in parse(DateWindow(start, end).days):
            held = Counter(store.count_rows_by_day(table, run, PARTITION_COLUMN))
            held.update(store.count_rows_by_day(quarantine_table, run, PARTITION_COLUMN))
            refused = shrinking_days(batch.records_by_day, held, by_day)
            if not refused:
                batches.append((run, batch))
                continue
            for day, reason in refused.items():
                load.refused[str(by_day[day].path)] = reason
            # Rare: parse the remaining days again rather than filter frames per engine.
            keep = [d for d in run.days if d not in refused]
            for a, b in contiguous_runs(keep, MAX_DAYS_PER_COMMIT):
                batches += parse(DateWindow(a, b).days)
        for run, batch in batches:
            written = store.replace_window(
                table, batch.rows, run, PARTITION_COLUMN, allow_new_columns=True
            )
            store.replace_window(quarantine_table, batch.quarantine, run, PARTITION_COLUMN)
            load.new_columns.update(written.new_columns)
            load.records_in_files += batch.records_in_files
            load.quarantine_reasons.update(batch.quarantine_reasons)
            written_days.extend(run.days)
            quarantined = sum(batch.quarantine_reasons.values())
            log.info(f"{domain} {run}: {batch.records_in_files - quarantined} rows, "
                     f"{quarantined} quarantined")
    load.drops = [by_day[day] for day in sorted(written_days)]
    if not store.exists(table):
        # An absent domain still gets an (empty) table, so downstream reads find nothing, not an error.
        store.replace_window(table, empty_bronze(domain), window, PARTITION_COLUMN)
    if not store.exists(quarantine_table):
        store.replace_window(quarantine_table, empty_quarantine(), window, PARTITION_COLUMN)

    # Count what the tables hold now, not what we meant to write: the check covers the store too.
    for start, end in contiguous_runs(sorted(written_days), len(window.days) or 1):
        run = DateWindow(start, end)
        load.bronze_rows += store.count_rows(table, run, PARTITION_COLUMN)
        load.quarantined_rows += store.count_rows(quarantine_table, run, PARTITION_COLUMN)
    for folder, problem in load.refused.items():
        log.error(f"{domain}: drop {folder} not ingested: {problem}")
    return load
