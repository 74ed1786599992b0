"""The model assets as Dagster runs them: training over gold, MLflow registration, the gate as an
asset check, refusal on failed data checks, the CLTV model, and the weekly schedule."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import dagster as dg
import mlflow
import polars as pl
import pytest

from churn_assets.assets.model import CHURN_MODEL_KEY, CLTV_MODEL_KEY, GATE_CHECK
from churn_assets.automation import LABELS_JOB, TRAINING_JOB
from churn_assets.definitions import build_definitions
from churn_assets.ingest.landing import find_drop, write_drop
from churn_assets.ml.registry import MlflowLocation
from churn_assets.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.settings import Paths
from churn_assets_tests.conftest import materialize_range

START = date(2026, 1, 1)
DAYS = 60
LAST = START + timedelta(days=DAYS - 1)
HORIZON = 10


def settings_toml(auc_floor: float) -> str:
    return (f"[labels]\nhorizon_days = {HORIZON}\n"
            f"[model]\ntraining_days = 40\nvalidation_days = 5\nauc_floor = {auc_floor}\n")


def run(paths: Paths, job: str, instance, first: date | None = None, last: date | None = None):
    tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()} if first else {}
    return build_definitions(paths).resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False)


def champion_version(paths: Paths) -> str | None:
    client = MlflowLocation.under(paths.mlflow).client()
    try:
        return str(client.get_model_version_by_alias("churn_model", "champion").version)
    except mlflow.exceptions.MlflowException:
        return None


@pytest.fixture(scope="module")
def labelled_world(tmp_path_factory):
    """A small world run through gold and labels once; tests copy it before training."""
    from churn_assets.simulator import SimConfig, simulate

    home = tmp_path_factory.mktemp("model_world") / "home"
    home.mkdir()
    paths = Paths(home)
    paths.settings_file.write_text(settings_toml(0.5))
    simulate(paths, SimConfig(customers=500, days=DAYS, start=START, seed=21))
    with dg.instance_for_test() as instance:
        assert materialize_range(paths, START, LAST, instance).success
        labelled = LAST - timedelta(days=HORIZON)
        assert run(paths, LABELS_JOB, instance, START, labelled).success
    return paths


@pytest.fixture
def world(labelled_world, tmp_path) -> Paths:
    shutil.copytree(labelled_world.home, tmp_path / "home")
    return Paths(tmp_path / "home")


def test_training_registers_a_champion_and_reports_the_gate(world, instance):
    result = run(world, TRAINING_JOB, instance)
    assert result.success
    materialized = {e.materialization.asset_key: e.materialization.metadata
                    for e in result.get_asset_materialization_events()}
    meta = materialized[CHURN_MODEL_KEY]
    assert meta["model_version"].value == "1"
    assert 0.5 <= meta["val_roc_auc"].value <= 1.0
    assert "baseline_val_roc_auc" in meta and "val_ece" in meta
    assert meta["gate"].value == "promoted to champion"
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == GATE_CHECK]
    assert gate.passed and "auc_floor" in gate.description
    assert champion_version(world) == "1"
    # The run logged the model's data window and both models' metrics to MLflow.
    client = MlflowLocation.under(world.mlflow).client()
    run_data = client.get_run(meta["mlflow_run_id"].value).data
    assert run_data.tags["gate.decision"] == "promoted"
    assert {"val_roc_auc", "baseline_val_roc_auc"} <= set(run_data.metrics)
    assert CLTV_MODEL_KEY in materialized
    cltv = pl.read_delta(str(world.lake / "ml" / "cltv_model"))
    assert cltv.height == 1 and cltv["net_share"][0] > 0


def test_a_challenger_below_the_floor_is_refused_and_the_champion_stays(world, instance):
    assert run(world, TRAINING_JOB, instance).success
    world.settings_file.write_text(settings_toml(0.999))
    result = run(world, TRAINING_JOB, instance)
    assert result.success
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == GATE_CHECK]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert "< auc_floor 0.9990" in gate.description
    assert gate.metadata["challenger_version"].value == "2"
    assert champion_version(world) == "1"


def test_training_refuses_after_a_failed_blocking_check(world, instance):
    day = START + timedelta(days=DAYS - 2)
    drop = find_drop(world.landing, "payments", day)
    files = {p.name: p.read_bytes().replace(b"Z,", b"yesterday,") for p in drop.file_paths()}
    write_drop(world.landing, "payments", day, files)
    assert not materialize_range(world, day, day, instance).success

    result = run(world, TRAINING_JOB, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "blocking data check" in message and "silver/payments:reject_share" in message
    assert champion_version(world) is None


def test_the_weekly_schedule_targets_the_training_job(world):
    defs = build_definitions(world)
    schedule = defs.resolve_schedule_def("weekly_training")
    assert schedule.job_name == TRAINING_JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "0 3 * * 1"
