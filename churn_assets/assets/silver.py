"""Silver: one daily-partitioned asset per domain, typed, deduplicated and PII-masked.

Each domain's asset also owns ``silver/<domain>_exceptions``: every bronze row that is not a silver
row, with why (rejected, and the reason; or a duplicate, and of what). Its checks are the data
expectations; those whose failure would poison features are blocking, so gold does not run on
bad data in the same run. Rows are partitioned by the day they arrived (``arrival_date``), so a
late record lands in the day it arrived and no past partition changes.
"""


from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import narwhals as nw

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview, on_upstream_change, outcome_result
from churn_assets.ingest.bronze import PARTITION_COLUMN as BRONZE_PARTITION
from churn_assets.resources.pii import PiiKey
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import DOMAINS, Settings
from churn_assets.steps.reads import CHUNK_DAYS, chunks
from churn_assets.transforms import expectations
from churn_assets.transforms.contracts import NATURAL_KEYS, PARTITION_COLUMN
from churn_assets.transforms.personal import mask
from churn_assets.transforms.silver import clean, exceptions_frame

VOLUME_DAYS = 7


def table(domain: str) -> str:
    return catalog.silver(domain).full_name


def build_silver_asset(
    domain: str, partitions_def: dg.TimeWindowPartitionsDefinition, settings: Settings
) -> dg.AssetsDefinition:
    checks = catalog.silver_checks(domain)
    rows_key, exceptions_key = catalog.silver(domain).key, catalog.silver_exceptions(domain).key
    bronze_key = catalog.bronze(domain).key
    # Orphan checks need the customers that arrived up to the same day: silver customers first.
    deps = [bronze_key] + ([catalog.silver("customers").key] if domain != "customers" else [])
    rules = settings.checks
    attributes = settings.customers.kinds() if domain == "customers" else {}
    partition_start = partitions_def.start.date()

    @dg.multi_asset(
        name=f"silver_{domain}",
        specs=[
            dg.AssetSpec(
                rows_key,
                deps=deps,
                metadata={"natural_key": list(NATURAL_KEYS[domain])},
                automation_condition=on_upstream_change(),
            ),
            dg.AssetSpec(exceptions_key, deps=[bronze_key], skippable=True),
        ],
        check_specs=[
            dg.AssetCheckSpec(name, asset=rows_key, blocking=blocking, description=text)
            for name, (blocking, text) in checks.items()
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _silver(context: dg.AssetExecutionContext, store: TableStore, pii: PiiKey):
        window = DateWindow.from_time_window(context.partition_time_window)
        rows_table, exceptions_table = table(domain), catalog.silver_exceptions(domain).full_name
        for chunk in chunks(window, CHUNK_DAYS):
            bronze = store.read(catalog.bronze(domain).full_name, chunk, BRONZE_PARTITION)
            prior = None
            if store.exists(rows_table) and chunk.start > partition_start:
                prior = store.read(
                    rows_table, DateWindow(partition_start, chunk.start), PARTITION_COLUMN,
                    columns=list(NATURAL_KEYS[domain]),
                )
            result = clean(domain, bronze, prior, pii.key, attributes)
            store.replace_window(
                rows_table, result.rows.to_native(), chunk, PARTITION_COLUMN,
                allow_new_columns=domain == "customers",
            )
            store.replace_window(
                exceptions_table,
                exceptions_frame(result.rejects, result.duplicates).to_native(),
                chunk, PARTITION_COLUMN,
            )
            context.log.info(f"silver {domain} {chunk} written")

        rows = store.read(rows_table, window, PARTITION_COLUMN)
        exceptions = nw.from_native(store.read(exceptions_table, window, PARTITION_COLUMN))
        counts = _counts(exceptions)
        bronze_rows = store.count_rows(catalog.bronze(domain).full_name, window, BRONZE_PARTITION)
        silver_rows = store.count_rows(rows_table, window, PARTITION_COLUMN)

        yield dg.MaterializeResult(
            asset_key=rows_key,
            metadata={
                "dagster/row_count": silver_rows,
                "bronze_rows": bronze_rows,
                "rejected_rows": counts["rejected"],
                "duplicate_rows": counts["duplicate"],
                "location": dg.MetadataValue.path(store.location(rows_table)),
                "preview": dg.MetadataValue.md(markdown_preview(rows)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=exceptions_key,
            metadata={
                "dagster/row_count": counts["rejected"] + counts["duplicate"],
                "reasons": dg.MetadataValue.json(mask(_top_reasons(exceptions))),
                "location": dg.MetadataValue.path(store.location(exceptions_table)),
            },
        )
        results = list(_check_results(
            domain, checks, store, rows, window, partition_start, rules,
            bronze_rows=bronze_rows, silver_rows=silver_rows, counts=counts,
            attributes=attributes,
        ))
        yield from results
        stopped = [r for r in results if checks[r.check_name][0] and not r.passed
                   and r.severity == dg.AssetCheckSeverity.ERROR]
        if stopped:
            # Dagster would fail the step itself, with a generic error and a stack trace as the
            # run's last event; this says which check failed on which days and why, in one line.
            first = stopped[0]
            more = f" (and {len(stopped) - 1} more blocking check(s))" if len(stopped) > 1 else ""
            raise dg.Failure(
                description=f"blocking check {rows_key.to_user_string()}:"
                f"{first.check_name} failed {first.description}{more}",
                metadata={"failed_checks": [r.check_name for r in stopped]},
                allow_retries=False,
            )

    return _silver


def _check_results(domain, checks, store, rows, window, partition_start, rules, *, bronze_rows,
                   silver_rows, counts, attributes) -> Iterator[dg.AssetCheckResult]:
    outcomes = {
        "keys_unique_and_present": expectations.keys_unique_and_present(domain, rows),
        "values_in_range": expectations.values_in_range(domain, rows),
        "schema_matches_contract": expectations.schema_matches_contract(domain, rows, attributes),
        "reconciled_with_bronze": expectations.reconciled_with_bronze(
            bronze_rows, silver_rows, counts["rejected"], counts["duplicate"]),
        "reject_share": expectations.reject_share(
            _rejects_per_day(store, domain, window), max_share=rules.max_reject_share,
            min_bad_rows=rules.min_bad_rows),
        "event_time_not_after_arrival": expectations.event_time_not_after_arrival(
            domain, rows, max_days_ahead=rules.max_days_ahead),
        "volume_vs_trailing_mean": _volume(store, domain, window, partition_start, rules),
    }
    if "references_known_customers" in checks:
        known = (
            store.read(table("customers"), DateWindow(partition_start, window.end),
                       PARTITION_COLUMN, columns=["customer_id", PARTITION_COLUMN])
            if store.exists(table("customers")) else None
        )
        outcomes["references_known_customers"] = expectations.references_known_customers(
            domain, rows, known, max_orphan_share=rules.max_orphan_share,
            min_bad_rows=rules.min_bad_rows)
    if "refunds_reference_orders" in checks:
        orders = store.read(table("payments"), DateWindow(partition_start, window.end),
                            PARTITION_COLUMN, columns=["order_id"])
        outcomes["refunds_reference_orders"] = expectations.refunds_reference_orders(rows, orders)
    # Results belong to the run's whole window (per-partition check results are still a preview
    # in Dagster): the metadata names it.
    judged = f"{window.start}..{window.end - timedelta(days=1)}"
    for name in checks:
        yield outcome_result(catalog.silver(domain).key, name, outcomes[name],
                             partition_window=judged)


def _volume(store, domain, window, partition_start, rules) -> expectations.Outcome:
    """Each day of the window against its own trailing days."""
    start = max(partition_start, window.start - timedelta(days=VOLUME_DAYS))
    per_day = (
        nw.from_native(store.read(table(domain), DateWindow(start, window.end), PARTITION_COLUMN,
                                  columns=[PARTITION_COLUMN]))
        .group_by(PARTITION_COLUMN).agg(nw.len().alias("rows")).lazy().collect()
    )
    counts = dict(zip(per_day[PARTITION_COLUMN].to_list(), per_day["rows"].to_list(), strict=True))
    return expectations.volume_by_day(counts, window.days, partition_start,
                                      tolerance=rules.volume_tolerance, history_days=VOLUME_DAYS)


def _rejects_per_day(store, domain, window) -> dict:
    """(rejected, bronze rows) per day of the window: share checks judge each day on its own."""
    def per_day(name, column, frame_filter=None):
        frame = nw.from_native(store.read(name, window, column, columns=[column, *(
            ["kind"] if frame_filter is not None else [])])).lazy()
        if frame_filter is not None:
            frame = frame.filter(frame_filter)
        counts = frame.group_by(column).agg(nw.len().alias("n")).collect()
        return {day: int(n) for day, n in counts.rows()}

    bronze = per_day(catalog.bronze(domain).full_name, BRONZE_PARTITION)
    rejected = per_day(catalog.silver_exceptions(domain).full_name, PARTITION_COLUMN,
                       nw.col("kind") == "rejected")
    return {day: (rejected.get(day, 0), rows) for day, rows in bronze.items()}


def _counts(exceptions: nw.LazyFrame) -> dict[str, int]:
    per_kind = exceptions.group_by("kind").agg(nw.len().alias("n")).lazy().collect()
    found = dict(zip(per_kind["kind"].to_list(), per_kind["n"].to_list(), strict=True))
    return {"rejected": int(found.get("rejected", 0)), "duplicate": int(found.get("duplicate", 0))}


def _top_reasons(exceptions: nw.LazyFrame, limit: int = 20) -> dict[str, int]:
    top = (
        exceptions.group_by("reason").agg(nw.len().alias("n"))
        .sort("n", descending=True).head(limit).lazy().collect()
    )
    return dict(zip(top["reason"].to_list(), top["n"].to_list(), strict=True))


def build_silver_assets(partitions_def, settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_silver_asset(domain, partitions_def, settings) for domain in DOMAINS]

