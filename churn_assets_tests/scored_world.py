"""A tiny world run through the whole daily loop once — gold, labels, a champion model, scores,
decisions, the brief and campaign outcomes — for the tests of what people look at and call."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from filelock import FileLock

from churn_assets.automation import LABELS_JOB, OUTCOMES_JOB, SCORING_JOB, TRAINING_JOB
from churn_assets.definitions import build_definitions
from churn_assets.lab.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.settings import Paths
from churn_assets_tests.conftest import materialize_range

START = date(2026, 1, 1)
DAYS = 45
LAST = START + timedelta(days=DAYS - 1)
HORIZON = 10
OUTCOME_DAYS = 5
SCORED_FROM = LAST - timedelta(days=14)
BUDGET = 40.0
SETTINGS = (f"[labels]\nhorizon_days = {HORIZON}\n"
            "[model]\ntraining_days = 30\nvalidation_days = 5\nauc_floor = 0.5\n"
            f"[scoring]\noutcome_window_days = {OUTCOME_DAYS}\n"
            f"[decisions.policy]\ndaily_budget = {BUDGET}\n")


def run_job(paths: Paths, job: str, instance, first: date | None = None,
            last: date | None = None):
    tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()} if first else {}
    result = build_definitions(paths).resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def build_scored_world(home: Path) -> tuple[Paths, dict]:
    """Simulate, run every job once; returns the paths and the training and scoring runs'
    materialization metadata by asset key."""
    from churn_assets.simulator import SimConfig, simulate

    home.mkdir(parents=True, exist_ok=True)
    paths = Paths(home)
    paths.settings_file.write_text(SETTINGS)
    simulate(paths, SimConfig(customers=300, days=DAYS, start=START, seed=21))
    with dg.instance_for_test() as instance:
        assert materialize_range(paths, START, LAST, instance).success
        run_job(paths, LABELS_JOB, instance, START, LAST - timedelta(days=HORIZON))
        training = run_job(paths, TRAINING_JOB, instance)
        scoring = run_job(paths, SCORING_JOB, instance, SCORED_FROM, LAST)
        run_job(paths, OUTCOMES_JOB, instance, SCORED_FROM, LAST - timedelta(days=OUTCOME_DAYS))
    meta = {e.materialization.asset_key.to_user_string(): {
        k: v.value for k, v in e.materialization.metadata.items()}
        for result in (training, scoring) for e in result.get_asset_materialization_events()}
    return paths, meta


def shared_scored_world(tmp_path_factory, worker_id: str) -> tuple[Paths, dict]:
    """``build_scored_world`` once per test run: pytest-xdist workers share one copy, built by
    whichever asks first while the others wait on a file lock."""
    if worker_id == "master":  # not under xdist
        return build_scored_world(tmp_path_factory.mktemp("scored_world") / "home")
    root = tmp_path_factory.getbasetemp().parent / "scored_world"
    done = root / "meta.json"
    root.mkdir(exist_ok=True)
    with FileLock(str(root / "build.lock")):
        if not done.exists():
            paths, meta = build_scored_world(root / "home")
            done.write_text(json.dumps(meta, default=str))
    meta = json.loads(done.read_text())
    return Paths(root / "home"), meta


def copy_world(paths: Paths, to: Path) -> Paths:
    shutil.copytree(paths.home, to)
    return Paths(to)
