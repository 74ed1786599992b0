"""Daily retention decisions under a budget, the VIP whale list, and measured outcomes.

``decisions/actions`` is the CRM feed: who gets which action today, at what cost and expected
value, and who is held out as control (selected, never treated). ``decisions/outcomes`` measures
a campaign day once its outcome window has passed; those measurements become the budget
policy's save rates when they are trustworthy (``decisions/uplift.py``).
"""


from datetime import date, timedelta

import dagster as dg
import polars as pl

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview, on_upstream_change
from churn_assets.decisions import crm_feed, decide, measure, outcomes_from_activity, whale_list
from churn_assets.decisions.experiment import power_warning
from churn_assets.decisions.feed import EXPERIMENT_COLUMNS
from churn_assets.decisions.ope import off_policy_values, verdict
from churn_assets.decisions.uplift import (
    control_retention,
    explore_arm_uplift,
    policy_arm,
    save_rate_updates,
    uplift,
)
from churn_assets.ml.uplift import UpliftModel
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.reads import CHUNK_DAYS, chunks, last_arrival, to_polars
from churn_assets.transforms.contracts import PARTITION_COLUMN as ARRIVAL

ACTIONS, WHALES, OUTCOMES = (t.full_name for t in (catalog.ACTIONS, catalog.WHALES, catalog.OUTCOMES))
ACTIONS_KEY, WHALES_KEY, OUTCOMES_KEY = (t.key for t in (catalog.ACTIONS, catalog.WHALES, catalog.OUTCOMES))
SCORES, SCORES_KEY = catalog.SCORES.full_name, catalog.SCORES.key
ACTIVITY, SNAPSHOT = catalog.DAILY_ACTIVITY.full_name, catalog.SNAPSHOT_DATE
PAYMENTS = catalog.silver("payments").full_name
OPE_CHECK = "off_policy_value"
FEATURES = catalog.CUSTOMER_FEATURES.full_name
DECIDED_EXTRA = ("policy", "treated", "risk_band", "churn_probability", "cltv",
                 "revenue_at_risk", "net_value", "model_version", "retention_uplift",
                 *EXPERIMENT_COLUMNS)


def learned_settings(store: TableStore, settings: Settings, before: date
                     ) -> tuple[Settings, pl.DataFrame]:
    """Settings whose save rates are replaced by measured uplift from campaigns before
    ``before`` where the measurement is trustworthy; and the table of what changed."""
    if not store.exists(OUTCOMES):
        return settings, pl.DataFrame()
    measured = policy_arm(to_polars(store.read(OUTCOMES, DateWindow(date(1970, 1, 1), before),
                                               SNAPSHOT)))
    if measured.is_empty():
        return settings, pl.DataFrame()
    update = save_rate_updates(uplift(measured, by=("action",)), settings.decisions.actions,
                               min_n=settings.scoring.min_n_for_save_rates)
    decisions = settings.decisions.model_copy(update={"actions": update.actions})
    return settings.model_copy(update={"decisions": decisions}), update.table


def ope_result(measured: pl.DataFrame) -> dg.AssetCheckResult:
    values = off_policy_values(measured)
    passed, text = verdict(values)
    return dg.AssetCheckResult(
        check_name=OPE_CHECK, passed=passed, severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"values": dg.MetadataValue.md(markdown_preview(values, rows=10))
                  if values.height else "no exploration rows measured yet",
                  **{f"{r['estimate']}_per_customer": round(r["value_per_customer"], 4)
                     for r in values.iter_rows(named=True)}})


def with_experiment_columns(feed: pl.DataFrame) -> pl.DataFrame:
    """A decisions frame with the experiment columns; a table written before they existed
    reads as not randomized (null propensity), so no learner mistakes it for an experiment."""
    defaults = {"assignment": pl.lit("policy"), "randomized": pl.lit(False),
                "propensity": pl.lit(None, dtype=pl.Float64),
                "policy_action": pl.lit(None, dtype=pl.String),
                "rules_action": pl.lit(None, dtype=pl.String),
                "churn_probability": pl.lit(None, dtype=pl.Float64),
                "retention_uplift": pl.lit(None, dtype=pl.Float64),
                "treated": ~pl.col("control")}
    return feed.with_columns(expr.alias(name) for name, expr in defaults.items()
                             if name not in feed.columns).with_columns(
        pl.col("randomized").fill_null(False))


def predicted_uplift(store: TableStore, model: UpliftModel, eligible: pl.DataFrame, day: date
                     ) -> pl.DataFrame:
    """The uplift model's predictions for the day's eligible customers, from the same gold
    feature rows their scores came from."""
    features = to_polars(store.read(FEATURES, DateWindow.day(day), SNAPSHOT)).join(
        eligible.select("customer_id"), on="customer_id", how="semi")
    return model.predict(features)


def measured_control_retention(store: TableStore, before: date) -> float | None:
    """Retention of the untreated customers measured so far: the variance the power
    calculation uses (None before any outcome)."""
    if not store.exists(OUTCOMES):
        return None
    measured = to_polars(store.read(OUTCOMES, DateWindow(date(1970, 1, 1), before), SNAPSHOT,
                                    columns=["control", "retained"]))
    return control_retention(measured)


def budget_note(budget: float, fed: int) -> str:
    if budget <= 0:
        return "daily_budget is 0: nobody is selected, explored or held out"
    return f"{fed} customers fed (treated, control and explored)"


def recently_selected(store: TableStore, day: date, cooldown_days: int) -> pl.DataFrame:
    """Customers selected (treated or control) in the ``cooldown_days`` before ``day``, with
    the day (``customer_id``, ``snapshot_date``)."""
    if cooldown_days == 0 or not store.exists(ACTIONS):
        return pl.DataFrame(schema={"customer_id": pl.String, SNAPSHOT: pl.Date})
    window = DateWindow(day - timedelta(days=cooldown_days), day)
    return to_polars(store.read(ACTIONS, window, SNAPSHOT, columns=["customer_id", SNAPSHOT]))


def build_decision_assets(partitions_def, settings: Settings) -> list[dg.AssetsDefinition]:
    policy = settings.decisions.policy
    lookback = dg.TimeWindowPartitionMapping(start_offset=-policy.rising_risk_days, end_offset=0)

    @dg.multi_asset(
        name="decisions_daily",
        specs=[
            dg.AssetSpec(
                ACTIONS_KEY,
                # The uplift champion is loaded from MLflow, not a dependency: the model learns
                # from outcomes of these very decisions, so a dependency would be a cycle.
                deps=[dg.AssetDep(SCORES_KEY, partition_mapping=lookback),
                      catalog.CUSTOMER_FEATURES.key],
                metadata={"policy": policy.kind, "daily_budget": policy.daily_budget},
            ),
            dg.AssetSpec(
                WHALES_KEY,
                deps=[dg.AssetDep(SCORES_KEY, partition_mapping=lookback)],
            ),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def decisions_daily(context: dg.AssetExecutionContext, store: TableStore,
                        mlflow: MlflowResource):
        window = DateWindow.from_time_window(context.partition_time_window)
        since = DateWindow(window.start - timedelta(days=policy.rising_risk_days), window.end)
        scores = to_polars(store.read(SCORES, since, SNAPSHOT))
        learned, changes = learned_settings(store, settings, window.start)
        champion = mlflow.load_uplift_champion() if policy.kind == "budget" else None
        value_source = (f"uplift_model v{champion[1]}" if champion else
                        "save rates" + (" (measured where trustworthy)" if changes.height
                                        else " (configured)"))
        retention = measured_control_retention(store, window.start)
        days, plans, fed, whales = [], [], 0, 0
        # A chunk of days is decided in memory and written as one commit per table: each
        # day's cooldown sees the chunk's earlier days from memory, as it would from the table.
        for chunk in chunks(window, CHUNK_DAYS):
            selected = recently_selected(store, chunk.start, policy.cooldown_days)
            feeds, vips = [], []
            for day in chunk.days:
                today = scores.filter(pl.col(SNAPSHOT) == day)
                cooling = selected.filter(
                    pl.col(SNAPSHOT) >= day - timedelta(days=policy.cooldown_days))
                eligible = today.join(cooling, on="customer_id", how="anti")
                predicted = (predicted_uplift(store, champion[0], eligible, day) if champion
                             else None)
                decided = decide(eligible, learned.decisions, uplift=predicted,
                                 window_days=settings.scoring.outcome_window_days,
                                 retention=retention)
                feed = crm_feed(decided.decisions).join(
                    decided.decisions.select("customer_id", *DECIDED_EXTRA), on="customer_id")
                selected = pl.concat([selected, feed.select(selected.columns)])
                earlier = scores.filter(
                    pl.col(SNAPSHOT) == day - timedelta(days=policy.rising_risk_days))
                vip = whale_list(today, earlier, policy, learned.decisions.bands)
                feeds.append(feed)
                vips.append(vip)
                days.append(decided.days)
                plans.append(decided.power)
                fed, whales = fed + feed.height, whales + vip.height
            # Tables written before the experiment columns existed gain them (old rows: null,
            # read as not randomized).
            store.replace_window(ACTIONS, pl.concat(feeds), chunk, SNAPSHOT,
                                 allow_new_columns=True)
            store.replace_window(WHALES, pl.concat(vips), chunk, SNAPSHOT)
        summary = pl.concat(days) if days else pl.DataFrame()
        plan = pl.concat(plans) if plans else pl.DataFrame()
        latest_plan = plan.filter(pl.col(SNAPSHOT) == plan[SNAPSHOT].max()) if plan.height \
            else plan
        warning = power_warning(latest_plan) if latest_plan.height else None
        if warning:
            context.log.warning(warning)
        spend = float(summary["treated_cost"].sum()) if summary.height else 0.0
        committed = float(summary["committed_cost"].max()) if summary.height else 0.0
        feed_now = to_polars(store.read(ACTIONS, window, SNAPSHOT))
        yield dg.MaterializeResult(asset_key=ACTIONS_KEY, metadata={
            "dagster/row_count": fed,
            "policy": policy.kind,
            "actions_valued_with": value_source if policy.kind == "budget" else "band rules",
            "daily_budget": policy.daily_budget,
            "selection": budget_note(policy.daily_budget, fed),
            "max_committed_per_day": round(committed, 2),
            "treated_spend": round(spend, 2),
            "explored_customers": int(summary["customers_explored"].sum()) if summary.height
            else 0,
            "explore_spend": round(float(summary["explore_cost"].sum()), 2) if summary.height
            else 0.0,
            "expected_value": round(float(summary["expected_value"].sum()), 2)
            if summary.height else 0.0,
            "by_action": dg.MetadataValue.json(dict(
                feed_now.group_by("action").len().sort("action").iter_rows())),
            "control_customers": int(feed_now["control"].sum()) if feed_now.height else 0,
            "power": dg.MetadataValue.md(markdown_preview(latest_plan.drop(SNAPSHOT), rows=10,
                                                          columns=9))
            if latest_plan.height else "no action selected",
            "power_warning": warning or "none: every selected action reaches the target",
            "save_rates_from_measured_uplift": dg.MetadataValue.md(markdown_preview(
                changes, rows=10)) if changes.height else "none yet",
            "preview": dg.MetadataValue.md(markdown_preview(
                feed_now.select("customer_id", "action", "cost", "expected_value", "control",
                                "assignment", "propensity", "reason"))),
        })
        yield dg.MaterializeResult(asset_key=WHALES_KEY, metadata={"dagster/row_count": whales})

    return [decisions_daily, build_outcomes_asset(partitions_def, settings)]


def build_outcomes_asset(partitions_def, settings: Settings) -> dg.AssetsDefinition:
    days = settings.scoring.outcome_window_days
    outcome_window = dg.TimeWindowPartitionMapping(start_offset=0, end_offset=days)

    @dg.asset(
        key=OUTCOMES_KEY,
        deps=[ACTIONS_KEY, dg.AssetDep(catalog.DAILY_ACTIVITY.key, partition_mapping=outcome_window)],
        metadata={"outcome_window_days": days},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=on_upstream_change(),
        check_specs=[dg.AssetCheckSpec(
            OPE_CHECK, asset=OUTCOMES_KEY,
            description="Off-policy evaluation on every measured exploration row: the value "
            "per eligible customer of the configured policy, of the band rules and of no "
            "action (inverse propensity, 95% interval); warns when the policy is worse than "
            "either.")],
    )
    def campaign_outcomes(context: dg.AssetExecutionContext, store: TableStore):
        window = DateWindow.from_time_window(context.partition_time_window)
        latest = last_arrival(store, PAYMENTS)
        ready_through = latest - timedelta(days=days) if latest else None
        if ready_through is None or window.end - timedelta(days=1) > ready_through:
            raise dg.Failure(
                description=f"outcomes of {window} need data through "
                f"{window.end - timedelta(days=1) + timedelta(days=days)} ([scoring] "
                f"outcome_window_days = {days}); data has arrived through {latest}. "
                f"Outcomes can be measured through {ready_through}.")
        feed = to_polars(store.read(ACTIONS, window, SNAPSHOT))
        activity = to_polars(store.read(
            ACTIVITY, DateWindow(window.start, window.end + timedelta(days=days + 30)), ARRIVAL,
            columns=["customer_id", "event_date", "arrival_date", "orders", "revenue"]))
        measured = measure(crm_feed(feed), outcomes_from_activity(feed, activity, days))
        carried = with_experiment_columns(feed).select(
            "customer_id", SNAPSHOT, "treated", "churn_probability", "retention_uplift",
            *EXPERIMENT_COLUMNS)
        measured = measured.join(carried, on=["customer_id", SNAPSHOT], how="left")
        store.replace_window(OUTCOMES, measured, window, SNAPSHOT, allow_new_columns=True)
        policy_rows = policy_arm(measured)
        per_action = uplift(policy_rows, by=("action",)) if policy_rows.height \
            else pl.DataFrame()
        explored = explore_arm_uplift(measured)
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": measured.height,
            "outcome_window_days": days,
            "uplift_by_action": dg.MetadataValue.md(markdown_preview(
                per_action.select("action", "treated_n", "control_n", "uplift", "uplift_low",
                                  "uplift_high", "cost_per_saved_customer"), rows=10))
            if per_action.height else "no campaigns",
            "explore_uplift_by_action": dg.MetadataValue.md(markdown_preview(
                explored.select("action", "treated_n", "control_n", "uplift", "uplift_low",
                                "uplift_high", "revenue_uplift"), rows=10))
            if explored.height else "no exploration rows",
            "not_randomized_rows": int((~measured["randomized"].fill_null(False)).sum()),
        })
        yield ope_result(to_polars(store.read(OUTCOMES)))

    return campaign_outcomes
