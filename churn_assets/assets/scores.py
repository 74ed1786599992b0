"""Daily scores: every at-risk customer's calibrated churn probability, risk band, CLTV,
revenue at risk and top drivers, by the champion model only.

A challenger the gate refused never scores: the model is loaded by the ``champion`` alias.
Customers outside the model's population (cancelled, or no order within the label horizon:
churned by the label's own definition) are not scored; they are win-back, not retention.
"""


from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl

from churn_assets import catalog
from churn_assets.assets.common import markdown_preview
from churn_assets.ml.cltv_compare import KeptCltv
from churn_assets.ml.dataset import only_at_risk
from churn_assets.ml.gate import GatePolicy, NoChampionError
from churn_assets.ml.registry import score_with
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.drift import drift_reference, scored_population
from churn_assets.steps.reads import CHUNK_DAYS, chunks, to_polars
from churn_assets.transforms.engine import map_frames

SCORES, SCORES_KEY = catalog.SCORES.full_name, catalog.SCORES.key
FEATURES, SNAPSHOT = catalog.CUSTOMER_FEATURES.full_name, catalog.SNAPSHOT_DATE
CLTV_TABLE, REFERENCE = catalog.CLTV_MODEL.full_name, catalog.TRAINING_REFERENCE.full_name
DRIFT_CHECK = "feature_drift"
SCORE_COLUMNS = {
    "snapshot_date": pl.Date, "customer_id": pl.String, "segment": pl.String,
    "churn_probability": pl.Float64, "risk_band": pl.String, "cltv": pl.Float64,
    "revenue_at_risk": pl.Float64, "driver_1": pl.String, "driver_2": pl.String,
    "driver_3": pl.String, "model_version": pl.String,
}


def score_day(features: pl.DataFrame, model, version: str, cltv: KeptCltv, settings: Settings,
              predicted: pl.DataFrame | None = None) -> pl.DataFrame:
    """``SCORE_COLUMNS`` for one day's at-risk features; ``predicted`` is the model's output for
    exactly these rows, in their order, when it was computed for a larger batch."""
    if features.is_empty():
        return pl.DataFrame(schema=SCORE_COLUMNS)
    if predicted is None:
        predicted = score_with(model, features)
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


@dataclass(frozen=True)
class DailyScorer:
    """Scores any batch of gold feature rows: the at-risk ones, the model once for the whole
    batch (its SHAP drivers are computed per tree and batch, so a backfill's days share the
    work), then day by day (the CLTV and the model's outputs join on ``customer_id``, which is
    unique only within a day).

    Row-local, so ``map_frames`` can run it per Arrow batch on Spark executors; it carries the
    champion pyfunc and the CLTV parameters to them (pickled with it), never a resource.
    """

    model: Any
    version: str
    cltv: KeptCltv
    settings: Settings

    def __call__(self, features: pl.DataFrame) -> pl.DataFrame:
        features = only_at_risk(features, self.settings.labels.horizon_days)
        if features.is_empty():
            return pl.DataFrame(schema=SCORE_COLUMNS)
        # Row-aligned with ``features``, so both split into the same days in the same order.
        predicted = score_with(self.model, features).with_columns(features[SNAPSHOT])
        days = features.partition_by(SNAPSHOT, maintain_order=True)
        outputs = predicted.partition_by(SNAPSHOT, maintain_order=True, include_key=False)
        return pl.concat([pl.DataFrame(schema=SCORE_COLUMNS)] + [
            score_day(day, self.model, self.version, self.cltv, self.settings, output)
            for day, output in zip(days, outputs, strict=True)])


def load_cltv(store: TableStore) -> KeptCltv:
    if not store.exists(CLTV_TABLE):
        raise dg.Failure("no CLTV model yet: materialize ml/cltv_model (the training job) first")
    row = to_polars(store.read(CLTV_TABLE)).row(0, named=True)
    return KeptCltv.from_row(row)


def build_scores_asset(partitions_def, settings: Settings) -> dg.AssetsDefinition:
    drift = settings.decisions.drift

    @dg.asset(
        key=SCORES_KEY,
        deps=[catalog.CUSTOMER_FEATURES.key, catalog.CHURN_MODEL.key, catalog.CLTV_MODEL.key],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec(
            DRIFT_CHECK, asset=SCORES_KEY,
            description=f"Population stability of every model feature and of the score against "
            f"the training reference: warn from PSI {drift.warn}, error from {drift.error}.")],
    )
    def daily_scores(context: dg.AssetExecutionContext, store: TableStore,
                     mlflow: MlflowResource):
        window = DateWindow.from_time_window(context.partition_time_window)
        try:
            model = mlflow.load_champion(GatePolicy.from_settings(settings.model))
            version = mlflow.champion_version()
        except NoChampionError as exc:
            raise dg.Failure(description=f"cannot score: {exc}") from exc
        scorer = DailyScorer(model, version, load_cltv(store), settings)
        # Scored where the rows are (Spark executors, or Polars in process); a backfill commits
        # a chunk of days at a time, which bounds the Polars path's memory.
        for chunk in chunks(window, CHUNK_DAYS):
            scored = map_frames(store.read(FEATURES, chunk, SNAPSHOT), scorer, SCORE_COLUMNS)
            store.replace_window(SCORES, scored, chunk, SNAPSHOT)

        # Summaries of what the table now holds, aggregated by the engine.
        scores = nw.from_native(store.read(SCORES, window, SNAPSHOT))
        totals = to_polars(scores.select(
            rows=nw.len(), revenue_at_risk=nw.col("revenue_at_risk").sum(),
            mean_probability=nw.col("churn_probability").mean(),
            latest=nw.col(SNAPSHOT).max())).row(0, named=True)
        bands = to_polars(scores.group_by("risk_band").agg(nw.len()).sort("risk_band"))
        context.log.info(f"scored {totals['rows']} customer-days with churn_model v{version}")
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": totals["rows"],
            "model_version": version,
            "customers_by_band": dg.MetadataValue.json(dict(bands.iter_rows())),
            "revenue_at_risk": round(float(totals["revenue_at_risk"] or 0), 2),
            "mean_churn_probability": round(float(totals["mean_probability"] or 0), 4),
            "preview": dg.MetadataValue.md(markdown_preview(
                scores.sort("revenue_at_risk", descending=True).head(5).to_native())),
        })
        yield drift_result(store, totals["latest"], settings)

    return daily_scores


def drift_result(store: TableStore, day: date | None, settings: Settings
                 ) -> dg.AssetCheckResult:
    """PSI of the latest scored day (the population a decision acts on) against the champion's
    validation rows. One day's at-risk rows are collected to the driver to bin them."""
    if not store.exists(REFERENCE) or day is None:
        return dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=True,
                                   description="no training reference yet: nothing to compare"
                                   if day else "no customer was scored: nothing to compare")
    population = scored_population(store, settings, DateWindow.day(day))
    report = drift_reference(store, settings, population).compare(population)
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
