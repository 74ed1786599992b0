"""MLflow tracking, the registry and the promotion gate, on real SQLite stores in tmp dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
from mlflow import MlflowClient

from churn_assets.ml.churn_model import (
    BASELINE_FEATURES,
    ChurnTrainingConfig,
    TrainingResult,
    train_churn_model,
)
from churn_assets.ml.gate import GatePolicy, NoChampionError, decide
from churn_assets.ml.metrics import classification_metrics
from churn_assets.ml.registry import (
    MlflowLocation,
    gate,
    load_champion,
    load_churn_model,
    log_training,
    register,
    score_with,
    scoring_input,
)
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.settings import ModelSettings
from churn_assets_tests.ml.test_churn_model import ml_trained, ml_world, transactions_only


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainingResult:
    return ml_trained(tmp_path_factory)


@pytest.fixture(scope="module")
def worse(tmp_path_factory) -> TrainingResult:
    """The same business seen through its payments export only: a weaker model (LightGBM
    whatever the baseline scores, to test the gate on it)."""
    features, labels = transactions_only(ml_world(tmp_path_factory))
    return train_churn_model(features, labels, ChurnTrainingConfig(min_gain_over_baseline=-1.0))


@pytest.fixture(scope="module")
def below_floor(tmp_path_factory) -> TrainingResult:
    """A model that sees only segment, region, channel and tenure."""
    world = ml_world(tmp_path_factory)
    keep = {"snapshot_date", "customer_id", "segment", "region", "acquisition_channel",
            "tenure_days"}
    features = world.features.with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in world.features.schema.items() if name not in keep)
    return train_churn_model(features, world.labels)


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory) -> Path:
    """An MLflow SQLite database with its tables created (the migrations take ~2 s), copied
    into each test's own store."""
    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def location(tmp_path, empty_database) -> MlflowLocation:
    (tmp_path / "mlflow").mkdir()
    shutil.copy(empty_database, tmp_path / "mlflow" / "mlflow.db")
    return MlflowLocation.under(tmp_path / "mlflow")


def test_a_run_holds_params_window_metrics_plots_and_a_signed_model(location, trained):
    logged = log_training(location, trained)
    run = location.client().get_run(logged.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["validation_start"] == trained.split.validation_start.isoformat()
    assert params["horizon_days"] == "30" and params["calibration"] == "isotonic"
    assert tags["data.train_end"] == trained.split.train_end.isoformat()
    assert metrics["val_roc_auc"] == pytest.approx(trained.metrics["model"]["roc_auc"])
    assert metrics["baseline_val_roc_auc"] == pytest.approx(trained.metrics["baseline"]["roc_auc"])
    for name in ("val_ece", "uncalibrated_val_ece", "val_lift_at_5pct", "val_roc_auc_vs_baseline",
                 "val_roc_auc_segment_basic", "baseline_val_roc_auc_segment_premium"):
        assert name in metrics
    artifacts = location.artifact_location.removeprefix("file://")
    files = {p.name for p in Path(artifacts).rglob("*") if p.is_file()}
    assert {"roc.png", "calibration.png", "importance.png", "importance.json",
            "auc_by_segment.json", "input_example.json", "MLmodel"} <= files

    info = mlflow.models.get_model_info(logged.model_uri)
    inputs = info.signature.inputs.input_names()
    assert inputs == ["customer_id", *trained.model.spec.inputs]  # gold columns, not derived
    assert "churn_probability" in info.signature.outputs.input_names()


def test_the_registered_model_scores_exactly_like_the_trained_one(location, trained):
    version = register(location, log_training(location, trained))
    loaded = mlflow.pyfunc.load_model("models:/churn_model@challenger")
    rows = trained.validation
    from_registry = loaded.predict(scoring_input(loaded, rows))
    in_memory = trained.model.score(rows).to_pandas()
    assert from_registry.equals(in_memory)
    pd.testing.assert_frame_equal(scoring_input(loaded, rows),
                                  trained.model.spec.model_input(rows))
    np.testing.assert_array_equal(from_registry["churn_probability"].to_numpy(),
                                  trained.validation_probability)
    unwrapped = load_churn_model(location, f"models:/churn_model/{version}")
    np.testing.assert_array_equal(unwrapped.predict_proba(rows), trained.validation_probability)
    # What scoring calls: the same frame without the pandas round trip (rows with booleans
    # and text as gold has them; the pyfunc got them cast to its signature's types).
    assert score_with(loaded, rows).to_pandas().equals(from_registry)
    with pytest.raises(ValueError, match="lack columns.*orders_total"):
        score_with(loaded, rows.drop("orders_total"))


def test_no_champion_says_which_model_metric_floor_and_setting(location, below_floor):
    with pytest.raises(NoChampionError) as empty:
        load_champion(location)
    message = str(empty.value)
    for part in ("'churn_model'", "roc_auc", "auc_floor (0.8)", "no challenger"):
        assert part in message

    register(location, log_training(location, below_floor))
    decision = gate(location, below_floor.validation)
    assert not decision.promote
    with pytest.raises(NoChampionError, match=r"version 1\) has validation roc_auc 0\.[0-7]"):
        load_champion(location)


def test_the_gate_promotes_better_and_refuses_worse_or_below_floor(
        location, trained, worse, below_floor):
    validation = trained.validation
    client = location.client()

    def challenge(result: TrainingResult):
        version = register(location, log_training(location, result))
        # Rules 1 and 2 here (a floor the payments-only model reaches); rule 3 (beat recency
        # alone) is checked below.
        return version, gate(location, validation, GatePolicy(0.75, 0.01, beat_recency=False))

    def champion() -> str:
        return str(client.get_model_version_by_alias("churn_model", "champion").version)

    v1, first = challenge(worse)  # no champion yet, above the floor
    assert first.promote and first.champion_auc is None and champion() == v1

    v2, better = challenge(trained)
    assert better.promote and champion() == v2
    assert better.challenger_auc > better.champion_auc
    assert better.champion_auc == pytest.approx(
        _auc(worse.model.predict_proba(validation), validation))  # champion on the same rows

    v3, refused = challenge(worse)
    assert not refused.promote and champion() == v2
    assert refused.champion_auc - refused.challenger_auc > 0.01
    assert "beyond max_auc_drop" in refused.reasons[1]

    v4, floor = challenge(below_floor)
    assert not floor.promote and champion() == v2
    assert floor.challenger_auc < 0.75 and "< auc_floor 0.7500" in floor.reasons[0]

    tags = client.get_run(client.get_model_version("churn_model", v4).run_id).data.tags
    assert tags["gate.decision"] == "refused" and "auc_floor" in tags["gate.reasons"]
    assert client.get_model_version("churn_model", v2).tags["gate.decision"] == "promoted"
    assert str(client.get_model_version_by_alias("churn_model", "challenger").version) == v4
    # On this small dense world days-since-last-order alone (0.82) outranks the payments-only
    # model: the full gate refuses it even without a champion.
    client.delete_registered_model_alias("churn_model", "champion")
    register(location, log_training(location, worse))
    no_better_than_recency = gate(location, validation)
    assert not no_better_than_recency.promote
    assert "recency alone" in no_better_than_recency.reasons[-1]
    client.set_registered_model_alias("churn_model", "champion", v2)
    champion_model = load_champion(location)
    scored = champion_model.predict(trained.model.spec.model_input(validation))
    np.testing.assert_array_equal(scored["churn_probability"].to_numpy(),
                                  trained.validation_probability)


def test_gate_rules_in_isolation():
    policy = GatePolicy(auc_floor=0.8, max_auc_drop=0.01)
    assert decide(0.85, None, policy).promote
    assert decide(0.85, 0.855, policy).promote  # a drop within the margin
    assert not decide(0.85, 0.87, policy).promote
    assert not decide(0.79, None, policy).promote
    assert not decide(0.79, 0.70, policy).promote  # better than the champion, below the floor
    with pytest.raises(ValueError, match="auc_floor"):
        GatePolicy(auc_floor=1.5, max_auc_drop=0.01)
    # Rule 3: a model must rank better than days-since-last-order alone.
    assert decide(0.85, None, policy, recency_auc=0.84).promote
    refused = decide(0.85, None, policy, recency_auc=0.86, choice="why this model")
    assert not refused.promote and refused.reasons[0] == "why this model"
    assert "<= recency alone 0.8600" in refused.reasons[-1]
    assert refused.tags()["gate.recency_auc"] == "0.860000"


def test_the_gate_reads_the_model_settings_and_their_defaults():
    assert GatePolicy.from_settings() == GatePolicy(auc_floor=0.80, max_auc_drop=0.01)
    strict = ModelSettings(auc_floor=0.9, max_auc_drop=0.0)
    assert GatePolicy.from_settings(strict) == GatePolicy(auc_floor=0.9, max_auc_drop=0.0)


def test_a_baseline_that_won_is_what_is_registered_and_scores(location, tmp_path_factory):
    """When LightGBM does not beat the RFM-T baseline by the required margin, the baseline is
    logged, registered and gated as the challenger, and says why."""
    world = ml_world(tmp_path_factory)
    result = train_churn_model(world.features, world.labels,
                               ChurnTrainingConfig(min_gain_over_baseline=1.0))
    assert result.chosen == "logistic_baseline" and result.scorer is result.baseline
    assert "does not beat it" in result.choice
    logged = log_training(location, result)
    version = register(location, logged)
    # Not about the recency rule (test_gate_rules_in_isolation): on this tiny world recency
    # alone can rank as well as the baseline.
    decision = gate(location, result.validation,
                    GatePolicy(auc_floor=0.5, max_auc_drop=0.01, beat_recency=False),
                    challenger=version, choice=result.choice)
    assert decision.promote and decision.reasons[0] == result.choice
    run = location.client().get_run(logged.run_id).data
    assert run.tags["churn.scorer"] == "logistic_baseline"
    assert run.metrics["val_roc_auc"] == pytest.approx(result.metrics["baseline"]["roc_auc"])
    assert run.metrics["lightgbm_val_roc_auc"] == pytest.approx(
        result.metrics["model"]["roc_auc"])
    champion = load_champion(location)
    scored = champion.predict(scoring_input(champion, result.validation.head(50)))
    np.testing.assert_allclose(scored["churn_probability"],
                               result.baseline_probability[:50], rtol=1e-9)
    assert set(scored["driver_1"]) <= set(BASELINE_FEATURES)


def test_the_resource_keeps_everything_under_the_data_root(tmp_path, monkeypatch, trained):
    home = tmp_path / "home"
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    resource = MlflowResource()
    strict = GatePolicy(auc_floor=0.95, max_auc_drop=0.01)
    location = resource.location()
    assert location.tracking_uri == f"sqlite:///{home.resolve() / 'mlflow' / 'mlflow.db'}"
    assert location.artifact_location == (home.resolve() / "mlflow" / "artifacts").as_uri()

    logged = resource.log_training(trained, run_name="resource-test")
    version = resource.register(logged)
    decision = resource.gate(trained.validation, strict)
    assert not decision.promote and decision.challenger_version == version
    with pytest.raises(NoChampionError, match=r"auc_floor \(0\.95\)"):
        resource.load_champion(strict)
    assert (home / "mlflow" / "mlflow.db").exists()
    assert any((home / "mlflow" / "artifacts").rglob("MLmodel"))
    assert not (tmp_path / "mlruns").exists()

    promoted = MlflowResource().gate(trained.validation, GatePolicy(auc_floor=0.80,
                                                                    max_auc_drop=0.01))
    assert promoted.promote
    assert resource.load_champion().metadata.run_id == logged.run_id


def _auc(p, validation) -> float:
    return classification_metrics(validation["churned"].to_numpy(), p)["roc_auc"]
