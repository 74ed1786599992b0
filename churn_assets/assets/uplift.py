"""The uplift model: per customer and action, the predicted effect on retention and revenue
over the outcome window, learned from the decisions' own randomized arms (``ml/uplift.py``),
tracked in MLflow and promoted to champion only through its Qini gate.

Without a champion the budget policy values actions with save rates (configured, or measured
where the measurement is trustworthy); the asset's metadata says so and how many more
randomized outcomes each arm needs.
"""


from datetime import date, timedelta

import dagster as dg
import polars as pl

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview
from churn_assets.decisions.config import ACTIONS
from churn_assets.ml.uplift import UpliftTrainingConfig, train_uplift
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.reads import CHUNK_DAYS, chunks, column_bound, to_polars

UPLIFT_MODEL_KEY = catalog.UPLIFT_MODEL.key
UPLIFT_GATE_CHECK = "uplift_gate"
OUTCOMES, OUTCOMES_KEY = catalog.OUTCOMES.full_name, catalog.OUTCOMES.key
FEATURES, SNAPSHOT = catalog.CUSTOMER_FEATURES.full_name, catalog.SNAPSHOT_DATE


def campaign_features(store: TableStore, measured: pl.DataFrame) -> pl.DataFrame:
    """The gold feature rows of the measured customers on their decision days (the rows their
    scores were computed from), read a chunk of days at a time."""
    if measured.is_empty():
        return pl.DataFrame()
    keys = measured.select("customer_id", SNAPSHOT).unique()
    window = DateWindow(keys[SNAPSHOT].min(), keys[SNAPSHOT].max() + timedelta(days=1))
    parts = [to_polars(store.read(FEATURES, chunk, SNAPSHOT)).join(
        keys, on=["customer_id", SNAPSHOT], how="semi") for chunk in chunks(window, CHUNK_DAYS)]
    return pl.concat(parts, how="vertical_relaxed")


def build_uplift_asset(settings: Settings) -> dg.AssetsDefinition:
    config = settings.decisions.uplift
    window_days = settings.scoring.outcome_window_days

    @dg.asset(
        key=UPLIFT_MODEL_KEY,
        deps=[OUTCOMES_KEY, catalog.CUSTOMER_FEATURES.key],
        check_specs=[dg.AssetCheckSpec(
            UPLIFT_GATE_CHECK, asset=UPLIFT_MODEL_KEY,
            description="On the latest held-out campaign days, the model's Qini coefficient is "
            "above random targeting (0) and above ranking by churn risk.")],
    )
    def uplift_model(context: dg.AssetExecutionContext, store: TableStore,
                     mlflow: MlflowResource):
        measured = pl.DataFrame()
        if store.exists(OUTCOMES):
            last = column_bound(store, OUTCOMES, SNAPSHOT, "max")
            if last is not None:
                since = DateWindow(last - timedelta(days=config.training_days - 1),
                                   last + timedelta(days=1))
                measured = to_polars(store.read(OUTCOMES, since, SNAPSHOT))
        training = train_uplift(
            measured, campaign_features(store, measured), list(ACTIONS),
            UpliftTrainingConfig(min_arm_rows=config.min_arm_rows,
                                 min_holdout_arm=config.min_holdout_arm,
                                 holdout_share=config.holdout_share),
            window_days=window_days) if measured.height else None
        if training is None:
            reason = "no campaign has a measured outcome window yet (decisions/outcomes)"
            yield dg.MaterializeResult(metadata={
                "status": "not trained: " + reason,
                "policy_values_actions_with": _fallback(mlflow),
                "outcomes_needed": dg.MetadataValue.json(
                    {arm: config.min_arm_rows for arm in (*ACTIONS, "no_action")}),
            })
            yield dg.AssetCheckResult(check_name=UPLIFT_GATE_CHECK, passed=False,
                                      severity=dg.AssetCheckSeverity.WARN, description=reason)
            return
        logged = mlflow.log_uplift(training, tags={"dagster.run_id": context.run.run_id})
        prepared, decision = training.prepared, training.decision
        context.log.info(f"uplift_model: {'; '.join(decision.reasons)}")
        status = ("promoted to champion" if logged.promoted else
                  "refused by the gate" if logged.version else "not trained: too few outcomes")
        yield dg.MaterializeResult(metadata={
            "status": status,
            "model_version": logged.version or "none",
            "champion_version": logged.champion or "none",
            "mlflow_run_id": logged.run_id,
            "policy_values_actions_with": f"uplift_model v{logged.champion}" if logged.champion
            else _fallback(None, training.needed),
            "training_rows": prepared.rows.height,
            "not_randomized_rows_excluded": prepared.not_randomized,
            "rows_without_features_excluded": prepared.without_features,
            "outcomes_needed": dg.MetadataValue.json(training.needed),
            "train_days": _span(training.train_days),
            "holdout_days": _span(training.holdout_days),
            "holdout_qini_model": _round(decision.qini_model),
            "holdout_qini_churn_risk": _round(decision.qini_risk),
            "holdout_evaluation": dg.MetadataValue.md(markdown_preview(
                training.evaluation, rows=10, columns=8)) if training.evaluation.height
            else "not evaluated",
        })
        yield dg.AssetCheckResult(
            check_name=UPLIFT_GATE_CHECK, passed=decision.promote,
            severity=dg.AssetCheckSeverity.WARN, description="; ".join(decision.reasons),
            metadata={"challenger_version": logged.version or "none",
                      "champion_version": logged.champion or "none",
                      "qini_model": _round(decision.qini_model),
                      "qini_churn_risk": _round(decision.qini_risk)})

    return uplift_model


def _fallback(mlflow: MlflowResource | None, needed: dict[str, int] | None = None) -> str:
    champion = mlflow.load_uplift_champion() if mlflow is not None else None
    if champion is not None:
        return f"uplift_model v{champion[1]}"
    more = sum((needed or {}).values())
    return ("save rates (configured, or measured where trustworthy): no uplift model has "
            "passed its gate" + (f"; {more} more randomized outcomes needed" if more else ""))


def _span(days: tuple[date, date] | None) -> str:
    return "none" if not days else f"{days[0]} .. {days[1]}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
