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
from churn_assets.ml.registry import CHAMPION, MODEL_NAME, MlflowLocation
from churn_assets.reports.brief import SNAPSHOT, BriefInputs
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.drift import drift_reference, scored_population
from churn_assets.steps.reads import to_polars

SCORES, FEATURES, LABELS = (t.full_name for t in (
    catalog.SCORES, catalog.CUSTOMER_FEATURES, catalog.CHURN_LABELS))
ACTIONS, WHALES, OUTCOMES = (t.full_name for t in (
    catalog.ACTIONS, catalog.WHALES, catalog.OUTCOMES))
FORECAST = catalog.REVENUE_FORECAST.full_name
TREND_DAYS = 60


def latest_scored_day(store: TableStore) -> date | None:
    if not store.exists(SCORES):
        return None
    return to_polars(store.read(SCORES, columns=[SNAPSHOT]))[SNAPSHOT].max()


class BriefSource:
    """What the briefs of a window of days are drawn from, read once for the window: the trend
    window's tables for all its days, the model history and the drift reference. A backfill
    renders a page per day; reading each page's 60-day trend, the registry and the reference
    again for every day was most of a year's scoring job."""

    def __init__(self, store: TableStore, location: MlflowLocation, settings: Settings,
                 window: DateWindow, trend_days: int = TREND_DAYS, currency: str = "€",
                 mlflow_ui: str | None = None) -> None:
        self.settings, self.window, self.trend_days = settings, window, trend_days
        self.currency = currency
        trend = DateWindow(window.start - timedelta(days=trend_days - 1), window.end)

        def read(table: str, over: DateWindow = trend, columns=None) -> pl.DataFrame:
            if not store.exists(table):
                return pl.DataFrame()
            return to_polars(store.read(table, over, SNAPSHOT, columns=columns))

        self.scores = read(SCORES)
        known = store.count_rows_by_day(FEATURES, trend, SNAPSHOT)
        self.customers = pl.DataFrame({SNAPSHOT: list(known), "customers": list(known.values())},
                                      schema={SNAPSHOT: pl.Date, "customers": pl.Int64})
        self.labels = read(LABELS, columns=[SNAPSHOT, "customer_id", "churned"])
        self.actions = read(ACTIONS)
        self.whales = read(WHALES, window)
        self.outcomes = read(OUTCOMES, DateWindow(date(1970, 1, 1), window.end))
        self.models, self.importance, self.calibration, champion_run = model_history(location)
        self.links = {}
        if mlflow_ui and champion_run:
            self.links["champion run in MLflow"] = mlflow_run_url(mlflow_ui, location,
                                                                  champion_run)
        self.population = scored_population(store, settings, window, self.scores)
        self.reference = drift_reference(store, settings, self.population)
        # The latest weekly forecast, whatever day the page is for: it is small (weeks x
        # segments) and there is one.
        self.forecast = (to_polars(store.read(FORECAST)).filter(pl.col("segment") == "all")
                         if store.exists(FORECAST) else pl.DataFrame())

    def inputs(self, day: date) -> BriefInputs:
        if not self.window.start <= day < self.window.end:
            raise ValueError(f"{day} is outside the brief source's window {self.window}")
        first = day - timedelta(days=self.trend_days - 1)

        def trend(frame: pl.DataFrame) -> pl.DataFrame:
            return frame if frame.is_empty() else frame.filter(pl.col(SNAPSHOT).is_between(first, day))

        def through(frame: pl.DataFrame) -> pl.DataFrame:
            return frame if frame.is_empty() else frame.filter(pl.col(SNAPSHOT) <= day)

        def on(frame: pl.DataFrame) -> pl.DataFrame:
            return frame if frame.is_empty() else frame.filter(pl.col(SNAPSHOT) == day)

        drift = self.settings.decisions.drift
        return BriefInputs(
            day=day, scores=trend(self.scores), customers=trend(self.customers),
            labels=trend(self.labels), actions=trend(self.actions), whales=on(self.whales),
            outcomes=through(self.outcomes), models=self.models, importance=self.importance,
            calibration=self.calibration, drift=self.drift(day),
            daily_budget=self.settings.decisions.policy.daily_budget,
            drift_warn=drift.warn, drift_error=drift.error,
            auc_floor=self.settings.model.auc_floor, currency=self.currency, links=self.links,
            forecast=self.forecast,
        )

    def drift(self, day: date) -> pl.DataFrame:
        """PSI per feature (and of the score) of ``day``'s scored population against the
        champion's validation rows: the numbers of the ``feature_drift`` check."""
        if self.reference is None:
            return pl.DataFrame()
        current = self.population.filter(pl.col(SNAPSHOT) == day)
        if current.is_empty():
            return pl.DataFrame()
        return self.reference.compare(current).summary


def read_inputs(store: TableStore, location: MlflowLocation, settings: Settings, day: date,
                trend_days: int = TREND_DAYS, currency: str = "€",
                mlflow_ui: str | None = None) -> BriefInputs:
    """One day's ``BriefInputs``."""
    return BriefSource(store, location, settings, DateWindow.day(day), trend_days, currency,
                       mlflow_ui).inputs(day)


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
    inputs = read_inputs(store, location, settings, day, trend_days, currency, mlflow_ui)
    return write_page(inputs, reports_dir), inputs


def write_page(inputs: BriefInputs, reports_dir: Path) -> Path:
    """Render ``inputs`` to ``reports_dir/brief/<day>.html`` (replacing it)."""
    from churn_assets.reports.page import render

    out = brief_path(reports_dir, inputs.day)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed: a reader never sees half a page.
    partial = out.with_suffix(".html.tmp")
    partial.write_text(render(inputs), encoding="utf-8")
    partial.replace(out)
    return out
