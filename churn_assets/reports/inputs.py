"""Reads what one brief needs: tables through the environment's store (any engine, collected
as Polars; a page summarizes one day and a trend window, small by construction) and the model
history from the MLflow registry."""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn_assets import catalog
from churn_assets.decisions.drift import population_stability
from churn_assets.ml.dataset import only_at_risk
from churn_assets.ml.registry import CHAMPION, MODEL_NAME, MlflowLocation
from churn_assets.reports.brief import SNAPSHOT, BriefInputs
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.reads import to_polars

SCORES, FEATURES, LABELS = (t.full_name for t in (
    catalog.SCORES, catalog.CUSTOMER_FEATURES, catalog.CHURN_LABELS))
ACTIONS, WHALES, OUTCOMES = (t.full_name for t in (
    catalog.ACTIONS, catalog.WHALES, catalog.OUTCOMES))
REFERENCE = catalog.TRAINING_REFERENCE.full_name
FORECAST = catalog.REVENUE_FORECAST.full_name
TREND_DAYS = 60


def latest_scored_day(store: TableStore) -> date | None:
    if not store.exists(SCORES):
        return None
    return to_polars(store.read(SCORES, columns=[SNAPSHOT]))[SNAPSHOT].max()


def read_inputs(store: TableStore, location: MlflowLocation, settings: Settings, day: date,
                trend_days: int = TREND_DAYS, currency: str = "€",
                mlflow_ui: str | None = None) -> BriefInputs:
    window = DateWindow(day - timedelta(days=trend_days - 1), day + timedelta(days=1))

    def read(table: str, over: DateWindow | None = window, columns=None) -> pl.DataFrame:
        if not store.exists(table):
            return pl.DataFrame()
        return to_polars(store.read(table, over, SNAPSHOT, columns=columns))

    scores = read(SCORES)
    customers = read(FEATURES, columns=[SNAPSHOT])
    customers = (customers.group_by(SNAPSHOT).agg(customers=pl.len()) if customers.height
                 else pl.DataFrame(schema={SNAPSHOT: pl.Date, "customers": pl.UInt32}))
    models, importance, calibration, champion_run = model_history(location)
    links = {}
    if mlflow_ui and champion_run:
        links["champion run in MLflow"] = mlflow_run_url(mlflow_ui, location, champion_run)
    drift = settings.decisions.drift
    return BriefInputs(
        day=day, scores=scores, customers=customers,
        labels=read(LABELS, columns=[SNAPSHOT, "customer_id", "churned"]),
        actions=read(ACTIONS), whales=read(WHALES, DateWindow.day(day)),
        outcomes=read(OUTCOMES, DateWindow(date(1970, 1, 1), day + timedelta(days=1))),
        models=models, importance=importance, calibration=calibration,
        drift=drift_table(store, settings, day),
        daily_budget=settings.decisions.policy.daily_budget,
        drift_warn=drift.warn, drift_error=drift.error, auc_floor=settings.model.auc_floor,
        currency=currency, links=links,
        # The latest weekly forecast, whatever day the page is for: it is small (weeks x
        # segments) and there is one.
        forecast=(to_polars(store.read(FORECAST)).filter(pl.col("segment") == "all")
                  if store.exists(FORECAST) else pl.DataFrame()),
    )


def model_history(location: MlflowLocation, model_name: str = MODEL_NAME
                  ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, str | None]:
    """Every registered version's validation ROC-AUC (and which is champion), and the
    champion run's importance and calibration tables."""
    empty = pl.DataFrame()
    client = location.client()
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except MlflowException:
        return empty, empty, empty, None
    try:
        champion = str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        champion = None
    rows = [{"version": str(v.version), "run_id": v.run_id,
             "roc_auc": float(v.tags["val_roc_auc"]) if "val_roc_auc" in v.tags else None,
             "champion": str(v.version) == champion} for v in versions]
    models = pl.DataFrame(rows, schema={"version": pl.String, "run_id": pl.String,
                                        "roc_auc": pl.Float64, "champion": pl.Boolean})
    run_id = next((r["run_id"] for r in rows if r["champion"]), None)
    if run_id is None:
        return models, empty, empty, None
    importance = _logged_table(client, run_id, "tables/importance.json")
    calibration = _logged_table(client, run_id, "tables/calibration_model.json")
    return models, importance, calibration, run_id


def mlflow_run_url(ui: str, location: MlflowLocation, run_id: str) -> str:
    experiment = location.client().get_run(run_id).info.experiment_id
    return f"{ui.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


def drift_table(store: TableStore, settings: Settings, day: date) -> pl.DataFrame:
    """PSI per feature (and of the score) of ``day``'s scored population against the
    champion's validation rows: the numbers of the ``feature_drift`` check."""
    if not (store.exists(REFERENCE) and store.exists(SCORES)):
        return pl.DataFrame()
    reference = to_polars(store.read(REFERENCE))
    features = to_polars(only_at_risk(store.read(FEATURES, DateWindow.day(day), SNAPSHOT),
                                      settings.labels.horizon_days))
    scores = to_polars(store.read(SCORES, DateWindow.day(day), SNAPSHOT,
                                  columns=["customer_id", SNAPSHOT, "churn_probability"]))
    if scores.is_empty():
        return pl.DataFrame()
    current = features.join(scores, on=["customer_id", SNAPSHOT], how="left")
    columns = [c for c in reference.columns if c in current.columns
               and c not in ("customer_id", SNAPSHOT)]
    drift = settings.decisions.drift
    return population_stability(reference.select(columns), current.select(columns),
                                bins=drift.bins, warn=drift.warn, error=drift.error).summary


def _logged_table(client: MlflowClient, run_id: str, path: str) -> pl.DataFrame:
    """A table logged with ``mlflow.log_table`` (pandas 'split' JSON), or empty."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError):
            return pl.DataFrame()
        data = json.loads(Path(local).read_text())
    return pl.DataFrame(data["data"], schema=data["columns"], orient="row")


def brief_path(reports_dir: Path, day: date) -> Path:
    return Path(reports_dir) / "brief" / f"{day.isoformat()}.html"


def write_brief(store: TableStore, location: MlflowLocation, settings: Settings, day: date,
                reports_dir: Path, currency: str = "€", mlflow_ui: str | None = None,
                trend_days: int = TREND_DAYS) -> tuple[Path, BriefInputs]:
    """Render ``day``'s brief to ``reports_dir/brief/<day>.html`` (replacing it)."""
    from churn_assets.reports.page import render

    inputs = read_inputs(store, location, settings, day, trend_days, currency, mlflow_ui)
    out = brief_path(reports_dir, day)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed: a reader never sees half a page.
    partial = out.with_suffix(".html.tmp")
    partial.write_text(render(inputs), encoding="utf-8")
    partial.replace(out)
    return out, inputs
