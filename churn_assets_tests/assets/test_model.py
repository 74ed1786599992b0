"""The model assets as Dagster runs them: training over gold, MLflow registration, the gate as an
asset check, refusal on failed data checks, the CLTV model, and the weekly schedule."""

from __future__ import annotations

import math
import shutil
from datetime import date, timedelta

import dagster as dg
import mlflow
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.assets.model import CHURN_MODEL_KEY, CLTV_MODEL_KEY, GATE_CHECK
from churn_assets.automation import (
    FORECAST_JOB,
    FORECAST_KEY,
    LABELS_JOB,
    OUTCOMES_JOB,
    SCORING_JOB,
    TRAINING_JOB,
)
from churn_assets.definitions import build_definitions
from churn_assets.ingest.landing import find_drop, write_drop
from churn_assets.lab.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.ml.cltv_compare import KeptCltv
from churn_assets.ml.registry import MlflowLocation
from churn_assets.settings import Paths
from churn_assets_tests.conftest import materialize_range

START = date(2026, 1, 1)
DAYS = 60
LAST = START + timedelta(days=DAYS - 1)
HORIZON = 10


BUDGET = 100.0
OUTCOME_DAYS = 10


def settings_toml(auc_floor: float) -> str:
    return (f"[labels]\nhorizon_days = {HORIZON}\n"
            f"[model]\ntraining_days = 40\nvalidation_days = 5\nauc_floor = {auc_floor}\n"
            f"[scoring]\noutcome_window_days = {OUTCOME_DAYS}\n"
            f"[decisions.policy]\ndaily_budget = {BUDGET}\n"
            # A tiny world: explore a lot, and fit an uplift model on a few hundred rows.
            "[decisions.experiment]\nexplore_share = 0.3\nexplore_budget_share = 0.5\n"
            "[decisions.uplift]\nmin_arm_rows = 20\nmin_holdout_arm = 5\n")


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
    # The model the holdout kept is the one the table holds (and scoring reads).
    kept = materialized[CLTV_MODEL_KEY]["cltv_kept"].value
    assert cltv["kept"][0] == kept
    assert (cltv["boosted_model"][0] is not None) == (kept == "lightgbm_tweedie")


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


def test_the_cli_prints_why_the_gate_refused_a_model(world, instance, capsys):
    from churn_assets.cli import _train

    world.settings_file.write_text(settings_toml(0.999))
    assert _train(build_definitions(world), instance) is False  # no champion: nothing scores
    out = capsys.readouterr().out
    assert "the gate refused the challenger:" in out and "< auc_floor 0.9990" in out


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
    forecast = defs.resolve_schedule_def("weekly_forecast")
    assert forecast.job_name == FORECAST_JOB
    assert forecast.default_status == dg.DefaultScheduleStatus.RUNNING
    assert forecast.cron_schedule == "30 3 * * 1"
    # The forecast runs on its schedule, not with each day's data.
    assert FORECAST_KEY not in defs.resolve_job_def("churn_daily").asset_layer.executable_asset_keys


# ---------------------------------------------------------------- scores and decisions

SCORED_FROM = LAST - timedelta(days=25)


def lake(paths: Paths, name: str) -> pl.DataFrame:
    return pl.read_delta(str(paths.lake / name.replace(".", "/"))).sort(
        "snapshot_date", "customer_id")


@pytest.fixture(scope="module")
def scored_template(labelled_world, tmp_path_factory):
    """Trained once (a champion exists), then scored and decided for the last 26 days."""
    home = tmp_path_factory.mktemp("scored") / "home"
    shutil.copytree(labelled_world.home, home)
    paths = Paths(home)
    with dg.instance_for_test() as instance:
        assert run(paths, TRAINING_JOB, instance).success
        result = run(paths, SCORING_JOB, instance, SCORED_FROM, LAST)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        meta = {e.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}
    return paths, meta


@pytest.fixture
def scored(scored_template, tmp_path):
    """A private copy of the scored world. (MLflow artifacts of the template's runs stay where
    the template's registry says; new runs in the copy add their own.)"""
    paths, meta = scored_template
    shutil.copytree(paths.home, tmp_path / "home")
    return Paths(tmp_path / "home"), meta


def test_scores_come_from_the_champion_and_decisions_keep_the_budget(scored):
    paths, meta = scored
    scores = lake(paths, "scores.daily")
    assert set(scores["model_version"]) == {"1"}
    assert scores["churn_probability"].is_between(0, 1).all()
    assert (scores["revenue_at_risk"] - scores["churn_probability"] * scores["cltv"]).abs().max() < 1e-9
    # CLTV is the kept model's, whichever the holdout kept.
    kept = KeptCltv.from_row(pl.read_delta(str(paths.lake / "ml" / "cltv_model")).row(0, named=True))
    day = scores["snapshot_date"].max()
    features = lake(paths, "gold.customer_features").filter(pl.col("snapshot_date") == day)
    expected = kept.predict(features, 365).select("customer_id", expected="cltv")
    today = scores.filter(pl.col("snapshot_date") == day).join(expected, on="customer_id")
    assert today.height == scores.filter(pl.col("snapshot_date") == day).height > 0
    assert (today["cltv"] - today["expected"]).abs().max() < 1e-9
    assert set(scores["risk_band"]) <= {"low", "medium", "high"}
    assert scores["driver_1"].null_count() == 0
    actions = lake(paths, "decisions.actions")
    assert actions.height > 0
    per_day = actions.group_by("snapshot_date").agg(pl.col("cost").sum())
    assert per_day["cost"].max() <= BUDGET + 1e-9  # treated spend; control rows cost nothing
    assert meta["decisions/actions"]["max_committed_per_day"] <= BUDGET
    assert actions.filter(pl.col("control"))["treated"].not_().all()
    assert (actions.filter(pl.col("control"))["cost"] == 0).all()
    # A customer is selected at most once within the cooldown (30 days > this range).
    assert actions["customer_id"].is_unique().all()


def test_a_multi_day_run_scores_each_day_as_that_day_alone(scored):
    """The scoring job runs the model once over all its days (the SHAP work is shared); every
    day's rows must be what scoring that day by itself gives."""
    from churn_assets.assets.scores import load_cltv, score_day
    from churn_assets.ml.dataset import only_at_risk
    from churn_assets.ml.gate import GatePolicy
    from churn_assets.resources import build_resources
    from churn_assets.settings import load_settings

    paths, _ = scored
    settings = load_settings(paths)
    resources = build_resources("local", paths, settings)
    mlflow_resource = resources["mlflow"]
    model = mlflow_resource.load_champion(GatePolicy.from_settings(settings.model))
    cltv = load_cltv(resources["store"])
    features = only_at_risk(lake(paths, "gold.customer_features").filter(
        pl.col("snapshot_date") >= SCORED_FROM), settings.labels.horizon_days)
    alone = pl.concat(
        score_day(day, model, mlflow_resource.champion_version(), cltv, settings)
        for day in features.partition_by("snapshot_date"))
    assert alone["snapshot_date"].n_unique() == (LAST - SCORED_FROM).days + 1
    assert_frame_equal(lake(paths, "scores.daily"), alone.sort("snapshot_date", "customer_id"),
                       check_exact=True)


def test_rerunning_scores_and_decisions_changes_nothing(scored, instance):
    paths, _ = scored
    before = {t: lake(paths, t) for t in ("scores.daily", "decisions.actions", "decisions.whales")}
    assert run(paths, SCORING_JOB, instance, SCORED_FROM, LAST).success
    for name, frame in before.items():
        assert lake(paths, name).equals(frame), name


def test_campaign_outcomes_wait_for_their_window_then_measure_both_arms(scored, instance):
    paths, _ = scored
    refused = run(paths, OUTCOMES_JOB, instance, LAST, LAST)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure)
    assert "outcome_window_days" in failure.step_failure_data.error.message

    measurable = LAST - timedelta(days=OUTCOME_DAYS)
    assert run(paths, OUTCOMES_JOB, instance, SCORED_FROM, measurable).success
    outcomes = lake(paths, "decisions.outcomes")
    fed = lake(paths, "decisions.actions").filter(pl.col("snapshot_date") <= measurable)
    assert outcomes.height == fed.height
    assert outcomes["retained"].null_count() == 0
    assert outcomes["control"].sum() > 0 and (~outcomes["control"]).sum() > 0


def test_a_refused_challenger_never_scores(scored, instance):
    paths, _ = scored
    paths.settings_file.write_text(settings_toml(0.999))
    assert run(paths, TRAINING_JOB, instance).success  # v2, refused by the gate
    assert run(paths, SCORING_JOB, instance, LAST, LAST).success
    assert set(lake(paths, "scores.daily").filter(pl.col("snapshot_date") == LAST)
               ["model_version"]) == {"1"}


def test_without_a_champion_scoring_says_which_floor_to_change(world, instance):
    world.settings_file.write_text(settings_toml(0.999))
    assert run(world, TRAINING_JOB, instance).success
    result = run(world, SCORING_JOB, instance, LAST, LAST)
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure
                   ).step_failure_data.error.message
    assert "churn_model" in message and "auc_floor" in message and "0.999" in message


def test_drift_is_flagged_on_a_shifted_population(scored, instance):
    paths, _ = scored
    reference_path = str(paths.lake / "ml" / "training_reference")
    reference = pl.read_delta(reference_path)
    shifted = reference.with_columns(pl.col("tenure_days") + 400, pl.col("orders_total") * 6)
    shifted.write_delta(reference_path, mode="overwrite")
    result = run(paths, SCORING_JOB, instance, LAST, LAST)
    (drift,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "feature_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    assert "tenure_days" in drift.description or "orders_total" in drift.description


def test_the_morning_schedule_requests_yesterday(world):
    from datetime import UTC, datetime

    defs = build_definitions(world)
    schedule = defs.resolve_schedule_def("daily_scoring")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 3, 2, 6, 0, tzinfo=UTC),
            repository_def=defs.get_repository_def())
        (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-03-01"


def test_sql_answers_match_the_tables(scored, monkeypatch, capsys):
    from churn_assets.cli import main

    paths, _ = scored
    monkeypatch.setenv("CHURN_HOME", str(paths.home))
    scores = lake(paths, "scores.daily")
    today = scores.filter(pl.col("snapshot_date") == LAST)
    assert main(["sql", "SELECT COUNT(*) AS n, SUM(revenue_at_risk) AS r FROM scores_daily "
                 f"WHERE snapshot_date = '{LAST}'"]) == 0
    out = capsys.readouterr().out
    assert str(today.height) in out
    assert main(["sql", "high_risk_customers"]) == 0
    out = capsys.readouterr().out
    assert str(int((today["risk_band"] == "high").sum())) in out and str(today.height) in out
    assert main(["sql", "--tables"]) == 0
    assert "decisions_actions:" in capsys.readouterr().out



def test_data_after_a_snapshot_day_changes_nothing_in_its_training_rows(world, instance):
    """Features of D see nothing after D; D's label sees nothing after D + horizon."""
    day = START + timedelta(days=10)
    before_features = lake(world, "gold.customer_features").filter(pl.col("snapshot_date") == day)
    before_labels = lake(world, "gold.churn_labels").filter(pl.col("snapshot_date") == day)
    inside, beyond = before_labels.filter(pl.col("churned"))["customer_id"][:2].to_list()
    header = find_drop(world.landing, "payments", START).file_paths()[0].read_bytes()
    header = header.splitlines()[0].decode()

    def order(customer: str, when: date) -> str:
        values = {"transaction_id": f"TP{customer}", "order_id": f"OP{customer}",
                  "customer_id": customer, "transaction_type": "charge", "status": "paid",
                  "amount": "999.00", "currency": "EUR", "quantity": "1", "category": "books",
                  "payment_method": "card", "created_at": f"{when}T12:00:00Z"}
        return ",".join(values.get(c, "") for c in header.split(","))

    # One churned customer orders the day after D (inside the label window), another the day
    # after the window closes.
    for customer, when in ((inside, day + timedelta(days=1)),
                           (beyond, day + timedelta(days=HORIZON + 1))):
        drop = find_drop(world.landing, "payments", when)
        files = {p.name: p.read_bytes() for p in drop.file_paths()}
        files["perturbed.csv"] = f"{header}\n{order(customer, when)}\n".encode()
        write_drop(world.landing, "payments", when, files)
    # D itself is recomputed (from D-1's stored state), through the day of the later order.
    assert materialize_range(world, day, day + timedelta(days=HORIZON + 1), instance).success
    assert run(world, LABELS_JOB, instance, day, day).success

    after_features = lake(world, "gold.customer_features").filter(pl.col("snapshot_date") == day)
    assert_frame_equal(after_features, before_features)
    after_labels = lake(world, "gold.churn_labels").filter(pl.col("snapshot_date") == day)
    changed = after_labels.join(before_labels, on=["snapshot_date", "customer_id"],
                                suffix="_before").filter(pl.col("churned") != pl.col("churned_before"))
    # Only the order inside (D, D + horizon] moves D's label, as a label should.
    assert changed["customer_id"].to_list() == [inside]


# ---------------------------------------------------------------- the experiment and uplift


def measure_outcomes(paths: Paths, instance):
    measurable = LAST - timedelta(days=OUTCOME_DAYS)
    result = run(paths, OUTCOMES_JOB, instance, SCORED_FROM, measurable)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def test_every_decision_row_records_its_experiment(scored):
    paths, meta = scored
    actions = lake(paths, "decisions.actions")
    assert actions["assignment"].is_in(["policy", "explore"]).all()
    assert actions["randomized"].null_count() == 0 and actions["propensity"].null_count() == 0
    explored = actions.filter(pl.col("assignment") == "explore")
    assert explored.height > 0 and (explored["propensity"] == 0.25).all()
    assert set(explored["action"]) <= {"discount_voucher", "reengagement_email",
                                       "loyalty_reward", "no_action"}
    policy = actions.filter(pl.col("assignment") == "policy")
    assert ((policy["propensity"] > 0) & (policy["propensity"] < 1)).all()
    info = meta["decisions/actions"]
    assert "mde" in info["power"] and "target_mde" in info["power"]
    assert info["explored_customers"] == explored.height
    assert info["actions_valued_with"] == "save rates (configured)"


def test_outcomes_carry_the_experiment_and_evaluate_the_policies_off_policy(scored, instance):
    paths, _ = scored
    result = measure_outcomes(paths, instance)
    outcomes = lake(paths, "decisions.outcomes")
    assert outcomes["propensity"].null_count() == 0
    (ope,) = [e for e in result.get_asset_check_evaluations()
              if e.check_name == "off_policy_value"]
    values = {k: v.value for k, v in ope.metadata.items()}
    explored = outcomes.filter(pl.col("assignment") == "explore")
    # No action's value is the untreated explorers' mean net revenue over their arm share.
    untreated = explored.filter(pl.col("action") == "no_action")
    assert values["no_action_per_customer"] == pytest.approx(
        untreated["revenue"].sum() * 4 / explored.height, abs=1e-3)
    assert "policy" in ope.description and "rules" in ope.description


def test_the_uplift_model_trains_on_measured_experiments_and_is_gated(scored, instance):
    paths, _ = scored
    measure_outcomes(paths, instance)
    result = run(paths, TRAINING_JOB, instance)
    assert result.success
    meta = {k: v.value for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == dg.AssetKey(["ml", "uplift_model"])
            for k, v in e.materialization.metadata.items()}
    outcomes = lake(paths, "decisions.outcomes")
    assert meta["training_rows"] == outcomes.height
    assert meta["not_randomized_rows_excluded"] == 0
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "uplift_gate"]
    assert "Qini" in (gate.description or "") or "needs" in (gate.description or "")
    MlflowLocation.under(paths.mlflow, "uplift").activate()
    runs = mlflow.search_runs(experiment_names=["uplift"])
    assert len(runs) == 1
    if gate.passed:
        assert meta["policy_values_actions_with"].startswith("uplift_model v")
    else:
        assert meta["policy_values_actions_with"].startswith("save rates")


def test_a_decisions_table_without_propensities_is_not_training_data(scored, instance):
    paths, _ = scored
    table = str(paths.lake / "decisions" / "actions")
    legacy = pl.read_delta(table).drop("assignment", "randomized", "propensity",
                                       "policy_action", "rules_action")
    legacy.write_delta(table, mode="overwrite", delta_write_options={"schema_mode": "overwrite"})
    result = measure_outcomes(paths, instance)
    meta = {k: v.value for e in result.get_asset_materialization_events()
            for k, v in e.materialization.metadata.items()}
    outcomes = lake(paths, "decisions.outcomes")
    assert meta["not_randomized_rows"] == outcomes.height
    training = run(paths, TRAINING_JOB, instance)
    uplift = {k: v.value for e in training.get_asset_materialization_events()
              if e.materialization.asset_key == dg.AssetKey(["ml", "uplift_model"])
              for k, v in e.materialization.metadata.items()}
    assert uplift["not_randomized_rows_excluded"] == outcomes.height
    assert uplift["training_rows"] == 0
    assert uplift["status"] == "not trained: too few outcomes"
    assert uplift["policy_values_actions_with"].startswith("save rates")
    assert uplift["outcomes_needed"] == {a: 20 for a in (
        "discount_voucher", "reengagement_email", "loyalty_reward", "no_action")}


def test_decisions_follow_the_uplift_champion(scored, instance):
    from churn_assets.decisions.config import ACTIONS
    from churn_assets.ml.uplift import UpliftGate, train_uplift
    from churn_assets.ml.uplift_registry import log_uplift

    paths, _ = scored
    measure_outcomes(paths, instance)
    outcomes = lake(paths, "decisions.outcomes")
    features = pl.read_delta(str(paths.lake / "gold" / "customer_features"))
    training = train_uplift(outcomes, campaign_features_from(features, outcomes), list(ACTIONS))
    if training.model is None:  # the tiny world's arms: fit with a lower bar
        from churn_assets.ml.uplift import UpliftTrainingConfig
        training = train_uplift(outcomes, campaign_features_from(features, outcomes),
                                list(ACTIONS), UpliftTrainingConfig(min_arm_rows=1))
    assert training.model is not None
    # Whatever the tiny world's Qini, promote it here: this test is about the decisions.
    training.decision = UpliftGate(True, ("promoted by the test",), 0.1, 0.0)
    logged = log_uplift(MlflowLocation.under(paths.mlflow), training)
    assert logged.promoted and logged.champion == logged.version

    result = run(paths, SCORING_JOB, instance, LAST, LAST)
    assert result.success
    meta = {e.materialization.asset_key.to_user_string(): {
        k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()}
    assert meta["decisions/actions"]["actions_valued_with"] == f"uplift_model v{logged.version}"
    today = lake(paths, "decisions.actions").filter(
        (pl.col("snapshot_date") == LAST) & (pl.col("assignment") == "policy"))
    assert today.height > 0
    assert today["reason"].str.contains(r": predicted [+-]\d+\.\d % retention, [+-]").all()
    # The valuation is the champion's prediction x CLTV.
    assert (today["expected_value"] - today["retention_uplift"] * today["cltv"]).abs().max() < 1e-6


def test_a_budget_of_zero_decides_nobody_and_says_so(scored, instance):
    paths, _ = scored
    paths.settings_file.write_text(settings_toml(0.5).replace(
        f"daily_budget = {BUDGET}", "daily_budget = 0.0"))
    result = run(paths, SCORING_JOB, instance, LAST, LAST)
    assert result.success
    meta = {e.materialization.asset_key.to_user_string(): {
        k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()}
    assert meta["decisions/actions"]["dagster/row_count"] == 0
    assert "daily_budget is 0" in meta["decisions/actions"]["selection"]
    assert lake(paths, "decisions.actions").filter(pl.col("snapshot_date") == LAST).is_empty()


def campaign_features_from(features: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    return features.join(outcomes.select("customer_id", "snapshot_date").unique(),
                         on=["customer_id", "snapshot_date"], how="semi")


# ── the weekly revenue forecast ──────────────────────────────────────────────────────────────────

# 60 days from Thursday 1 January hold 8 whole weeks: enough for 2 origins 2 weeks apart.
FORECAST_SETTINGS = ("[forecast]\nhorizon_weeks = 4\nbacktest_origins = 2\n"
                     "origin_step_weeks = 2\nmin_train_weeks = 4\n")


def forecast_run(paths: Paths, instance) -> dict:
    result = run(paths, FORECAST_JOB, instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.asset_key == FORECAST_KEY
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_forecast_keeps_the_model_with_the_better_backtest_beside_revenue_at_risk(
        scored, instance):
    paths, _ = scored
    with paths.settings_file.open("a") as settings:
        settings.write(FORECAST_SETTINGS)
    meta = forecast_run(paths, instance)
    table = pl.read_delta(str(paths.lake / "ml" / "revenue_forecast"))
    segments = set(table["segment"])
    assert "all" in segments and len(segments) > 2
    assert meta["status"] == "ok" and meta["weeks_of_history"] == 8
    for model in ("seasonal_naive", "lightgbm"):
        assert math.isfinite(meta[f"{model}_mase"]) and meta[f"{model}_mase"] >= 0
        assert 0 <= meta[f"{model}_coverage"] <= 1
        # Held out: 4 weeks after the origin at week 4, 2 after week 6, for every series.
        assert meta[f"{model}_held_out_weeks"] == (4 + 2) * len(segments)
    better = min(("seasonal_naive", "lightgbm"), key=lambda m: meta[f"{m}_mase"])
    assert meta["model"] == better
    forecast = table.filter(pl.col("kind") == "forecast")
    assert forecast.height == 4 * len(segments) and set(forecast["model"]) == {better}
    assert forecast["week_start"].min() == date(2026, 3, 2)  # the Monday after the last week
    # The history is gold's revenue by event week, recomputed here from the lake.
    activity = pl.read_delta(str(paths.lake / "gold" / "daily_activity"))
    week = activity.filter(pl.col("event_date").is_between(date(2026, 2, 23), date(2026, 3, 1)))
    actual = table.filter((pl.col("kind") == "actual") & (pl.col("segment") == "all")
                          & (pl.col("week_start") == date(2026, 2, 23)))["revenue"].item()
    assert actual == pytest.approx(week["revenue"].sum())
    scores = lake(paths, "scores.daily")
    today = scores.filter(pl.col("snapshot_date") == scores["snapshot_date"].max())
    assert meta["revenue_at_risk"] == pytest.approx(today["revenue_at_risk"].sum(), abs=0.01)
    assert meta["revenue_at_risk_day"] == str(LAST)
    # A rerun replaces the table with the same forecast.
    forecast_run(paths, instance)
    assert_frame_equal(pl.read_delta(str(paths.lake / "ml" / "revenue_forecast")), table)


def test_too_little_history_for_the_forecast_is_a_status_not_a_crash(world, instance):
    meta = forecast_run(world, instance)  # default settings: 28 whole weeks needed, 8 exist
    assert meta["status"] == "not enough history"
    assert "8 whole weeks" in meta["reason"] and "needs 28" in meta["reason"]
    assert meta["revenue_at_risk_day"] == "no scores yet"
    table = pl.read_delta(str(world.lake / "ml" / "revenue_forecast"))
    assert table.filter(pl.col("kind") == "forecast").is_empty()
    assert table.filter(pl.col("kind") == "actual").height > 0
