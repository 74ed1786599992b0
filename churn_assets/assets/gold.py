"""Gold: point-in-time customer features, the incremental state behind them, and churn labels.

Day D of ``gold/customer_features`` continues from day D-1's ``gold/customer_state``: the day
loop is ``steps/gold.py``, the fold it runs is ``transforms/gold.py``. Its reads are bounded by
the silver check ``event_time_not_after_arrival``, which is blocking: gold never runs on rows
that would break that bound.
"""


from datetime import timedelta

import dagster as dg
import narwhals as nw

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview, on_upstream_change
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.gold import prune_state, reach_days, write_feature_days
from churn_assets.steps.reads import CHUNK_DAYS, chunks, last_arrival
from churn_assets.transforms import gold, labels
from churn_assets.transforms.contracts import PARTITION_COLUMN as ARRIVAL
from churn_assets.transforms.engine import materialize

SNAPSHOT = catalog.SNAPSHOT_DATE
ACTIVITY_DOMAINS = ("payments", "events", "tickets", "marketing")
ACTIVITY, CATEGORIES = catalog.DAILY_ACTIVITY.full_name, catalog.ORDER_CATEGORIES.full_name
STATE, STATE_CATEGORIES = catalog.CUSTOMER_STATE.full_name, catalog.CUSTOMER_CATEGORIES.full_name
FEATURES, LABELS = catalog.CUSTOMER_FEATURES.full_name, catalog.CHURN_LABELS.full_name


def silver_table(domain: str) -> str:
    return catalog.silver(domain).full_name


def _window_mapping(days_before: int, days_after: int = 0) -> dg.TimeWindowPartitionMapping:
    return dg.TimeWindowPartitionMapping(start_offset=-days_before, end_offset=days_after)


def build_activity_asset(partitions_def, settings: Settings) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="gold_daily_activity",
        specs=[
            dg.AssetSpec(
                catalog.DAILY_ACTIVITY.key, deps=[catalog.silver(d).key for d in ACTIVITY_DOMAINS],
                automation_condition=on_upstream_change(),
            ),
            dg.AssetSpec(
                catalog.ORDER_CATEGORIES.key, deps=[catalog.silver("payments").key],
                automation_condition=on_upstream_change(),
            ),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _activity(context: dg.AssetExecutionContext, store: TableStore):
        window = DateWindow.from_time_window(context.partition_time_window)
        for chunk in chunks(window, CHUNK_DAYS):
            silver = {d: store.read(silver_table(d), chunk, ARRIVAL) for d in ACTIVITY_DOMAINS}
            store.replace_window(
                ACTIVITY, gold.daily_activity(**silver), chunk, ARRIVAL)
            store.replace_window(
                CATEGORIES, gold.paid_order_categories(silver["payments"]), chunk, ARRIVAL)
        yield dg.MaterializeResult(asset_key=catalog.DAILY_ACTIVITY.key, metadata={
            "dagster/row_count": store.count_rows(ACTIVITY, window, ARRIVAL)})
        yield dg.MaterializeResult(asset_key=catalog.ORDER_CATEGORIES.key, metadata={
            "dagster/row_count": store.count_rows(CATEGORIES, window, ARRIVAL)})

    return _activity


def build_features_asset(partitions_def, settings: Settings) -> dg.AssetsDefinition:
    ahead = settings.checks.max_days_ahead
    reach = reach_days(ahead)
    partition_start = partitions_def.start.date()
    keep_days = settings.maintenance.state_days
    previous_day = _window_mapping(1, -1)

    # One computation writes the three tables from the same inputs, so the three specs share
    # their dependencies: each its own previous day (the state is a chain) and the same upstream
    # windows. The automation sensor then asks for the same days of each, and a multi-day
    # backlog becomes one run. (With each spec's own subset, a backlog asked for different days
    # of state and features, which Dagster's asset backfill cannot run together, and gold
    # stopped at the backlog's first day.) No spec depends on a sibling: across keys, Dagster
    # orders assets without their partition offsets, and state <-> categories is a cycle.
    upstream = [
        dg.AssetDep(catalog.DAILY_ACTIVITY.key, partition_mapping=_window_mapping(reach)),
        # The orders that became visible through D + ahead: without them, automation would
        # build a day whose data has not arrived.
        dg.AssetDep(catalog.ORDER_CATEGORIES.key, partition_mapping=_window_mapping(ahead)),
        dg.AssetDep(catalog.silver("customers").key, partition_mapping=_window_mapping(ahead)),
        dg.AssetDep(catalog.silver("tickets").key, partition_mapping=_window_mapping(reach)),
    ]

    state_chain = [t.key for t in (catalog.CUSTOMER_STATE, catalog.CUSTOMER_CATEGORIES,
                                   catalog.CUSTOMER_FEATURES)]

    def spec(table: catalog.Table, **kwargs) -> dg.AssetSpec:
        return dg.AssetSpec(
            table.key, deps=[dg.AssetDep(table.key, partition_mapping=previous_day), *upstream],
            automation_condition=on_upstream_change(chain=state_chain), **kwargs)

    @dg.multi_asset(
        name="gold_customer_features",
        specs=[
            spec(catalog.CUSTOMER_STATE),
            spec(catalog.CUSTOMER_CATEGORIES),
            spec(catalog.CUSTOMER_FEATURES, metadata={"columns": list(gold.FEATURE_SCHEMA)}),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _features(context: dg.AssetExecutionContext, store: TableStore):
        window = DateWindow.from_time_window(context.partition_time_window)
        written = write_feature_days(store, window, partition_start, ahead, log=context.log)
        last_day = window.end - timedelta(days=1)
        pruned = prune_state(store, last_day, keep_days)
        if pruned.days_deleted:
            context.log.info(f"customer state: deleted {pruned.days_deleted} day(s) before "
                             f"{pruned.kept_from} (keeps {keep_days} and {last_day})")

        yield dg.MaterializeResult(asset_key=catalog.CUSTOMER_STATE.key, metadata={
            "dagster/row_count": store.count_rows(STATE, window, SNAPSHOT),
            "rebuilt_from_history": written.rebuilt_from_history,
            "state_days_deleted": pruned.days_deleted,
            "state_kept_from": str(pruned.kept_from or "every day")})
        yield dg.MaterializeResult(asset_key=catalog.CUSTOMER_CATEGORIES.key, metadata={
            "dagster/row_count": store.count_rows(STATE_CATEGORIES, window, SNAPSHOT)})
        yield dg.MaterializeResult(asset_key=catalog.CUSTOMER_FEATURES.key, metadata={
            "dagster/row_count": store.count_rows(FEATURES, window, SNAPSHOT),
            "absent_domains_on_last_day": sorted(written.absent_domains_on_last_day),
            "location": dg.MetadataValue.path(store.location(FEATURES)),
            "preview": dg.MetadataValue.md(
                markdown_preview(store.read(FEATURES, DateWindow.day(last_day), SNAPSHOT))),
        })

    return _features


def build_labels_asset(partitions_def, settings: Settings) -> dg.AssetsDefinition:
    horizon = settings.labels.horizon_days
    ahead = settings.checks.max_days_ahead
    label_window = _window_mapping(0, horizon)

    @dg.asset(
        key=catalog.CHURN_LABELS.key,
        deps=[
            catalog.CUSTOMER_FEATURES.key,
            dg.AssetDep(catalog.silver("payments").key, partition_mapping=label_window),
            dg.AssetDep(catalog.silver("customers").key, partition_mapping=label_window),
        ],
        metadata={"horizon_days": horizon},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # No automation condition: a label is ready when payments have *arrived* through D+H,
        # which partitions cannot say (a day may have no payments); under the automation sensor
        # an eager label ran as soon as the window's partitions existed and failed. They run in
        # their own job (`churn-assets run` labels every ready day).
    )
    def churn_labels(context: dg.AssetExecutionContext, store: TableStore):
        window = DateWindow.from_time_window(context.partition_time_window)
        latest = last_arrival(store, silver_table("payments"))
        waiting = [d for d in window.days if not labels.labels_available(latest, d, horizon)]
        if waiting:
            raise dg.Failure(
                description=(
                    f"labels for {waiting[0]}..{waiting[-1]} need data through "
                    f"{labels.label_window_end(waiting[-1], horizon)} (horizon {horizon} days, "
                    f"[labels] horizon_days in settings.toml); silver.payments has arrived through "
                    f"{latest or 'nothing yet'}. Materialize labels only up to "
                    f"{(latest - timedelta(days=horizon)) if latest else 'a later date'}."
                ),
                metadata={"waiting_days": len(waiting), "latest_arrival": str(latest)},
            )
        since = DateWindow(window.start - timedelta(days=ahead), latest + timedelta(days=1))
        payments = materialize(nw.from_native(store.read(
            silver_table("payments"), since, ARRIVAL,
            columns=["customer_id", "transaction_type", "status", "event_date"]))).to_native()
        customers = materialize(nw.from_native(store.read(
            silver_table("customers"), since, ARRIVAL,
            columns=["customer_id", "cancelled_at"]))).to_native()
        for day in window.days:
            known = store.read(FEATURES, DateWindow.day(day), SNAPSHOT, columns=["customer_id"])
            frame = labels.churn_labels(known, payments, customers, day, horizon)
            store.replace_window(LABELS, frame, DateWindow.day(day), SNAPSHOT)
        counted = nw.from_native(store.read(LABELS, window, SNAPSHOT, columns=["churned"]))
        # Spark cannot sum booleans.
        summary = counted.select(nw.len().alias("rows"),
                                 nw.col("churned").cast(nw.Int64).sum().alias("churned"))
        summary = summary.lazy().collect()
        rows, churned = int(summary["rows"][0]), int(summary["churned"][0] or 0)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "churn_rate": round(churned / rows, 4) if rows else None,
            "data_through": str(latest),
        })

    return churn_labels


def build_gold_assets(partitions_def, settings: Settings) -> list[dg.AssetsDefinition]:
    return [
        build_activity_asset(partitions_def, settings),
        build_features_asset(partitions_def, settings),
        build_labels_asset(partitions_def, settings),
    ]
