"""Bronze: one daily-partitioned asset per domain, rows as delivered plus ingestion metadata.

Each domain's asset also owns its quarantine table (rows that could not be parsed, with file, line
and reason) and a blocking reconciliation check: records in the files == bronze + quarantined.
"""


from datetime import UTC, datetime

import dagster as dg

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview
from churn_assets.ingest.bronze import PARTITION_COLUMN
from churn_assets.ingest.columns import COLUMNS
from churn_assets.resources.landing import LandingZone
from churn_assets.resources.pii import PiiKey, PiiKeyError
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import DOMAINS
from churn_assets.steps.bronze import load_bronze
from churn_assets.transforms.personal import mask


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
            ),
            dg.AssetCheckSpec(
                catalog.DROPS_MATCH_MARKERS,
                asset=rows_table.key,
                blocking=True,
                description=(
                    "Every drop's marker is for its folder's day, its files match the marker's "
                    "sizes and SHA-256, and no drop has fewer records than bronze holds for its "
                    "day unless its marker says the source shrank. A refused drop leaves its "
                    "day as it was; the other drops are ingested."
                ),
            ),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _bronze(
        context: dg.AssetExecutionContext, store: TableStore, landing: LandingZone, pii: PiiKey
    ):
        window = DateWindow.from_time_window(context.partition_time_window)
        try:
            load = load_bronze(domain, window, store, landing, datetime.now(UTC),
                               log=context.log, pii=pii)
        except PiiKeyError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        table, quarantine_table = rows_table.full_name, quarantine.full_name
        preview = store.read(table, window, PARTITION_COLUMN)

        yield dg.MaterializeResult(
            asset_key=rows_table.key,
            metadata={
                "dagster/row_count": load.bronze_rows,
                "records_in_files": load.records_in_files,
                "quarantined_rows": load.quarantined_rows,
                "drops": len(load.drops),
                "drops_refused": len(load.refused),
                "days_without_drop": load.days_without_drop,
                "incomplete_drops_skipped": load.partial_days,
                "unlisted_files": dg.MetadataValue.json(load.unlisted),
                "batches": [d.batch_id for d in load.drops][:50],
                "new_columns": sorted(load.new_columns),
                "location": dg.MetadataValue.path(store.location(table)),
                "preview": dg.MetadataValue.md(markdown_preview(preview)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=quarantine.key,
            metadata={
                "dagster/row_count": load.quarantined_rows,
                "reasons": dg.MetadataValue.json(
                    mask(dict(load.quarantine_reasons.most_common(20)))),
                "location": dg.MetadataValue.path(store.location(quarantine_table)),
            },
        )
        yield dg.AssetCheckResult(
            asset_key=rows_table.key,
            check_name=catalog.RECONCILED_WITH_LANDING,
            passed=load.reconciled,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "records_in_files": load.records_in_files,
                "bronze_rows": load.bronze_rows,
                "quarantined_rows": load.quarantined_rows,
                "difference": load.difference,
            },
        )
        first = next(iter(load.refused.items()), None)
        yield dg.AssetCheckResult(
            asset_key=rows_table.key,
            check_name=catalog.DROPS_MATCH_MARKERS,
            passed=not load.refused,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(load.refused)} drop(s) refused, bronze keeps what it held for their days; "
                f"first: {first[0]}: {first[1]}" if first else None
            ),
            metadata={
                "refused_drops": dg.MetadataValue.json(load.refused),
                "unlisted_files": dg.MetadataValue.json(load.unlisted),
            },
        )

    return _bronze


def build_bronze_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build_bronze_asset(domain, partitions_def) for domain in DOMAINS]

