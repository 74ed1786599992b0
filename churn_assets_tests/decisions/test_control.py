"""Control groups (deterministic per customer and campaign) and the CRM feed."""

from __future__ import annotations

import hashlib
from datetime import date

import polars as pl
import pytest

from churn_assets.decisions import (
    DecisionSettings,
    PolicyConfig,
    assign_control,
    campaign_id,
    control_draw,
    crm_feed,
    decide,
)
from churn_assets.decisions.feed import DECIDED_DAY_SCHEMA, FEED_SCHEMA
from churn_assets_tests.decisions.test_policy import random_scores

DAY = date(2026, 3, 2)
CAMPAIGN = "RET-discount_voucher-2026-03-02"


def many(n: int, campaign: str = CAMPAIGN) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [f"C{i:06d}" for i in range(n)],
                         "campaign_id": [campaign] * n})


def test_the_draw_is_the_documented_sha256():
    digest = hashlib.sha256(b"RET-discount_voucher-2026-03-02:C000042").hexdigest()
    assert control_draw("C000042", CAMPAIGN) == int(digest[:13], 16) / 2**52
    assert campaign_id("discount_voucher", DAY) == CAMPAIGN


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_control_share_on_100k_customers(share):
    frame = assign_control(many(100_000), share)
    assert frame["control"].mean() == pytest.approx(share, abs=0.005)  # > 5 standard errors
    assert (frame["treated"] == ~frame["control"]).all()
    assert not assign_control(many(1000), 0.0)["control"].any()


def test_assignment_is_stable_and_independent_of_the_other_customers():
    everyone = assign_control(many(20_000), 0.1)
    again = assign_control(many(20_000), 0.1)
    assert everyone.equals(again)
    # A shuffled subset, mixed with strangers, gets the same assignment for the same customers.
    subset = many(20_000).sample(3000, seed=5, shuffle=True)
    strangers = pl.DataFrame({"customer_id": [f"X{i}" for i in range(500)],
                              "campaign_id": [CAMPAIGN] * 500})
    mixed = assign_control(pl.concat([strangers, subset]), 0.1)
    joined = mixed.join(everyone, on=["customer_id", "campaign_id"], suffix="_all")
    assert joined.height == 3000
    assert (joined["control"] == joined["control_all"]).all()


def test_each_campaign_draws_afresh():
    first = assign_control(many(50_000), 0.1)["control"].to_numpy()
    second = assign_control(many(50_000, "RET-discount_voucher-2026-03-03"), 0.1)
    both = (first & second["control"].to_numpy()).mean()
    assert both == pytest.approx(0.01, abs=0.003)  # independent: 0.1 x 0.1


def test_decide_selects_under_budget_then_holds_out_a_control_group():
    settings = DecisionSettings(policy=PolicyConfig(daily_budget=2000.0, control_share=0.2))
    result = decide(random_scores(20_000, seed=8), settings)
    decisions, day = result.decisions, result.days.row(0, named=True)
    assert result.days.schema == pl.Schema(DECIDED_DAY_SCHEMA)
    assert decisions["control"].mean() == pytest.approx(0.2, abs=0.03)
    assert (decisions["treated"] == ~decisions["control"]).all()
    # Selection is under the budget among all; the spend incurred is the treated rows only.
    assert day["committed_cost"] <= 2000.0 + 1e-9
    treated_cost = decisions.filter("treated")["cost"].sum()
    assert day["treated_cost"] == pytest.approx(treated_cost)
    assert treated_cost < day["committed_cost"]
    assert day["customers_control"] == decisions["control"].sum()
    # Rerunning the day gives the same decisions, control group included.
    assert decide(random_scores(20_000, seed=8), settings).decisions.equals(decisions)


def test_crm_feed_shape():
    settings = DecisionSettings(policy=PolicyConfig(daily_budget=300.0))
    decided = decide(random_scores(5000, seed=9), settings).decisions
    feed = crm_feed(decided)
    assert feed.schema == pl.Schema(FEED_SCHEMA)
    assert feed.height == decided.height
    assert feed["campaign_id"].str.contains(
        r"^RET-(discount_voucher|reengagement_email|loyalty_reward|no_action)-2026-03-02$").all()
    assert (feed.filter("control")["cost"] == 0).all()
    assert feed.filter(~pl.col("control"))["cost"].min() > 0
    assert feed["cost"].sum() == pytest.approx(decided.filter("treated")["cost"].sum())
    assert feed["cost"].sum() <= 300.0
    with pytest.raises(ValueError, match=r"missing columns \['campaign_id', 'control'\]"):
        crm_feed(decided.drop("campaign_id", "control"))
