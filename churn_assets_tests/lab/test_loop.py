"""The closed-loop experiment end to end on a tiny world: the pipeline decides, the simulator
executes, the truth shows exactly what was done (and what was not), and the policy worlds differ
from the no-action twin only in the customers they treated."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from churn_assets.decisions.config import Actions
from churn_assets.lab.loop import LoopConfig, run_loop
from churn_assets.settings import Paths

BUDGET = 25.0
# Two decision days five days apart, and the history ends when the second step does: a short
# label horizon and training window let a 22-day warm-up train a model.
CONFIG = LoopConfig(
    customers=300, days=32, seed=42, warmup_days=22, step_days=5, budget=BUDGET,
    horizon_days=5, steps=2,
    settings={"model": {"training_days": 20, "validation_days": 3, "auc_floor": 0.0,
                        # 22 days of a 300-customer world: recency alone can win.
                        "beat_recency": False},
              "scoring": {"outcome_window_days": 5}},
)


def truth(paths: Paths, after) -> pl.DataFrame:
    files = sorted(f for f in (paths.truth / "hazard").glob("*.parquet") if f.stem > str(after))
    return pl.concat([pl.read_parquet(f) for f in files])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    home = tmp_path_factory.mktemp("loop")
    return run_loop(CONFIG, home / "worlds", out=home / "report.md", say=lambda _: None, workers=2)


def test_the_loop_keeps_the_budget_and_the_truth_shows_exactly_the_treatment(experiment):
    w_end = CONFIG.warmup_end
    costs = {name: config.cost for name, config in Actions().as_dict().items()}
    for policy in ("uplift", "rules", "budget"):
        paths = experiment.homes[policy]
        actions = pl.read_delta(str(paths.lake / "decisions" / "actions"))
        assert set(actions["snapshot_date"]) == set(CONFIG.decision_days())
        treated_rows = actions.filter(~pl.col("control"))
        assert (actions.filter(pl.col("control"))["cost"] == 0).all()
        # Neither the spend nor what was committed (control rows at their action's cost) ever
        # exceeds the day's budget.
        per_day = actions.group_by("snapshot_date").agg(
            spend=pl.col("cost").sum(),
            committed=pl.col("action").replace_strict(costs, return_dtype=pl.Float64).sum())
        assert per_day["spend"].max() <= BUDGET + 1e-9
        assert per_day["committed"].max() <= BUDGET + 1e-9

        later = truth(paths, w_end)
        treated_ids = set(treated_rows["customer_id"])
        control_only = set(actions.filter(pl.col("control"))["customer_id"]) - treated_ids
        contacted = later.filter(pl.col("treated"))
        # Actions reached the simulated world: treated customers, the pipeline's treated only,
        # from the first step on.
        assert contacted.height and set(contacted["customer_id"]) <= treated_ids
        assert contacted["day"].min() <= w_end + timedelta(days=2)
        responders = contacted.filter(pl.col("treatment_effect") > 0)
        assert responders.height and (responders["hazard"] < responders["hazard_untreated"]).all()
        # Control customers are measured, never treated.
        held_out = later.filter(pl.col("customer_id").is_in(control_only))
        assert control_only and held_out.height
        assert not held_out["treated"].any()
        assert (held_out["hazard"] == held_out["hazard_untreated"]).all()
        # Both decision days' outcomes were measured, both arms.
        outcomes = pl.read_delta(str(paths.lake / "decisions" / "outcomes"))
        assert set(outcomes["snapshot_date"]) == set(CONFIG.decision_days())
        assert outcomes.height == actions.height

    none = truth(experiment.homes["none"], CONFIG.start)
    assert not none["treated"].any() and (none["hazard"] == none["hazard_untreated"]).all()
    assert not (experiment.homes["none"].lake / "decisions" / "actions").exists()

    numbers = experiment.numbers
    for policy in ("uplift", "rules", "budget"):
        found = numbers[policy]
        assert 0 < found["spend"] <= BUDGET * len(CONFIG.decision_days())
        assert found["oracle_prevented"] > 0
        assert found["by_campaign_uplift"].height
        # Exact counterfactual: only treated customers' revenue can differ from the twin's.
        actions = pl.read_delta(str(experiment.homes[policy].lake / "decisions" / "actions"))
        treated = set(actions.filter(~pl.col("control"))["customer_id"])
        assert 0 < found["customers_changed"] <= len(treated)
    report = (experiment.homes["none"].home.parent.parent / "report.md").read_text()
    assert report == experiment.report
    targets = [line for line in report.splitlines() if line.startswith("target: ")]
    assert len(targets) == 4
    assert all(line.endswith((": met", ": missed")) for line in targets)
    assert "measured uplift" in report
    assert "## What each action bought" in report
    # Every treated customer of a policy is in exactly one row of what its actions bought.
    for policy in ("uplift", "rules", "budget"):
        economics = numbers[policy]["economics"]
        actions = pl.read_delta(str(experiment.homes[policy].lake / "decisions" / "actions"))
        treated = actions.filter(~pl.col("control"))
        assert economics["customers"].sum() == treated["customer_id"].n_unique()
        assert economics["spend"].sum() == pytest.approx(treated["cost"].sum())


def test_a_policy_world_differs_from_its_twin_only_in_the_treated_customers(experiment):
    """Gold daily activity of customers never treated is identical in the policy worlds and the
    no-action world: the comparison is exact, not in distribution."""
    none = pl.read_delta(str(experiment.homes["none"].lake / "gold" / "daily_activity"))
    for policy in ("uplift", "rules"):
        paths = experiment.homes[policy]
        actions = pl.read_delta(str(paths.lake / "decisions" / "actions"))
        treated = actions.filter(~pl.col("control"))["customer_id"].unique()
        world = pl.read_delta(str(paths.lake / "gold" / "daily_activity"))
        columns = sorted(set(world.columns) & set(none.columns))
        untouched = [f.filter(~pl.col("customer_id").is_in(treated.implode())).select(columns)
                     .sort(columns) for f in (world, none)]
        assert untouched[0].height > 0 and untouched[0].equals(untouched[1])
