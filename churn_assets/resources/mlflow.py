"""MLflow as a Dagster resource: a thin, typed wrapper over ``churn_assets.ml.registry``.

Defaults work locally with nothing configured: tracking and registry in
``$CHURN_HOME/mlflow/mlflow.db`` (SQLite: the registry needs a database), artifacts in
``$CHURN_HOME/mlflow/artifacts``. Set ``tracking_uri`` (and ``registry_uri`` if it differs,
e.g. ``databricks-uc``) for a shared server; secrets belong in ``dg.EnvVar``.

Not ``dagster-mlflow``: its ``mlflow_tracking`` resource is legacy and opens a run for the whole
Dagster run, while a training here is one short run opened and closed inside ``log_training``,
so there is no dangling run for its end-of-run hook to close.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
from pydantic import Field

from churn_assets.ml.churn_model import TrainingResult
from churn_assets.ml.gate import GateDecision, GatePolicy
from churn_assets.ml.registry import (
    EXPERIMENT,
    MODEL_NAME,
    LoggedTraining,
    MlflowLocation,
)
from churn_assets.ml.registry import champion_version as registry_champion_version
from churn_assets.ml.registry import gate as run_gate
from churn_assets.ml.registry import load_champion as registry_champion
from churn_assets.ml.registry import log_cltv as registry_log_cltv
from churn_assets.ml.registry import log_forecast as registry_log_forecast
from churn_assets.ml.registry import log_training as registry_log
from churn_assets.ml.registry import register as registry_register
from churn_assets.ml.uplift import UpliftModel, UpliftTraining
from churn_assets.ml.uplift_registry import LoggedUplift
from churn_assets.ml.uplift_registry import load_uplift_champion as registry_uplift_champion
from churn_assets.ml.uplift_registry import log_uplift as registry_log_uplift
from churn_assets.settings import Paths

DEFAULT_UI_URL = "http://127.0.0.1:5000"


class MlflowResource(dg.ConfigurableResource):
    """Tracking, registry and the champion gate for ``churn_model``."""

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (e.g. 'databricks'); default: a SQLite store "
        "under tracking_root")
    tracking_root: str | None = Field(
        None, description="Folder of the local SQLite store and artifacts; default "
        "$CHURN_HOME/mlflow")
    registry_uri: str | None = Field(None, description="Model registry URI; default: tracking_uri")
    experiment: str = Field(EXPERIMENT, description="Experiment every training run goes to")
    artifact_location: str | None = Field(
        None, description="Where the experiment keeps artifacts (used when it is created); "
        "default $CHURN_HOME/mlflow/artifacts")
    model_name: str = Field(MODEL_NAME, description="Registered model name")
    ui_url: str = Field(DEFAULT_UI_URL, description="Where people open the MLflow UI on this "
                        "store (`churn-assets mlflow` serves it there locally); Dagster "
                        "metadata links runs and model versions to it")

    def location(self) -> MlflowLocation:
        if self.tracking_uri is None:
            root = Path(self.tracking_root) if self.tracking_root else Paths.from_env().mlflow
            local = MlflowLocation.under(root, self.experiment)
            return MlflowLocation(local.tracking_uri, self.registry_uri or local.registry_uri,
                                  self.experiment, self.artifact_location or local.artifact_location)
        return MlflowLocation(self.tracking_uri, self.registry_uri or self.tracking_uri,
                              self.experiment, self.artifact_location)

    def run_url(self, run_id: str) -> str:
        """The run's page in the MLflow UI."""
        experiment = self.location().client().get_run(run_id).info.experiment_id
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"

    def model_version_url(self, version: str) -> str:
        """The registered model version's page in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name}/versions/{version}"

    def log_training(self, result: TrainingResult, run_name: str | None = None,
                     tags: dict[str, str] | None = None) -> LoggedTraining:
        """One run: params, data window, metrics, plots, and the model with its signature."""
        return registry_log(self.location(), result, run_name=run_name, tags=tags)

    def log_cltv(self, params: dict, report: dict[str, float]) -> str:
        """A run with the CLTV model's parameters and evaluation; returns its id."""
        return registry_log_cltv(self.location(), params, report)

    def log_forecast(self, params: dict, metrics: dict[str, float]) -> str:
        """A run with the revenue forecast's settings and backtest; returns its id."""
        return registry_log_forecast(self.location(), params, metrics)

    def register(self, logged: LoggedTraining) -> str:
        """A new version of ``model_name`` with the ``challenger`` alias; returns the version."""
        return registry_register(self.location(), logged, self.model_name)

    def gate(self, validation: pl.DataFrame, policy: GatePolicy,
             challenger: str | None = None, choice: str | None = None) -> GateDecision:
        """Score challenger and champion on ``validation``; move ``champion`` if it passes
        ``policy`` (the ``[model]`` settings: ``GatePolicy.from_settings``). ``choice`` says why
        the challenger is the model it is (LightGBM or the baseline)."""
        return run_gate(self.location(), validation, policy, self.model_name, challenger, choice)

    def champion_version(self) -> str | None:
        found = registry_champion_version(self.location(), self.model_name)
        return None if found is None else str(found)

    def log_uplift(self, training: UpliftTraining, tags: dict[str, str] | None = None
                   ) -> LoggedUplift:
        """Log an uplift training (``uplift`` experiment) and register and gate its model."""
        return registry_log_uplift(self.location(), training, tags)

    def load_uplift_champion(self) -> tuple[UpliftModel, str] | None:
        """The champion uplift model and its version; None before one passed its gate."""
        return registry_uplift_champion(self.location())

    def load_champion(self, policy: GatePolicy | None = None) -> mlflow.pyfunc.PyFuncModel:
        """The champion pyfunc; ``NoChampionError`` (saying what to change, with ``policy``'s
        thresholds) when there is none."""
        return registry_champion(self.location(), self.model_name, policy)
