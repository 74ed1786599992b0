"""MLflow tracking and registry for the churn model: one run per training, the registered
``churn_model`` with aliases (``challenger``, ``champion``; stages are deprecated), the gate.

Plain ``mlflow`` calls, no Dagster: ``resources/mlflow.py`` is a thin configurable wrapper.
Locally, tracking and registry share a SQLite database under the data root and artifacts sit
beside it in a folder the experiment names explicitly (otherwise MLflow writes ``./mlruns``
wherever the process happens to run).

The registered model is a pyfunc around the pickled ``ChurnModel``: it takes
``FeatureSpec.model_input`` frames and returns ``customer_id``, the calibrated
``churn_probability`` and the top-3 drivers with their impacts, the same numbers as the
in-memory model. Serving it needs ``churn-assets`` importable beside the pinned requirements.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import polars as pl
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

from churn_assets.ml import metrics as m
from churn_assets.ml.churn_model import DRIVERS, ChurnModel, TrainingResult, recency_auc
from churn_assets.ml.dataset import LABEL
from churn_assets.ml.gate import METRIC, GateDecision, GatePolicy, NoChampionError, decide

MODEL_NAME = "churn_model"
CHALLENGER, CHAMPION = "challenger", "champion"
EXPERIMENT = "churn"
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
_REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "numpy", "pandas", "polars", "joblib")


@dataclass(frozen=True)
class MlflowLocation:
    """Where runs, models and artifacts live."""

    tracking_uri: str
    registry_uri: str
    experiment: str = EXPERIMENT
    artifact_location: str | None = None

    @classmethod
    def under(cls, root: Path, experiment: str = EXPERIMENT) -> MlflowLocation:
        """SQLite tracking + registry at ``root/mlflow.db``, artifacts in ``root/artifacts``."""
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        return cls(uri, uri, experiment, (root / "artifacts").as_uri())

    def activate(self) -> str:
        """Point ``mlflow`` here and return the experiment id (created on first use with the
        configured artifact location)."""
        # Progress bars for local artifact copies only clutter run logs and the CLI.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        found = mlflow.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        return mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)

    def client(self) -> MlflowClient:
        self.activate()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)


@dataclass(frozen=True)
class LoggedTraining:
    run_id: str
    model_uri: str


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """The registered model: calibrated probability and top-3 drivers per customer."""

    def load_context(self, context) -> None:
        self.model: ChurnModel = joblib.load(context.artifacts["churn_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pl.from_pandas(model_input)
        return self.model.score(frame, DRIVERS).to_pandas()


def log_training(location: MlflowLocation, result: TrainingResult, *,
                 run_name: str | None = None, tags: dict[str, str] | None = None
                 ) -> LoggedTraining:
    """One MLflow run: params, the data window, metrics of model and baseline, plots and their
    tables, and the pyfunc model with its signature and an input example."""
    experiment_id = location.activate()
    # What is logged and registered is the model that scores: LightGBM, or the baseline when
    # LightGBM did not beat it (the run says which and why).
    split, model = result.split, result.scorer
    window = split.describe()
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=run_name or f"churn-{split.validation_end}") as run:
        mlflow.set_tags({**{f"data.{k}": str(v) for k, v in window.items()},
                         "churn.scorer": result.chosen, "churn.scorer_reason": result.choice,
                         **(tags or {})})
        mlflow.log_params({**result.config.params(), **window,
                           "best_iteration": result.best_iteration, "scorer": result.chosen,
                           "features_used": len(model.spec.columns),
                           "features_dropped": ",".join(model.spec.dropped) or "none"})
        mlflow.log_metrics(_flat_metrics(result))
        _log_plots_and_tables(result)
        mlflow.log_dict({"numeric": list(model.spec.numeric),
                         "categories": {k: list(v) for k, v in model.spec.categories.items()},
                         "dropped": list(model.spec.dropped)}, "model_inputs/features.json")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "churn_model.joblib"
            joblib.dump(model, path)
            example = model.spec.model_input(result.validation.head(5))
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_ENTRY), artifacts={"churn_model": str(path)},
                signature=signature(model), input_example=example,
                pip_requirements=_requirements(),
            )
    return LoggedTraining(run.info.run_id, info.model_uri)


def log_cltv(location: MlflowLocation, params: dict[str, Any], report: dict[str, float]) -> str:
    """One MLflow run for a CLTV fit: its parameters, the evaluation on the latest labelled
    window, and the parameters as ``cltv_model.json``. Returns the run id."""
    experiment_id = location.activate()
    fitted_on = params.get("fitted_on")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"cltv-{fitted_on}") as run:
        mlflow.set_tags({"churn.kind": "cltv"})
        mlflow.log_params({k: _json(v) for k, v in params.items()})
        if report:
            mlflow.log_metrics(report)
        mlflow.log_dict({k: _json(v) for k, v in params.items()}, "cltv_model.json")
    return run.info.run_id


def log_forecast(location: MlflowLocation, params: dict[str, Any],
                 metrics: dict[str, float]) -> str:
    """One MLflow run for a revenue forecast: its settings, the chosen model, and both models'
    backtest MASE and interval coverage. Returns the run id."""
    experiment_id = location.activate()
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"revenue-forecast-{params.get('origin')}") as run:
        mlflow.set_tags({"churn.kind": "revenue_forecast"})
        mlflow.log_params({k: _json(v) for k, v in params.items()})
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        if finite:
            mlflow.log_metrics(finite)
    return run.info.run_id


def register(location: MlflowLocation, logged: LoggedTraining, model_name: str = MODEL_NAME,
             alias: str = CHALLENGER) -> str:
    """Register the logged model as a new version of ``model_name`` and point ``alias`` at it.
    Returns the version."""
    client = location.client()
    version = mlflow.register_model(logged.model_uri, model_name,
                                    tags={"run_id": logged.run_id}).version
    run = client.get_run(logged.run_id)
    for key in ("data.validation_start", "data.validation_end", "data.horizon_days"):
        client.set_model_version_tag(model_name, version, key, run.data.tags[key])
    client.set_model_version_tag(model_name, version, f"val_{METRIC}",
                                 str(run.data.metrics[f"val_{METRIC}"]))
    client.set_registered_model_alias(model_name, alias, version)
    return str(version)


def gate(location: MlflowLocation, validation: pl.DataFrame, policy: GatePolicy | None = None,
         model_name: str = MODEL_NAME, challenger: str | None = None,
         choice: str | None = None) -> GateDecision:
    """Score the challenger (``challenger`` version, default the ``challenger`` alias) and the
    current champion on the same ``validation`` rows (features + ``churned``), decide, move the
    ``champion`` alias when promoted, and record the decision on the challenger's run and
    model version as tags (and the two AUCs as run metrics)."""
    policy = policy or GatePolicy.from_settings()
    client = location.client()
    if challenger is None:
        challenger = client.get_model_version_by_alias(model_name, CHALLENGER).version
    challenger = str(challenger)
    champion = _alias_version(client, model_name, CHAMPION)
    labels = validation[LABEL].to_numpy()
    challenger_auc = _auc_of(model_name, challenger, validation, labels)
    champion_auc = (None if champion is None else challenger_auc if champion == challenger
                    else _auc_of(model_name, champion, validation, labels))
    decision = decide(challenger_auc, champion_auc, policy,
                      challenger_version=challenger, champion_version=champion,
                      recency_auc=recency_auc(validation), choice=choice)
    if decision.promote:
        client.set_registered_model_alias(model_name, CHAMPION, challenger)
    run_id = client.get_model_version(model_name, challenger).run_id
    for key, value in decision.tags().items():
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(model_name, challenger, key, value)
    client.log_metric(run_id, f"gate_challenger_{METRIC}", challenger_auc)
    client.log_metric(run_id, f"gate_recency_{METRIC}", decision.recency_auc)
    if champion_auc is not None:
        client.log_metric(run_id, f"gate_champion_{METRIC}", champion_auc)
    return decision


def load_champion(location: MlflowLocation, model_name: str = MODEL_NAME,
                  policy: GatePolicy | None = None) -> mlflow.pyfunc.PyFuncModel:
    """The champion pyfunc, or a ``NoChampionError`` that says how to get one."""
    policy = policy or GatePolicy.from_settings()
    client = location.client()
    if _alias_version(client, model_name, CHAMPION) is None:
        challenger = _alias_version(client, model_name, CHALLENGER)
        latest = "no challenger has been registered yet"
        if challenger is not None:
            tags = client.get_model_version(model_name, challenger).tags
            auc = tags.get(f"val_{METRIC}")
            latest = (f"the latest challenger (version {challenger}) has validation {METRIC} "
                      f"{'unknown' if auc is None else format(float(auc), '.4f')}"
                      f" (gate: {tags.get('gate.decision', 'not run yet')})")
        raise NoChampionError(
            f"registered model {model_name!r} has no '{CHAMPION}' version: a challenger is "
            f"promoted only when its validation {METRIC} >= auc_floor ({policy.auc_floor}) and "
            f"is at most max_auc_drop ({policy.max_auc_drop}) below the champion's; {latest}. "
            f"Improve the model (more history or customers), or lower auc_floor ([model] "
            f"auc_floor in $CHURN_HOME/settings.toml), "
            f"then run the training job again.")
    return mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")


def champion_version(location: MlflowLocation, model_name: str = MODEL_NAME) -> str | None:
    return _alias_version(location.client(), model_name, CHAMPION)


def load_churn_model(location: MlflowLocation, model_uri: str) -> ChurnModel:
    """The ``ChurnModel`` inside a registered pyfunc (``models:/churn_model@champion``)."""
    location.activate()
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model


def scoring_input(model: mlflow.pyfunc.PyFuncModel, features: pl.DataFrame) -> pd.DataFrame:
    """Gold ``customer_features`` rows as the registered model's signature wants them (text
    and float64 columns; booleans as 0/1), whichever version it is."""
    return _typed_input(model, features).to_pandas()


def score_with(model: mlflow.pyfunc.PyFuncModel, features: pl.DataFrame) -> pl.DataFrame:
    """``model.predict(scoring_input(model, features))`` as a Polars frame, the same numbers:
    the registered pyfunc's own churn model scores the same typed columns, without the pandas
    round trip and MLflow's column-by-column schema enforcement (seconds per million rows)."""
    inner = model.unwrap_python_model()
    if not isinstance(inner, ChurnPyfunc):
        return pl.from_pandas(model.predict(scoring_input(model, features)))
    return inner.model.score(_typed_input(model, features), DRIVERS)


def _typed_input(model: mlflow.pyfunc.PyFuncModel, features: pl.DataFrame) -> pl.DataFrame:
    columns = model.metadata.get_input_schema().inputs
    missing = [c.name for c in columns if c.name not in features.columns]
    if missing:
        raise ValueError(f"the features lack columns {missing} the model was trained on")
    return features.select(
        pl.col(c.name).cast(pl.String if c.type == DataType.string else pl.Float64)
        for c in columns
    )


def signature(model: ChurnModel) -> ModelSignature:
    spec = model.spec
    inputs = Schema([ColSpec("string", "customer_id")] + [
        ColSpec("string" if spec.is_text(c) else "double", c, required=False)
        for c in spec.inputs
    ])
    outputs = Schema([ColSpec("string", "customer_id"), ColSpec("double", "churn_probability")]
                     + [ColSpec(t, f"driver_{i}{suffix}") for i in range(1, DRIVERS + 1)
                        for t, suffix in (("string", ""), ("double", "_impact"))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _auc_of(model_name: str, version: str, validation: pl.DataFrame, labels) -> float:
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    scored = model.predict(scoring_input(model, validation))
    return m.classification_metrics(labels, scored["churn_probability"].to_numpy())[METRIC]


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _flat_metrics(result: TrainingResult) -> dict[str, float]:
    prefixes = {"model": "val_", "baseline": "baseline_val_",
                "model_uncalibrated": "uncalibrated_val_",
                "baseline_uncalibrated": "baseline_uncalibrated_val_"}
    flat = {prefixes[name] + k: v for name, values in result.metrics.items()
            for k, v in values.items()}
    flat.update({f"val_{k}": v for k, v in result.comparison.items()})
    for row in result.segments.drop_nulls("roc_auc").iter_rows(named=True):
        prefix = "val_" if row["scorer"] == "model" else "baseline_val_"
        flat[f"{prefix}roc_auc_segment_{_safe(row['segment'])}"] = row["roc_auc"]
    flat["best_iteration"] = float(result.best_iteration)
    flat["recency_val_roc_auc"] = result.recency_auc
    # The gate and the registry read val_roc_auc: make it the scoring model's.
    if result.chosen != result.model.kind:
        flat.update({f"lightgbm_val_{k}": v for k, v in result.metrics["model"].items()})
        flat.update({f"val_{k}": v for k, v in result.metrics["baseline"].items()})
    return flat


def _log_plots_and_tables(result: TrainingResult) -> None:
    y = result.validation[LABEL].to_numpy()
    scores = {"model": result.validation_probability, "baseline": result.baseline_probability}
    roc, calibration = Figure(figsize=(5, 5)), Figure(figsize=(5, 5))
    roc_ax, cal_ax = roc.subplots(), calibration.subplots()
    for name, p in scores.items():
        curve = m.roc_table(y, p)
        mlflow.log_table(curve.to_pandas(), f"tables/roc_{name}.json")
        roc_ax.plot(curve["false_positive_rate"], curve["true_positive_rate"],
                    label=f"{name} AUC {result.metrics[name]['roc_auc']:.3f}")
        table = m.calibration_table(y, p)
        mlflow.log_table(table.to_pandas(), f"tables/calibration_{name}.json")
        cal_ax.plot(table["mean_predicted"], table["observed_rate"], marker="o",
                    label=f"{name} ECE {result.metrics[name]['ece']:.3f}")
    for ax, title, x, ylab in ((roc_ax, "ROC (validation)", "false positive rate",
                                "true positive rate"),
                               (cal_ax, "Calibration (validation, equal-frequency bins)",
                                "mean predicted probability", "observed churn rate")):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set(title=title, xlabel=x, ylabel=ylab)
        ax.legend(loc="best")
    mlflow.log_figure(roc, "plots/roc.png")
    mlflow.log_figure(calibration, "plots/calibration.png")

    importance = result.scorer.importance
    mlflow.log_table(importance.to_pandas(), "tables/importance.json")
    figure = Figure(figsize=(6, 6))
    ax = figure.subplots()
    top = importance.head(15).reverse()
    ax.barh(top["feature"].to_list(), top["mean_abs_shap"].to_numpy())
    ax.set(title=f"Global importance of the {result.chosen} model: mean |SHAP| (validation)",
           xlabel="mean |SHAP| (log-odds)")
    figure.tight_layout()
    mlflow.log_figure(figure, "plots/importance.png")
    mlflow.log_table(result.segments.to_pandas(), "tables/auc_by_segment.json")
    mlflow.log_text(json.dumps(result.metrics, indent=1, default=_json), "metrics.json")


def _requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in name)


def _json(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
