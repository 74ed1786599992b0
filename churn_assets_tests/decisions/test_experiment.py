"""The experiment inside the daily decisions: exploration, power-sized control groups,
propensities, the uplift-valued budget policy and a budget of zero."""

from __future__ import annotations

import math

import polars as pl
import pytest

from churn_assets.decisions import DecisionSettings, PolicyConfig, decide
from churn_assets.decisions.config import ExperimentConfig
from churn_assets.decisions.experiment import (
    NO_ACTION,
    Z_POWER,
    control_plan,
    control_share_for,
    minimum_detectable_uplift,
    power_warning,
)
from churn_assets.decisions.feed import DECIDED_SCHEMA
from churn_assets.decisions.policy import budget_policy, choose_actions
from churn_assets_tests.decisions.test_policy import DAY, random_scores


def settings(budget: float = 2000.0, explore: float = 0.05, explore_budget: float = 0.5,
             **experiment) -> DecisionSettings:
    return DecisionSettings(
        policy=PolicyConfig(daily_budget=budget),
        experiment=ExperimentConfig(explore_share=explore, explore_budget_share=explore_budget,
                                    **experiment))


def test_exploration_draws_a_uniform_arm_independent_of_the_customer():
    decided = decide(random_scores(40_000, seed=3), settings(budget=1e6)).decisions
    explored = decided.filter(pl.col("assignment") == "explore")
    assert explored.height == pytest.approx(0.05 * 40_000, rel=0.1)
    arms = dict(explored.group_by("action").len().iter_rows())
    assert set(arms) == {"discount_voucher", "reengagement_email", "loyalty_reward", NO_ACTION}
    for count in arms.values():  # uniform: 2000 / 4 = 500 each, sd ~19
        assert count == pytest.approx(explored.height / 4, abs=80)
    assert (explored["propensity"] == 0.25).all() and explored["randomized"].all()
    # The arm ignores the customer: risk is the same in every arm.
    risk = explored.group_by("action").agg(pl.col("churn_probability").mean())["churn_probability"]
    assert risk.max() - risk.min() < 0.03
    untreated = explored.filter(pl.col("action") == NO_ACTION)
    assert untreated["control"].all() and (untreated["cost"] == 0).all()
    assert untreated["reason"][0].startswith("exploration: randomly left untreated")
    # Explorers are never also chosen by the policy.
    assert decided["customer_id"].is_unique().all()


def test_exploration_stays_within_its_share_of_the_budget():
    config = settings(budget=3000.0, explore_budget=0.2)
    decided = decide(random_scores(40_000, seed=3), config)
    explored = decided.decisions.filter(pl.col("assignment") == "explore")
    assert 590 < explored["cost"].sum() <= 600.0 + 1e-9
    assert explored.height < 0.05 * 40_000  # the cap, not the share, limited it
    day = decided.days.row(0, named=True)
    assert day["explore_cost"] == pytest.approx(explored["cost"].sum())
    assert day["committed_cost"] <= 3000.0 + 1e-9
    # Capped by cost, not by who the explorers are: the arms stay close to uniform.
    arms = explored.group_by("action").len()["len"]
    assert arms.min() >= 0.5 * arms.max()


def test_policy_rows_record_their_propensity_and_both_shadow_choices():
    config = settings(budget=2000.0)
    decided = decide(random_scores(20_000, seed=8), config).decisions
    assert decided.schema == pl.Schema(DECIDED_SCHEMA)
    chosen = decided.filter(pl.col("assignment") == "policy")
    shares = chosen.filter("control").group_by("action").agg(
        pl.col("propensity").first())
    for action, share in shares.iter_rows():
        arm = chosen.filter(pl.col("action") == action)
        assert (arm.filter("treated")["propensity"] - (1 - share)).abs().max() < 1e-12
        assert arm["control"].mean() == pytest.approx(share, abs=0.06)
    # The policy row's shadow choice is its own action; every row knows what rules would do.
    assert (chosen["policy_action"] == chosen["action"]).all()
    assert decided["rules_action"].null_count() == 0
    explored = decided.filter(pl.col("assignment") == "explore")
    assert set(explored["policy_action"]) <= {"discount_voucher", "reengagement_email",
                                              "loyalty_reward", NO_ACTION}
    # An explorer's shadow choice is the policy's at the full budget over every customer.
    full = choose_actions(random_scores(20_000, seed=8), config).decisions
    shadow = explored.join(full.select("customer_id", full_action="action"), on="customer_id",
                           how="left").with_columns(pl.col("full_action").fill_null(NO_ACTION))
    assert (shadow["policy_action"] == shadow["full_action"]).all()
    assert (shadow["policy_action"] != NO_ACTION).any()


def test_a_budget_of_zero_selects_explores_and_holds_out_nobody():
    decided = decide(random_scores(5000, seed=2), settings(budget=0.0))
    assert decided.decisions.is_empty()
    day = decided.days.row(0, named=True)
    assert day["customers_scored"] == 5000
    assert day["customers_selected"] == day["customers_explored"] == 0
    assert day["committed_cost"] == 0.0
    assert decided.power.is_empty()


def test_minimum_detectable_uplift_is_the_textbook_formula():
    # z_0.975 + z_0.8 = 1.95996 + 0.84162
    assert pytest.approx(2.80158, abs=1e-4) == Z_POWER
    assert minimum_detectable_uplift(1000, 1000, 0.5) == pytest.approx(
        2.80158 * math.sqrt(0.25 * 2 / 1000), rel=1e-4)
    assert minimum_detectable_uplift(100, 0) == math.inf


def test_the_control_share_is_the_smallest_that_reaches_the_target():
    share, ok = control_share_for(5_000, 0.05, floor=0.1, cap=0.5, retention=0.5)
    assert ok and 0.1 < share < 0.5
    n = 5_000
    assert minimum_detectable_uplift(n * (1 - share), n * share) == pytest.approx(0.05, rel=1e-6)
    assert control_share_for(200_000, 0.05, 0.1, 0.5) == (0.1, True)  # the floor already does
    share, ok = control_share_for(500, 0.05, 0.1, 0.25)
    assert share == 0.25 and not ok


def test_the_power_plan_warns_when_the_budget_cannot_reach_the_target():
    plan = control_plan({"discount_voucher": 10, "reengagement_email": 2000}, window_days=30,
                        explored_per_day=40, arms=4, config=ExperimentConfig(target_mde=0.05),
                        control_share=0.1, retention=0.7)
    by_action = {r["action"]: r for r in plan.iter_rows(named=True)}
    assert not by_action["discount_voucher"]["reachable"]
    assert by_action["discount_voucher"]["control_share"] == 0.25
    assert by_action["reengagement_email"]["reachable"]
    assert by_action["reengagement_email"]["mde"] <= 0.05 + 1e-9
    assert by_action["discount_voucher"]["explored_per_arm_in_window"] == 300
    warning = power_warning(plan)
    assert "discount_voucher" in warning and "reengagement_email" not in warning
    # The decided day carries the plan it used.
    decided = decide(random_scores(20_000, seed=8), settings(budget=500.0))
    assert set(decided.power["action"]) == set(
        decided.decisions.filter(pl.col("assignment") == "policy")["action"])


def test_the_budget_policy_targets_predicted_uplift_not_risk():
    frame = random_scores(2000, seed=5)
    ids = frame["customer_id"]
    # The voucher moves only low-risk customers here: risk ranking would pick the wrong ones.
    low_risk = frame["churn_probability"] < 0.2
    uplift = pl.DataFrame({
        "customer_id": ids, "action": "discount_voucher",
        "retention_uplift": pl.Series(low_risk).cast(pl.Float64) * 0.06,
        "revenue_uplift": 5.0,
    })
    chosen = budget_policy(frame, budget=200.0, uplift=uplift).decisions
    assert chosen.height == 20 and (chosen["action"] == "discount_voucher").all()
    picked = frame.filter(pl.col("customer_id").is_in(chosen["customer_id"].to_list()))
    assert (picked["churn_probability"] < 0.2).all()
    # The most valuable: 0.06 x the largest CLTVs among the customers it moves.
    best = frame.filter(low_risk).sort("cltv", descending=True).head(20)["customer_id"]
    assert set(chosen["customer_id"]) == set(best)
    row = chosen.row(0, named=True)
    assert row["retention_uplift"] == pytest.approx(0.06)
    assert row["expected_value"] == pytest.approx(0.06 * row["cltv"])
    assert row["reason"].startswith("a discount voucher: predicted +6.0 % retention, +")
    assert row["reason"].endswith("cost 10.00") or "cost 10.00;" in row["reason"]
    # Without a prediction for a customer, no action is bought for them.
    none = budget_policy(frame, budget=200.0, uplift=uplift.head(0)).decisions
    assert none.is_empty()
    assert DAY in chosen["snapshot_date"].to_list()
