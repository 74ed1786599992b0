"""One asset graph, two engines: the same small world run end to end -- bronze, silver, gold,
labels, training, scores, decisions and outcomes -- on CHURN_ENV=local (Polars over Delta) and
CHURN_ENV=spark (local PySpark over Parquet) gives equal tables.

Each engine trains its own model on its own gold tables, so equal scores also show that the
training set reached LightGBM identically; the two registered models are compared directly too.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.automation import (
    DAILY_JOB,
    FORECAST_JOB,
    LABELS_JOB,
    OUTCOMES_JOB,
    SCORING_JOB,
    TRAINING_JOB,
)
from churn_assets.decisions.sql import QUESTIONS
from churn_assets.definitions import build_definitions
from churn_assets.lab.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.ml.registry import MlflowLocation
from churn_assets.settings import DOMAINS, Paths

pytest.importorskip("pyspark")
pytest.importorskip("dagster_pyspark")

START = date(2026, 1, 1)
DAYS = 12
LAST = START + timedelta(days=DAYS - 1)
HORIZON = 3
SCORED = 3  # the last days scored and decided
OUTCOME_DAYS = 2
STATE_DAYS = 5
SETTINGS = (
    f"[labels]\nhorizon_days = {HORIZON}\n"
    # A dozen days train a weak model; the gate must still promote it (this compares engines).
    "[model]\ntraining_days = 12\nvalidation_days = 2\nauc_floor = 0.0\nbeat_recency = false\n"
    f"[scoring]\noutcome_window_days = {OUTCOME_DAYS}\n"
    "[decisions.policy]\ndaily_budget = 40.0\n"
    # Both engines prune the gold state to the same days.
    f"[maintenance]\nstate_days = {STATE_DAYS}\n"
)
TABLES = (
    [f"bronze.{d}" for d in DOMAINS] + [f"bronze.{d}_quarantine" for d in DOMAINS]
    + [f"silver.{d}" for d in DOMAINS] + [f"silver.{d}_exceptions" for d in DOMAINS]
    + ["gold.daily_activity", "gold.order_categories", "gold.customer_state",
       "gold.customer_categories", "gold.customer_features", "gold.churn_labels",
       "ml.cltv_model", "ml.revenue_forecast", "ml.training_reference", "scores.daily",
       "decisions.actions", "decisions.whales", "decisions.outcomes"]
)
# Differs by design between two runs: when each run ingested the rows.
RUN_SPECIFIC = ("_ingested_at",)
# Tables that may legitimately be empty in a small world.
MAY_BE_EMPTY = ("_quarantine", "_exceptions", "decisions.whales")


def run_pipeline(paths: Paths, env: str) -> None:
    """What `churn-assets run` does, on one engine: data, labels, training, scores and
    decisions for the last days, and the outcomes whose window has closed."""
    defs = build_definitions(paths, env=env)
    scored = LAST - timedelta(days=SCORED - 1)
    steps = [
        (DAILY_JOB, START, LAST),
        (LABELS_JOB, START, LAST - timedelta(days=HORIZON)),
        (TRAINING_JOB, None, None),
        (SCORING_JOB, scored, LAST),
        (OUTCOMES_JOB, scored, LAST - timedelta(days=OUTCOME_DAYS)),
        # Two whole weeks: 'not enough history' for a forecast, but the weekly series is built
        # and written by each engine's store.
        (FORECAST_JOB, None, None),
    ]
    with dg.instance_for_test() as instance:
        for job, first, last in steps:
            tags = ({RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
                    if first else {})
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, raise_on_error=False, tags=tags)
            failures = [e.event_specific_data.error.message for e in result.all_events
                        if e.is_step_failure]
            assert result.success, (env, job, failures)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    from churn_assets.simulator import SimConfig, simulate

    home = tmp_path_factory.mktemp("engines") / "home"
    home.mkdir()
    Paths(home).settings_file.write_text(SETTINGS)
    simulate(Paths(home), SimConfig(customers=300, days=DAYS, start=START, seed=8))
    spark_home = home.parent / "spark_home"
    shutil.copytree(home, spark_home)
    local, spark = Paths(home), Paths(spark_home)
    run_pipeline(local, "local")
    run_pipeline(spark, "spark")
    return local, spark


@pytest.fixture(scope="module")
def spark_store(worlds):
    # The Spark store's own reader, so partition columns come back typed as written.
    from churn_assets.resources.spark import SparkTableStore
    from churn_assets_tests.spark import spark_session

    spark_session()  # the store uses the active session
    return SparkTableStore(format="parquet", root=str(worlds[1].lake / "spark"))


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop([c for c in RUN_SPECIFIC if c in frame.columns])
    frame = frame.select(sorted(frame.columns))
    return frame.sort(frame.columns, nulls_last=True)


def delta_tables(lake: Path) -> set[str]:
    return {f"{t.parent.name}.{t.name}" for t in lake.glob("*/*") if (t / "_delta_log").is_dir()}


def test_the_comparison_covers_every_table_the_pipeline_wrote(worlds):
    local, _ = worlds
    assert delta_tables(local.lake) == set(TABLES)


def test_both_engines_kept_only_the_newest_state_days(worlds, spark_store):
    kept = {LAST - timedelta(days=k) for k in range(STATE_DAYS)}
    assert set(pl.read_delta(str(worlds[0].lake / "gold" / "customer_state"))
               ["snapshot_date"]) == kept
    spark = pl.from_arrow(spark_store.read("gold.customer_state").toArrow())
    assert {d if isinstance(d, date) else d.date() for d in spark["snapshot_date"]} == kept


@pytest.mark.parametrize("table", TABLES)
def test_every_table_is_equal_on_both_engines(worlds, spark_store, table):
    local, _ = worlds
    layer, name = table.split(".")
    expected = canonical(pl.read_delta(str(local.lake / layer / name)))
    got = pl.from_arrow(spark_store.read(table).toArrow())
    got = canonical(got.select([c for c in expected.columns if c in got.columns]))
    assert got.columns == expected.columns
    assert got.height == expected.height
    assert got.height > 0 or table.endswith(MAY_BE_EMPTY)
    assert_frame_equal(got, expected, check_dtypes=False, check_exact=False, rel_tol=1e-9)


def test_both_engines_trained_and_promoted_the_same_model(worlds):
    local, spark = worlds
    runs = []
    for paths in (local, spark):
        client = MlflowLocation.under(paths.mlflow).client()
        version = client.get_model_version_by_alias("churn_model", "champion")
        runs.append(client.get_run(version.run_id).data)
    ours, theirs = runs
    assert ours.params == theirs.params
    for name in ("val_roc_auc", "val_pr_auc", "val_brier", "baseline_val_roc_auc"):
        assert theirs.metrics[name] == pytest.approx(ours.metrics[name], rel=1e-9), name


@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_sql_answers_the_same_from_either_engines_tables(worlds, question, monkeypatch, capsys):
    from churn_assets.cli import main

    answers = []
    for paths, env in zip(worlds, ("local", "spark"), strict=True):
        monkeypatch.setenv("CHURN_HOME", str(paths.home))
        monkeypatch.setenv("CHURN_ENV", env)
        assert main(["sql", question]) == 0
        answers.append(capsys.readouterr().out)
    local, spark = answers
    assert "shape: (0" not in local
    assert spark == local
