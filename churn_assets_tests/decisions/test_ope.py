"""Off-policy evaluation from exploration rows: unbiased values with intervals that cover them."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from churn_assets.decisions.experiment import NO_ACTION
from churn_assets.decisions.ope import off_policy_values, verdict

ARMS = ["discount_voucher", "reengagement_email", NO_ACTION]


def explored(n: int, seed: int) -> tuple[pl.DataFrame, dict[str, float]]:
    """Explorers with a uniform arm (propensity 1/3). Base revenue 100 for everyone; the
    voucher (cost 10) adds 40 for responders (30 %), nothing for the rest; the email (cost 1)
    adds 2 for everyone. The policy gives responders the voucher and the rest the email; the
    rules give everyone the voucher. True values per customer follow."""
    rng = np.random.default_rng(seed)
    responder = rng.random(n) < 0.3
    arm = np.array(ARMS)[rng.integers(0, 3, n)]
    cost = np.select([arm == "discount_voucher", arm == "reengagement_email"], [10.0, 1.0], 0.0)
    lift = np.where(arm == "discount_voucher", 40.0 * responder, 0.0) + np.where(
        arm == "reengagement_email", 2.0, 0.0)
    revenue = rng.normal(100, 30, n) + lift
    frame = pl.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)], "snapshot_date": date(2026, 3, 1),
        "action": arm, "control": arm == NO_ACTION, "cost": cost, "revenue": revenue,
        "assignment": "explore", "propensity": 1 / 3,
        "policy_action": np.where(responder, "discount_voucher", "reengagement_email"),
        "rules_action": "discount_voucher",
    })
    truth = {"policy": 100 + 0.3 * 30 + 0.7 * 1, "rules": 100 + 0.3 * 40 - 10,
             NO_ACTION: 100.0}
    return frame, truth


def test_ips_values_are_unbiased_and_their_intervals_cover():
    covered = {k: 0 for k in ("policy", "rules", NO_ACTION, "policy_minus_rules")}
    for seed in range(40):
        frame, truth = explored(3000, seed)
        values = {r["estimate"]: r for r in off_policy_values(frame).iter_rows(named=True)}
        truth["policy_minus_rules"] = truth["policy"] - truth["rules"]
        for name in covered:
            covered[name] += values[name]["low"] <= truth[name] <= values[name]["high"]
    # 95 % intervals: at least 34 of 40 cover (binomial 5 % tail).
    assert all(count >= 34 for count in covered.values()), covered


def test_the_verdict_reads_the_intervals():
    frame, _ = explored(6000, seed=1)
    values = off_policy_values(frame)
    passed, text = verdict(values)
    assert passed and "policy - rules +" in text and "6000 exploration rows" in text
    # A policy that gives everyone nothing but the voucher's cost: clearly worse than no action.
    bad = frame.with_columns(policy_action=pl.lit("discount_voucher"),
                             revenue=pl.col("revenue") - 60 * (pl.col("action") == "discount_voucher"))
    passed, text = verdict(off_policy_values(bad))
    assert not passed and text.startswith("the policy is worse than")


def test_without_exploration_rows_there_is_nothing_to_estimate():
    frame, _ = explored(20, seed=2)
    assert off_policy_values(frame.drop("propensity")).is_empty()
    passed, text = verdict(off_policy_values(frame))
    assert passed and "at least 30" in text
    legacy = frame.with_columns(assignment=pl.lit("policy"))
    assert off_policy_values(legacy).is_empty()
