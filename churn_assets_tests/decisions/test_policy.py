"""Decision settings, the band rules and the budget policy on hand-checkable score tables."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from churn_assets.decisions import (
    ActionConfig,
    Actions,
    DecisionSettings,
    PolicyConfig,
    RiskBands,
    budget_policy,
    choose_actions,
    rule_policy,
    whale_list,
)
from churn_assets.decisions.policy import DAY_SCHEMA, DECISION_SCHEMA

DAY = date(2026, 3, 2)


def scores(rows: list[tuple], day: date = DAY) -> pl.DataFrame:
    """(customer_id, churn_probability, cltv) rows; revenue_at_risk = p x cltv."""
    return pl.DataFrame(
        rows, schema=["customer_id", "churn_probability", "cltv"], orient="row",
    ).with_columns(
        snapshot_date=pl.lit(day), revenue_at_risk=pl.col("churn_probability") * pl.col("cltv"),
        driver_1=pl.lit("days_since_last_order"),
    )


def random_scores(n: int, seed: int, day: date = DAY) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 4, n)
    cltv = rng.gamma(1.3, 250, n)
    return pl.DataFrame({
        "snapshot_date": [day] * n, "customer_id": [f"C{i:05d}" for i in range(n)],
        "churn_probability": p, "cltv": cltv, "revenue_at_risk": p * cltv,
        "segment": rng.choice(["consumer", "small_business"], n),
    })


# ---------------------------------------------------------------- settings


def test_settings_defaults_validation_and_bands():
    settings = DecisionSettings.model_validate(
        {"actions": {"reengagement_email": {"cost": 0.2, "save_rate": 0.04}},
         "policy": {"kind": "rules", "daily_budget": 100}})
    assert settings.actions.reengagement_email.cost == 0.2
    assert settings.actions.discount_voucher == ActionConfig(cost=10.0, save_rate=0.25)
    assert settings.policy.kind == "rules" and settings.policy.control_share == 0.1
    with pytest.raises(ValidationError, match="extra"):
        DecisionSettings.model_validate({"actions": {"sms": {"cost": 1, "save_rate": 0.1}}})
    with pytest.raises(ValidationError, match="low_below <= high_from"):
        RiskBands(low_below=0.7, high_from=0.6)
    with pytest.raises(ValidationError):
        ActionConfig(cost=1.0, save_rate=1.5)
    frame = pl.DataFrame({"churn_probability": [0.1, 0.3, 0.59, 0.6, None]})
    assert frame.select(RiskBands().band())["risk_band"].to_list() == [
        "low", "medium", "medium", "high", None]


# ---------------------------------------------------------------- rules

# cltv quantile 0.8 of (2500, 100, 500, 300, 1240) = 1240 + 0.2 x 1260 = 1492: only A is high value.
RULE_ROWS = [("A", 0.72, 2500.0), ("B", 0.65, 100.0), ("C", 0.45, 500.0), ("D", 0.10, 300.0),
             ("E", 0.20, 1240.0)]


def test_rules_follow_the_bands():
    result = rule_policy(scores(RULE_ROWS))
    got = {r["customer_id"]: r for r in result.decisions.iter_rows(named=True)}
    assert {c: r["action"] for c, r in got.items()} == {
        "A": "discount_voucher", "B": "reengagement_email", "C": "reengagement_email",
        "D": "loyalty_reward", "E": "loyalty_reward"}
    assert got["A"]["reason"] == ("high risk (0.72) and high value (CLTV 2,500); "
                                  "main driver: days_since_last_order")
    assert got["B"]["reason"].startswith("high risk (0.65), CLTV 100 below the high-value cut "
                                         "(1,492)")
    assert got["A"]["cost"] == 10.0
    assert got["A"]["expected_value"] == pytest.approx(0.25 * 0.72 * 2500)
    assert got["C"]["net_value"] == pytest.approx(0.05 * 0.45 * 500 - 0.10)
    # priority follows revenue at risk: A 1800, E 248, C 225, B 65, D 30
    assert result.decisions["customer_id"].to_list() == ["A", "E", "C", "B", "D"]
    assert result.decisions["priority"].to_list() == [1, 2, 3, 4, 5]
    assert result.decisions.schema == pl.Schema(DECISION_SCHEMA)
    assert result.days.schema == pl.Schema(DAY_SCHEMA)
    assert result.days["customers_selected"].item() == 5


def test_rules_can_leave_low_value_high_risk_alone_and_use_published_bands():
    config = PolicyConfig(rules_high_risk_low_value_action=None)
    frame = scores(RULE_ROWS).with_columns(
        risk_band=pl.when(pl.col("customer_id") == "D").then(pl.lit("medium"))
        .otherwise(RiskBands().band()))
    actions = dict(rule_policy(frame, policy=config).decisions.select(
        "customer_id", "action").iter_rows())
    assert "B" not in actions
    assert actions["D"] == "reengagement_email"  # the published band wins


def test_rules_under_a_budget_take_the_most_revenue_at_risk_first():
    # Costs in priority order: A 10, E 2, C 0.1 (12.1), then B 0.1 would make 12.2.
    result = rule_policy(scores(RULE_ROWS), budget=12.1)
    assert result.decisions["customer_id"].to_list() == ["A", "E", "C"]
    assert result.days["committed_cost"].item() == pytest.approx(12.1)


# ---------------------------------------------------------------- budget policy


def test_budget_policy_hand_example():
    # X (at risk 1000): voucher nets 240, email 49.9; Y (at risk 500): email nets 24.9.
    frame = scores([("X", 0.5, 2000.0), ("Y", 0.5, 1000.0)])
    picked = dict(budget_policy(frame, budget=10.1).decisions.select(
        "customer_id", "action").iter_rows())
    assert picked == {"X": "discount_voucher", "Y": "reengagement_email"}
    picked = dict(budget_policy(frame, budget=0.15).decisions.select(
        "customer_id", "action").iter_rows())
    assert picked == {"X": "reengagement_email"}
    row = budget_policy(frame, budget=10.1).decisions.row(0, named=True)
    assert row["reason"] == ("medium risk (0.50), CLTV 2,000: a discount voucher is expected to "
                             "save 250 for 10.00; main driver: days_since_last_order")


def test_budget_policy_skips_actions_that_do_not_pay():
    # Z's revenue at risk (1.5) makes every action lose money; W's makes only the email pay.
    frame = scores([("Z", 0.5, 3.0), ("W", 0.5, 10.0)])
    decisions = budget_policy(frame, budget=1000).decisions
    assert decisions.select("customer_id", "action").rows() == [("W", "reengagement_email")]
    assert (decisions["net_value"] > 0).all()
    # An action that never pays is never bought, whatever the budget.
    no_loyalty = {**Actions().as_dict(), "loyalty_reward": ActionConfig(cost=2.0, save_rate=0)}
    decisions = budget_policy(random_scores(500, seed=1), no_loyalty, budget=1e6).decisions
    assert "loyalty_reward" not in decisions["action"].to_list()


def test_budget_policy_respects_each_days_budget():
    frame = pl.concat([random_scores(3000, seed=s, day=DAY + timedelta(days=s)) for s in range(3)])
    result = budget_policy(frame, budget=250.0)
    per_day = result.decisions.group_by("snapshot_date").agg(pl.col("cost").sum())
    assert per_day.height == 3
    assert (per_day["cost"] <= 250.0 + 1e-9).all()
    assert result.decisions.select(pl.struct("snapshot_date", "customer_id").is_unique().all()
                                   ).item()
    assert (result.days["net_value"] <= result.days["net_value_bound"] + 1e-9).all()


def test_budget_policy_beats_the_rules_at_the_same_spend():
    frame = random_scores(5000, seed=4)
    rules = rule_policy(frame, budget=500.0)
    spend = rules.days["committed_cost"].item()
    optimal = budget_policy(frame, budget=spend)
    assert optimal.days["committed_cost"].item() <= spend + 1e-9
    assert optimal.days["net_value"].item() > rules.days["net_value"].item()
    # No choice at this spend can beat the reported bound, the rules' included.
    assert rules.days["net_value"].item() <= optimal.days["net_value_bound"].item()


def test_choose_actions_follows_the_configured_kind():
    frame = random_scores(200, seed=2)
    rules = choose_actions(frame, DecisionSettings(policy=PolicyConfig(kind="rules",
                                                                       daily_budget=30)))
    assert set(rules.decisions["policy"]) == {"rules"}
    assert rules.days["committed_cost"].item() <= 30
    budget = choose_actions(frame)
    assert set(budget.decisions["policy"]) == {"budget"}


def test_score_table_problems_are_explained():
    with pytest.raises(ValueError, match=r"lacks columns \['cltv'\]"):
        budget_policy(scores(RULE_ROWS).drop("cltv"))
    twice = pl.concat([scores(RULE_ROWS), scores(RULE_ROWS[:1])])
    with pytest.raises(ValueError, match="scored twice on one day, e.g. A"):
        rule_policy(twice)


# ---------------------------------------------------------------- whales


def test_whales_are_valuable_and_at_high_or_rising_risk():
    # cltv 1..98 and three customers at ~100: the 0.97 quantile is 98 (C098 is low risk).
    rows = [(f"C{i:03d}", 0.2, float(i)) for i in range(1, 99)]
    rows += [("HIGH", 0.7, 100.0), ("RISING", 0.35, 100.5), ("CALM", 0.35, 101.0)]
    today = scores(rows)
    policy = PolicyConfig(whale_quantile=0.97)
    week_ago = scores([("RISING", 0.25, 100.5), ("CALM", 0.30, 101.0), ("HIGH", 0.69, 100.0)],
                      day=DAY - timedelta(days=7))
    yesterday = scores([("CALM", 0.10, 101.0)], day=DAY - timedelta(days=1))  # not 7 days back
    whales = whale_list(today, pl.concat([week_ago, yesterday]), policy)
    assert whales["customer_id"].to_list() == ["HIGH", "RISING"]  # by revenue at risk
    rising = whales.row(1, named=True)
    assert rising["probability_change"] == pytest.approx(0.10)
    assert rising["rising_risk"] and not rising["high_risk"]
    assert rising["reason"].startswith("whale (CLTV 101, top 3%): rising risk (0.35, +0.10 in "
                                       "7 days)")
    assert whale_list(today, None, policy)["customer_id"].to_list() == ["HIGH"]


def test_the_action_catalogue_names_exactly_the_simulators_actions():
    from churn_assets.decisions.config import ACTIONS
    from churn_assets.simulator import vocab

    assert set(ACTIONS) == set(vocab.ACTIONS)
