"""Two runs of the same world are bit-identical: `churn-assets run` on two copies of one
simulated (dirty) world writes equal tables -- every bronze, silver, gold, label, model, score,
decision and outcome table, compared exactly, not within a tolerance -- and trains the same
model (the same trees, byte for byte, and the same predictions)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.settings import Paths

START = date(2026, 1, 1)
DAYS = 18
SETTINGS = ("[labels]\nhorizon_days = 3\n"
            "[model]\ntraining_days = 12\nvalidation_days = 2\nauc_floor = 0.0\n"
            "[scoring]\noutcome_window_days = 2\n"
            "[decisions.policy]\ndaily_budget = 40.0\n")
# Differs by design between two runs: when each run ingested the rows, and their batch.
RUN_SPECIFIC = ("_ingested_at",)


def _run(home: Path, dagster_home: Path, monkeypatch) -> None:
    from churn_assets.cli import main

    dagster_home.mkdir()
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("CHURN_ENV", "local")
    assert main(["run"]) == 0


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    from churn_assets.simulator import DirtConfig, SimConfig, simulate

    root = tmp_path_factory.mktemp("reproducible")
    first = root / "first"
    first.mkdir()
    Paths(first).settings_file.write_text(SETTINGS)
    dirt = DirtConfig(duplicate_rate=0.03, late_rate=0.05, malformed_rate=0.02, null_rate=0.02,
                      mixed_tz_rate=0.5, redrop_rate=0.1)
    simulate(Paths(first), SimConfig(customers=300, days=DAYS, start=START, seed=8, dirt=dirt))
    second = root / "second"
    shutil.copytree(first, second)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _run(first, root / "dagster_first", monkeypatch)
        _run(second, root / "dagster_second", monkeypatch)
    return Paths(first), Paths(second)


def _tables(lake: Path) -> list[str]:
    return sorted(f"{t.parent.name}/{t.name}" for t in lake.glob("*/*")
                  if (t / "_delta_log").is_dir())


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop([c for c in RUN_SPECIFIC if c in frame.columns])
    return frame.sort(frame.columns, nulls_last=True)


def test_both_runs_wrote_the_same_tables(twin_runs):
    first, second = twin_runs
    tables = _tables(first.lake)
    assert tables == _tables(second.lake)
    assert {"gold/customer_features", "gold/churn_labels", "scores/daily",
            "decisions/actions"} <= set(tables)


def test_every_table_is_bit_identical(twin_runs):
    first, second = twin_runs
    differ = []
    for table in _tables(first.lake):
        ours = _canonical(pl.read_delta(str(first.lake / table)))
        theirs = _canonical(pl.read_delta(str(second.lake / table)))
        try:
            assert_frame_equal(ours, theirs, check_exact=True)
        except AssertionError as error:
            differ.append(f"{table}: {str(error).splitlines()[0]}")
    assert not differ, differ


def test_both_runs_trained_the_same_model(twin_runs):
    from churn_assets.ml.registry import MlflowLocation, load_churn_model

    models, scored = [], []
    for paths in twin_runs:
        model = load_churn_model(MlflowLocation.under(paths.mlflow),
                                 "models:/churn_model@champion")
        models.append(model)
        features = pl.read_delta(str(paths.lake / "gold" / "customer_features"))
        scored.append(model.raw_proba(features.sort("snapshot_date", "customer_id")))
    ours, theirs = models
    assert ours.kind == theirs.kind
    if ours.kind == "lightgbm":
        assert ours.booster.num_trees() == theirs.booster.num_trees()
        assert ours.booster.model_to_string() == theirs.booster.model_to_string()
    np.testing.assert_array_equal(scored[0], scored[1])
    np.testing.assert_array_equal(ours.calibrator(scored[0]), theirs.calibrator(scored[1]))
