"""Daily scores: every at-risk customer's calibrated churn probability, risk band, CLTV,
revenue at risk and top drivers, by the champion model only.

A challenger the gate refused never scores: the model is loaded by the ``champion`` alias.
Customers outside the model's population (cancelled, or no order within the label horizon:
churned by the label's own definition) are not scored; they are win-back, not retention.
"""


from datetime import timedelta

import dagster as dg
import polars as pl

from churn_assets.assets.common import markdown_preview, to_polars
from churn_assets.assets.gold import FEATURES, SNAPSHOT, key
from churn_assets.assets.model import CHURN_MODEL_KEY, CLTV_MODEL_KEY, CLTV_TABLE, REFERENCE
from churn_assets.decisions.drift import population_stability
from churn_assets.ml.cltv import CltvModel
from churn_assets.ml.dataset import at_risk
from churn_assets.ml.gate import NoChampionError
from churn_assets.ml.registry import scoring_input
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings

SCORES = "scores.daily"
SCORES_KEY = dg.AssetKey(["scores", "daily"])
DRIFT_CHECK = "feature_drift"
SCORE_COLUMNS = {
    "snapshot_date": pl.Date, "customer_id": pl.String, "segment": pl.String,
    "churn_probability": pl.Float64, "risk_band": pl.String, "cltv": pl.Float64,
    "revenue_at_risk": pl.Float64, "driver_1": pl.String, "driver_2": pl.String,
    "driver_3": pl.String, "model_version": pl.String,
}


def score_day(features: pl.DataFrame, model, version: str, cltv: CltvModel, settings: Settings
              ) -> pl.DataFrame:
    """``SCORE_COLUMNS`` for one day's at-risk features."""
    if features.is_empty():
        return pl.DataFrame(schema=SCORE_COLUMNS)
    predicted = pl.from_pandas(model.predict(scoring_input(model, features)))
    value = cltv.predict(features, settings.model.cltv_horizon_days).select("customer_id", "cltv")
    drivers = [c for c in predicted.columns if c.startswith("driver_") and c[7:].isdigit()]
    scored = (
        features.select("snapshot_date", "customer_id", "segment")
        .join(predicted.select("customer_id", "churn_probability", *drivers), on="customer_id")
        .join(value, on="customer_id", how="left")
        .with_columns(
            settings.decisions.bands.band("churn_probability"),
            revenue_at_risk=pl.col("churn_probability") * pl.col("cltv"),
            model_version=pl.lit(version),
        )
    )
    # A model on fewer than three features has fewer drivers: the rest are null.
    return scored.select(pl.col(c).cast(t) if c in scored.columns else pl.lit(None, dtype=t).alias(c)
                         for c, t in SCORE_COLUMNS.items())


def load_cltv(store: TableStore) -> CltvModel:
    if not store.exists(CLTV_TABLE):
        raise dg.Failure("no CLTV model yet: materialize ml/cltv_model (the training job) first")
    row = to_polars(store.read(CLTV_TABLE)).row(0, named=True)
    return CltvModel(**{k: v for k, v in row.items() if k != "fitted_on"})


def build_scores_asset(partitions_def, settings: Settings) -> dg.AssetsDefinition:
    horizon = settings.labels.horizon_days
    drift = settings.decisions.drift

    @dg.asset(
        key=SCORES_KEY,
        group_name="scores",
        kinds={"mlflow", "polars", "delta"},
        deps=[key(FEATURES), CHURN_MODEL_KEY, CLTV_MODEL_KEY],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description="Per at-risk customer and day: calibrated churn probability (champion "
        "model), risk band, CLTV, revenue at risk (probability x CLTV), the top three drivers "
        "and the model version that scored.",
        check_specs=[dg.AssetCheckSpec(
            DRIFT_CHECK, asset=SCORES_KEY,
            description=f"Population stability of every model feature and of the score against "
            f"the training reference: warn from PSI {drift.warn}, error from {drift.error}.")],
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=24 + settings.freshness.due_hours + 1),
            warn_window=timedelta(hours=24)),
    )
    def daily_scores(context: dg.AssetExecutionContext, store: TableStore,
                     mlflow: MlflowResource):
        window = DateWindow.from_time_window(context.partition_time_window)
        try:
            model, version = mlflow.load_champion(), mlflow.champion_version()
        except NoChampionError as exc:
            raise dg.Failure(description=f"cannot score: {exc}") from exc
        cltv = load_cltv(store)
        features = to_polars(store.read(FEATURES, window, SNAPSHOT)).filter(at_risk(horizon))
        days = []
        for day in window.days:
            scored = score_day(features.filter(pl.col(SNAPSHOT) == day), model, version, cltv,
                               settings)
            store.replace_window(SCORES, scored, DateWindow.day(day), SNAPSHOT)
            days.append(scored)
        scores = pl.concat(days)
        context.log.info(f"scored {scores.height} customer-days with churn_model v{version}")
        bands = scores["risk_band"].value_counts().sort("risk_band")
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": scores.height,
            "model_version": version,
            "customers_by_band": dg.MetadataValue.json(dict(bands.iter_rows())),
            "revenue_at_risk": round(float(scores["revenue_at_risk"].sum()), 2),
            "mean_churn_probability": round(float(scores["churn_probability"].mean() or 0), 4),
            "preview": dg.MetadataValue.md(markdown_preview(
                scores.sort("revenue_at_risk", descending=True))),
        })
        yield drift_result(store, features, scores, settings)

    return daily_scores


def drift_result(store: TableStore, features: pl.DataFrame, scores: pl.DataFrame,
                 settings: Settings) -> dg.AssetCheckResult:
    drift = settings.decisions.drift
    if not store.exists(REFERENCE):
        return dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=True,
                                   description="no training reference yet: nothing to compare")
    reference = to_polars(store.read(REFERENCE))
    # The latest scored day is the population a decision acts on.
    day = scores[SNAPSHOT].max() if scores.height else None
    current = features.filter(pl.col(SNAPSHOT) == day).join(
        scores.select("customer_id", SNAPSHOT, "churn_probability"),
        on=["customer_id", SNAPSHOT], how="left")
    columns = [c for c in reference.columns if c in current.columns
               and c not in ("customer_id", SNAPSHOT)]
    report = population_stability(reference.select(columns), current.select(columns),
                                  bins=drift.bins, warn=drift.warn, error=drift.error)
    summary = report.summary.sort("psi", descending=True)
    worst = summary.filter(pl.col("status") != "ok")
    severity = (dg.AssetCheckSeverity.ERROR if (summary["status"] == "error").any()
                else dg.AssetCheckSeverity.WARN)
    score_psi = summary.filter(pl.col("feature") == "churn_probability")["psi"]
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=worst.is_empty(),
        severity=severity,
        description=(f"{worst.height} of {summary.height} columns drifted on {day} "
                     f"(e.g. {', '.join(worst['feature'].head(3).to_list())})"
                     if worst.height else f"no column drifted on {day}"),
        metadata={
            "day": str(day),
            "score_psi": round(float(score_psi[0]), 4) if score_psi.len() else None,
            "psi": dg.MetadataValue.md(markdown_preview(
                summary.select("feature", "psi", "status"), rows=40)),
            "histograms": dg.MetadataValue.md(markdown_preview(
                report.histogram.filter(pl.col("feature").is_in(
                    summary["feature"].head(3).to_list())), rows=40)),
        },
    )
