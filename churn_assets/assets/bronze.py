"""Bronze: one daily-partitioned asset per domain, rows as delivered plus ingestion metadata.

Each domain's asset also owns its quarantine table (rows that could not be parsed, with file, line
and reason) and a blocking reconciliation check: records in the files == bronze + quarantined.
"""


from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview
from churn_assets.ingest.bronze import (
    PARTITION_COLUMN,
    contiguous_runs,
    drop_bytes,
    empty_bronze,
    empty_quarantine,
)
from churn_assets.ingest.columns import COLUMNS
from churn_assets.resources.landing import LandingZone
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import DOMAINS

# One Delta commit covers at most this many days and this many bytes of landing files, which
# bounds a backfill run's memory (parsed text takes a few times its file size).
MAX_DAYS_PER_COMMIT = 31
MAX_BYTES_PER_COMMIT = 512 * 1024**2


def build_bronze_asset(domain: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    rows_table, quarantine = catalog.bronze(domain), catalog.bronze_quarantine(domain)

    @dg.multi_asset(
        name=f"bronze_{domain}",
        specs=[
            dg.AssetSpec(
                rows_table.key,
                metadata={"columns": list(COLUMNS[domain]), "partition_column": PARTITION_COLUMN},
            ),
            dg.AssetSpec(quarantine.key),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                catalog.RECONCILED_WITH_LANDING,
                asset=rows_table.key,
                blocking=True,
                description="Records in the landing files == bronze rows + quarantined rows.",
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _bronze(context: dg.AssetExecutionContext, store: TableStore, landing: LandingZone):
        window = DateWindow.from_time_window(context.partition_time_window)
        drops, partial = [], []
        for day in window.days:
            drop = landing.drop(domain, day)
            if drop is not None:
                drops.append(drop)
            elif landing.has_partial_drop(domain, day):
                partial.append(day.isoformat())
        if partial:
            context.log.warning(f"{domain}: drops without a completion marker skipped: {partial}")

        ingested_at = datetime.now(UTC)
        table, quarantine_table = rows_table.full_name, quarantine.full_name
        totals = {"records": 0, "rows": 0, "quarantined": 0}
        reasons: Counter[str] = Counter()
        new_columns: set[str] = set()
        by_day = {drop.day: drop for drop in drops}
        sizes = {day: drop_bytes(drop) for day, drop in by_day.items()}
        for start, end in contiguous_runs(
            list(by_day), MAX_DAYS_PER_COMMIT, sizes, MAX_BYTES_PER_COMMIT
        ):
            run = DateWindow(start, end)
            batch = landing.ingest(domain, [by_day[d] for d in run.days], ingested_at)
            written = store.replace_window(
                table, batch.rows, run, PARTITION_COLUMN, allow_new_columns=True
            )
            store.replace_window(quarantine_table, batch.quarantine, run, PARTITION_COLUMN)
            new_columns.update(written.new_columns)
            totals["records"] += batch.records_in_files
            reasons.update(batch.quarantine_reasons)
            quarantined = sum(batch.quarantine_reasons.values())
            context.log.info(
                f"{domain} {run}: {batch.records_in_files - quarantined} rows, "
                f"{quarantined} quarantined"
            )
        if not store.exists(table):
            # An absent domain still gets an (empty) table, so downstream reads find nothing, not an error.
            store.replace_window(table, empty_bronze(domain), window, PARTITION_COLUMN)
        if not store.exists(quarantine_table):
            store.replace_window(quarantine_table, empty_quarantine(), window, PARTITION_COLUMN)

        # Count what the tables hold now, not what we meant to write: the check covers the store too.
        days_with_drops = sorted(by_day)
        for start, end in contiguous_runs(days_with_drops, len(window.days) or 1):
            run = DateWindow(start, end)
            totals["rows"] += store.count_rows(table, run, PARTITION_COLUMN)
            totals["quarantined"] += store.count_rows(quarantine_table, run, PARTITION_COLUMN)
        reconciled = totals["records"] == totals["rows"] + totals["quarantined"]
        preview = store.read(table, window, PARTITION_COLUMN)

        yield dg.MaterializeResult(
            asset_key=rows_table.key,
            metadata={
                "dagster/row_count": totals["rows"],
                "records_in_files": totals["records"],
                "quarantined_rows": totals["quarantined"],
                "drops": len(drops),
                "days_without_drop": len(window.days) - len(drops),
                "incomplete_drops_skipped": partial,
                "batches": [d.batch_id for d in drops][:50],
                "new_columns": sorted(new_columns),
                "location": dg.MetadataValue.path(store.location(table)),
                "preview": dg.MetadataValue.md(markdown_preview(preview)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=quarantine.key,
            metadata={
                "dagster/row_count": totals["quarantined"],
                "reasons": dg.MetadataValue.json(dict(reasons.most_common(20))),
                "location": dg.MetadataValue.path(store.location(quarantine_table)),
            },
        )
        yield dg.AssetCheckResult(
            asset_key=rows_table.key,
            check_name=catalog.RECONCILED_WITH_LANDING,
            passed=reconciled,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "records_in_files": totals["records"],
                "bronze_rows": totals["rows"],
                "quarantined_rows": totals["quarantined"],
                "difference": totals["records"] - totals["rows"] - totals["quarantined"],
            },
        )

    return _bronze


def build_bronze_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build_bronze_asset(domain, partitions_def) for domain in DOMAINS]

