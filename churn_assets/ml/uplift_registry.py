"""MLflow for the uplift model: one run per training in the ``uplift`` experiment (its data,
held-out Qini per action, the gate's decision), the registered ``uplift_model`` with aliases
``challenger`` and ``champion``. Plain ``mlflow`` calls; the resource wraps them.

The registered model is a pyfunc around the pickled ``UpliftModel`` (models from code, like the
churn model): gold feature rows in, one row per customer and action out.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import joblib
import mlflow
import pandas as pd
import polars as pl

from churn_assets.ml.registry import (
    CHALLENGER,
    CHAMPION,
    MlflowLocation,
    _alias_version,
    _requirements,
)
from churn_assets.ml.uplift import UpliftModel, UpliftTraining

UPLIFT_MODEL_NAME = "uplift_model"
UPLIFT_EXPERIMENT = "uplift"
UPLIFT_ENTRY = Path(__file__).with_name("uplift_pyfunc_entry.py")


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """Gold feature rows (``customer_id`` + features) in; ``customer_id``, ``action``,
    ``retention_uplift``, ``revenue_uplift`` out."""

    def load_context(self, context) -> None:
        self.model: UpliftModel = joblib.load(context.artifacts["uplift_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.predict(pl.from_pandas(model_input)).to_pandas()


@dataclass(frozen=True)
class LoggedUplift:
    run_id: str
    version: str | None  # None: nothing was fitted (not enough data)
    promoted: bool
    champion: str | None  # the champion version after the gate


def uplift_location(location: MlflowLocation) -> MlflowLocation:
    """The same store, the ``uplift`` experiment."""
    return replace(location, experiment=UPLIFT_EXPERIMENT)


def log_uplift(location: MlflowLocation, training: UpliftTraining,
               tags: dict[str, str] | None = None, model_name: str = UPLIFT_MODEL_NAME
               ) -> LoggedUplift:
    """Log the training; register a fitted model as ``challenger`` and move ``champion`` to
    it when the gate promotes it (otherwise the previous champion, if any, stays)."""
    location = uplift_location(location)
    experiment_id = location.activate()
    prepared, decision = training.prepared, training.decision
    with mlflow.start_run(experiment_id=experiment_id, run_name="uplift") as run:
        mlflow.set_tags({"gate.decision": "promoted" if decision.promote else "refused",
                         "gate.reasons": " | ".join(decision.reasons), **(tags or {})})
        mlflow.log_params({
            "rows": prepared.rows.height, "not_randomized_rows": prepared.not_randomized,
            "rows_without_features": prepared.without_features,
            "train_days": _span(training.train_days), "holdout_days": _span(training.holdout_days),
            "learner": "X-learner on LightGBM, inverse-propensity weights",
        })
        metrics = {f"needed_{arm}": float(n) for arm, n in training.needed.items()}
        if decision.qini_model is not None:
            metrics |= {"holdout_qini_model": decision.qini_model,
                        "holdout_qini_risk": decision.qini_risk}
        for row in training.evaluation.drop_nulls("qini_model").iter_rows(named=True):
            metrics[f"holdout_qini_{row['action']}"] = row["qini_model"]
            metrics[f"holdout_qini_risk_{row['action']}"] = row["qini_risk"]
        mlflow.log_metrics(metrics)
        if training.evaluation.height:
            mlflow.log_table(training.evaluation.to_pandas(), "tables/holdout_evaluation.json")
        if training.model is None:
            return LoggedUplift(run.info.run_id, None, False,
                                _alias_version(location.client(), model_name, CHAMPION))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "uplift_model.joblib"
            joblib.dump(training.model, path)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(UPLIFT_ENTRY),
                artifacts={"uplift_model": str(path)}, pip_requirements=_requirements())
    client = location.client()
    version = str(mlflow.register_model(info.model_uri, model_name,
                                        tags={"run_id": run.info.run_id}).version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    for key, value in (("gate.decision", "promoted" if decision.promote else "refused"),
                       ("gate.reasons", " | ".join(decision.reasons))):
        client.set_model_version_tag(model_name, version, key, value)
    if decision.promote:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return LoggedUplift(run.info.run_id, version, decision.promote,
                        _alias_version(client, model_name, CHAMPION))


def load_uplift_champion(location: MlflowLocation, model_name: str = UPLIFT_MODEL_NAME
                         ) -> tuple[UpliftModel, str] | None:
    """The champion ``UpliftModel`` and its version, or None (the policy uses save rates)."""
    location = uplift_location(location)
    client = location.client()
    version = _alias_version(client, model_name, CHAMPION)
    if version is None:
        return None
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")
    return model.unwrap_python_model().model, version


def _span(days) -> str:
    return "none" if not days else f"{days[0]}..{days[1]}"
