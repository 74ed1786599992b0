"""Model lifecycle: the churn model (trained, calibrated, explained, registered, gated) and the
CLTV model, each an unpartitioned asset over the gold history.

Training runs only when the latest evaluation of every blocking data expectation upstream
passed: in the same run Dagster already stops it, and this also covers a retraining run days
after a failed check. The gate's decision is an asset check on ``ml/churn_model``.
"""


from datetime import timedelta

import dagster as dg
import polars as pl

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview
from churn_assets.ml.churn_model import ChurnTrainingConfig, train_churn_model
from churn_assets.ml.cltv import actual_revenue, fit_cltv
from churn_assets.ml.cltv_compare import BOOSTED_COLUMNS, KeptCltv, compare_cltv, fit_boosted_cltv
from churn_assets.ml.dataset import only_at_risk
from churn_assets.ml.forecast import (
    ALL,
    NOT_ENOUGH_HISTORY,
    ForecastConfig,
    daily_revenue_by_segment,
    forecast_revenue,
    weekly_revenue,
)
from churn_assets.ml.gate import GatePolicy
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.reads import column_bound, first_arrival, to_polars

FEATURES, LABELS = catalog.CUSTOMER_FEATURES.full_name, catalog.CHURN_LABELS.full_name
SNAPSHOT = catalog.SNAPSHOT_DATE
PAYMENTS = catalog.silver("payments").full_name
CHURN_MODEL_KEY, CLTV_MODEL_KEY = catalog.CHURN_MODEL.key, catalog.CLTV_MODEL.key
CLTV_TABLE = catalog.CLTV_MODEL.full_name
# Validation rows with their calibrated score: what drift is measured against.
REFERENCE = catalog.TRAINING_REFERENCE.full_name
REFERENCE_ROWS = 50_000
GATE_CHECK = "promotion_gate"
SHOWN_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10pct", "precision_at_10pct",
                 "rows", "base_rate")


def failed_blocking_checks(instance: dg.DagsterInstance) -> list[str]:
    """Blocking checks whose latest evaluation failed with ERROR, as 'asset:check (why)'."""
    failed = []
    for check_key in catalog.blocking_data_checks():
        record = instance.get_latest_asset_check_evaluation_record(check_key)
        evaluation = record.evaluation if record else None
        if evaluation is not None and not evaluation.passed and (
                evaluation.severity == dg.AssetCheckSeverity.ERROR):
            failed.append(f"{check_key.asset_key.to_user_string()}:{check_key.name} "
                          f"({evaluation.description or 'see the UI'})")
    return failed


def refuse_on_failed_checks(context: dg.AssetExecutionContext) -> None:
    failed = failed_blocking_checks(context.instance)
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} blocking data check(s) failed on their latest run, so "
            f"the model does not train on that data: {'; '.join(failed[:5])}. Fix the data "
            "(or re-drop it), rematerialize the checked assets, then train again.",
            metadata={"failed_checks": failed},
        )


def labelled_window(store: TableStore, days: int) -> DateWindow:
    if not store.exists(LABELS):
        raise dg.Failure("no churn labels yet: materialize gold/churn_labels first (labels for "
                         "day D exist once data through D + horizon has arrived)")
    last = column_bound(store, LABELS, SNAPSHOT, "max")
    if last is None:
        raise dg.Failure("gold/churn_labels is empty: no snapshot day has a full label window")
    return DateWindow(last - timedelta(days=days - 1), last + timedelta(days=1))


def build_churn_model_asset(settings: Settings) -> dg.AssetsDefinition:
    model = settings.model
    horizon = settings.labels.horizon_days

    @dg.asset(
        key=CHURN_MODEL_KEY,
        deps=[catalog.CUSTOMER_FEATURES.key, catalog.CHURN_LABELS.key],
        check_specs=[dg.AssetCheckSpec(
            GATE_CHECK, asset=CHURN_MODEL_KEY,
            description=f"The challenger's validation ROC-AUC is >= {model.auc_floor}, at "
            f"most {model.max_auc_drop} below the champion's on the same rows, and above "
            "recency alone.")],
    )
    def churn_model(context: dg.AssetExecutionContext, store: TableStore, mlflow: MlflowResource):
        refuse_on_failed_checks(context)
        window = labelled_window(store, model.training_days)
        # Filtered in the engine: only the modelled population reaches the driver.
        features = to_polars(only_at_risk(store.read(FEATURES, window, SNAPSHOT), horizon))
        labels = to_polars(store.read(LABELS, window, SNAPSHOT))
        config = ChurnTrainingConfig.from_settings(model, horizon)
        context.log.info(f"training on labelled snapshots {window}")
        try:
            result = train_churn_model(features, labels, config)
        except ValueError as exc:
            raise dg.Failure(description=f"cannot train: {exc}") from exc
        logged = mlflow.log_training(result, tags={"dagster.run_id": context.run.run_id})
        version = mlflow.register(logged)
        decision = mlflow.gate(result.validation, GatePolicy.from_settings(model),
                               challenger=version, choice=result.choice)
        context.log.info(f"churn_model v{version}: {'; '.join(decision.reasons)}")
        if decision.promote:
            # Drift is judged against what the scoring model was validated on.
            reference = result.validation.drop("churned", "label_window_end", strict=False)
            reference = reference.with_columns(
                churn_probability=pl.Series(result.scorer_probability))
            store.overwrite(REFERENCE, reference.sample(min(REFERENCE_ROWS, reference.height),
                                                        seed=0))
        ours, base = result.metrics["model"], result.metrics["baseline"]
        yield dg.MaterializeResult(metadata={
            "model_version": version,
            "mlflow_run_id": logged.run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(logged.run_id)),
            "mlflow_model_version": dg.MetadataValue.url(mlflow.model_version_url(version)),
            "gate": "promoted to champion" if decision.promote else "refused",
            "scorer": result.chosen,
            "scorer_reason": result.choice,
            "recency_val_roc_auc": round(float(result.recency_auc), 4),
            **{f"val_{k}": round(float(ours[k]), 4) for k in SHOWN_METRICS if k in ours},
            **{f"baseline_val_{k}": round(float(base[k]), 4) for k in SHOWN_METRICS if k in base},
            "ece_uncalibrated": round(float(result.metrics["model_uncalibrated"]["ece"]), 4),
            **{f"data_{k}": str(v) for k, v in result.split.describe().items()},
            "top_features": dg.MetadataValue.md(_importance_md(result.scorer.importance)),
            "auc_by_segment": dg.MetadataValue.md(markdown_preview(result.segments, rows=20)),
        })
        yield dg.AssetCheckResult(
            check_name=GATE_CHECK,
            passed=decision.promote,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(decision.reasons),
            metadata={
                "challenger_version": version,
                "challenger_auc": round(decision.challenger_auc, 4),
                "champion_version": decision.champion_version or "none",
                "champion_auc": None if decision.champion_auc is None
                else round(decision.champion_auc, 4),
                "auc_floor": model.auc_floor,
                "max_auc_drop": model.max_auc_drop,
                "scorer": result.chosen,
                "recency_auc": None if decision.recency_auc is None
                else round(decision.recency_auc, 4),
            },
        )

    return churn_model


def build_cltv_model_asset(settings: Settings) -> dg.AssetsDefinition:
    horizon = settings.labels.horizon_days

    @dg.asset(
        key=CLTV_MODEL_KEY,
        deps=[catalog.CUSTOMER_FEATURES.key, catalog.CHURN_LABELS.key,
              catalog.silver("payments").key],
    )
    def cltv_model(context: dg.AssetExecutionContext, store: TableStore, mlflow: MlflowResource):
        refuse_on_failed_checks(context)
        last = column_bound(store, FEATURES, SNAPSHOT, "max")
        if last is None:
            raise dg.Failure("gold/customer_features is empty: materialize it first")
        # Orders before the first delivered day were never seen: customers start there.
        history_start = first_arrival(store, PAYMENTS)
        fitted = fit_cltv(to_polars(store.read(FEATURES, DateWindow.day(last), SNAPSHOT)),
                          history_start)
        report: dict[str, float] = {}
        cutoff = labelled_window(store, 1).start if store.exists(LABELS) else None
        comparison: dict = {}
        refit = None
        if cutoff is not None:
            earlier = cutoff - timedelta(days=horizon)
            at = {day: to_polars(store.read(FEATURES, DateWindow.day(day), SNAPSHOT))
                  for day in (cutoff, earlier)}
            payments = to_polars(store.read(
                PAYMENTS, columns=[
                    "customer_id", "transaction_type", "status", "amount", "event_date"]))
            comparison = compare_cltv({d: f for d, f in at.items() if f.height}, payments,
                                      cutoff, horizon, history_start)
            if comparison["chosen"] == "lightgbm_tweedie":
                # What won on the holdout, refitted on the latest window that has closed.
                refit = fit_boosted_cltv(at[cutoff], actual_revenue(
                    payments, cutoff, cutoff + timedelta(days=horizon)), horizon)
            report = {f"eval_{k}": round(float(v), 4) for k, v in
                      comparison["models"]["bgnbd_gamma_gamma"].items()
                      if isinstance(v, float | int) and not isinstance(v, bool)}
            boosted = comparison["models"].get("lightgbm_tweedie", {})
            report.update({f"boosted_eval_{k}": round(float(v), 4) for k, v in boosted.items()
                           if isinstance(v, float | int) and not isinstance(v, bool)})
        params = {**{k: getattr(fitted, k) for k in
                     ("r", "alpha", "a", "b", "p", "q", "gamma", "net_share")},
                  "history_start": fitted.history_start, "fitted_on": last}
        kept = KeptCltv(fitted, refit)
        row = pl.DataFrame([{**params, "kept": kept.kind,
                             **(refit.to_row() if refit else {})}],
                           schema_overrides=BOOSTED_COLUMNS)
        store.overwrite(CLTV_TABLE, row)
        run_id = mlflow.log_cltv({**params, "kept": kept.kind}, report)
        return dg.MaterializeResult(metadata={
            "fitted_on": str(last), "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run_id)),
            **{k: round(float(v), 6) for k, v in params.items()
               if k not in ("history_start", "fitted_on")},
            **report,
            "eval_window": f"({cutoff}, {cutoff + timedelta(days=horizon)}]" if cutoff else "none",
            "cltv_kept": kept.kind,
            "cltv_kept_reason": comparison.get("reason", "no holdout window yet"),
        })

    return cltv_model


FORECAST_KEY, FORECAST_TABLE = catalog.REVENUE_FORECAST.key, catalog.REVENUE_FORECAST.full_name
ACTIVITY, SCORES = catalog.DAILY_ACTIVITY.full_name, catalog.SCORES.full_name


def build_revenue_forecast_asset(settings: Settings) -> dg.AssetsDefinition:
    kept = settings.forecast
    config = ForecastConfig(
        horizon_weeks=kept.horizon_weeks, season_weeks=kept.season_weeks,
        backtest_origins=kept.backtest_origins, origin_step_weeks=kept.origin_step_weeks,
        min_train_weeks=kept.min_train_weeks, interval=kept.interval)

    @dg.asset(key=FORECAST_KEY,
              deps=[catalog.DAILY_ACTIVITY.key, catalog.CUSTOMER_FEATURES.key, catalog.SCORES.key])
    def revenue_forecast(context: dg.AssetExecutionContext, store: TableStore,
                         mlflow: MlflowResource):
        refuse_on_failed_checks(context)
        last_day = column_bound(store, ACTIVITY, catalog.DAILY_ACTIVITY.partition_column, "max")
        if last_day is None:
            raise dg.Failure("gold/daily_activity is empty: materialize it first")
        # Imported history arrives on the first drop day with older event days: those weeks
        # are whole, so history starts at the first event, not the first arrival.
        first_day = column_bound(store, ACTIVITY, "event_date", "min")
        segments_day = column_bound(store, FEATURES, SNAPSHOT, "max")
        segments = (store.read(FEATURES, DateWindow.day(segments_day), SNAPSHOT,
                               columns=["customer_id", "segment"]) if segments_day else None)
        daily = to_polars(daily_revenue_by_segment(
            store.read(ACTIVITY, columns=["customer_id", "event_date", "revenue"]), segments))
        weekly = weekly_revenue(daily, first_day, last_day)
        result = forecast_revenue(weekly, config)
        store.overwrite(FORECAST_TABLE, result.table)
        at_risk = _revenue_at_risk(store)
        metadata: dict = {
            "status": result.status,
            "reason": result.reason,
            "weeks_of_history": result.weeks_of_history,
            "history": f"{first_day} to {last_day} (whole weeks only)",
            "revenue_at_risk_day": str(at_risk["day"]) if at_risk else "no scores yet",
            "revenue_at_risk": round(at_risk["total"], 2) if at_risk else None,
        }
        if result.status == NOT_ENOUGH_HISTORY:
            context.log.warning(f"revenue_forecast: {result.reason}")
            return dg.MaterializeResult(metadata=metadata)
        metrics = {f"{model}_{name}": value for model, summary in result.backtest.items()
                   for name, value in summary.items()}
        forecast = result.table.filter(pl.col("kind") == "forecast")
        next_total = forecast.filter(pl.col("segment") == ALL)["forecast"].sum()
        run_id = mlflow.log_forecast(
            {"model": result.chosen, "season_weeks": result.season_weeks,
             "origin": forecast["origin"].max(), **vars(config)},
            {**metrics, "forecast_total": float(next_total)})
        # Bounds are per week: their sums only bracket the total loosely, so they are named so.
        by_segment = (forecast.group_by("segment").agg(
            forecast_revenue=pl.col("forecast").sum(),
            sum_of_weekly_lower=pl.col("lower").sum(), sum_of_weekly_upper=pl.col("upper").sum())
            .join(at_risk["by_segment"] if at_risk else pl.DataFrame(
                schema={"segment": pl.String, "revenue_at_risk": pl.Float64}),
                on="segment", how="left").sort("segment")
            .with_columns(pl.selectors.float().round(2)))
        return dg.MaterializeResult(metadata={
            **metadata,
            "model": result.chosen,
            "season_weeks": result.season_weeks,
            **{k: round(v, 4) for k, v in metrics.items()},
            "interval": config.interval,
            f"forecast_next_{config.horizon_weeks}_weeks": round(float(next_total), 2),
            "forecast_by_segment": dg.MetadataValue.md(markdown_preview(by_segment, rows=20)),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run_id)),
            "rows": result.table.height,
        })

    return revenue_forecast


def _revenue_at_risk(store: TableStore) -> dict | None:
    """Today's (the latest scored day's) revenue at risk, overall and per segment."""
    day = column_bound(store, SCORES, SNAPSHOT, "max")
    if day is None:
        return None
    scores = to_polars(store.read(SCORES, DateWindow.day(day), SNAPSHOT,
                                  columns=["segment", "revenue_at_risk"]))
    by_segment = scores.group_by("segment").agg(pl.col("revenue_at_risk").sum())
    total = float(scores["revenue_at_risk"].sum())
    return {"day": day, "total": total, "by_segment": pl.concat([
        by_segment, pl.DataFrame({"segment": [ALL], "revenue_at_risk": [total]})])}


def _importance_md(importance: pl.DataFrame, rows: int = 10) -> str:
    if importance.is_empty():
        return "_none_"
    top = importance.head(rows)
    lines = ["| feature | mean abs SHAP |", "|---|---|"]
    lines += [f"| {f} | {v:.4f} |" for f, v in top.select(top.columns[:2]).iter_rows()]
    return "\n".join(lines)


def build_model_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_churn_model_asset(settings), build_cltv_model_asset(settings)]
