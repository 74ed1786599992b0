"""Uplift measurement (treated against control) and the save-rate update rule."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats

from churn_assets.decisions import (
    ActionConfig,
    Actions,
    measure,
    outcomes_from_activity,
    save_rate_updates,
    uplift,
)
from churn_assets.decisions.uplift import MEASURED_SCHEMA, UPDATE_SCHEMA, UPLIFT_COLUMNS

DAY = date(2026, 3, 2)


def measured(action: str, treated: list[tuple[bool, float]], control: list[tuple[bool, float]],
             cost: float = 10.0, day: date = DAY) -> pl.DataFrame:
    """Measured feed rows: (retained, revenue) per treated and per control customer."""
    rows = [(True, r, v) for r, v in control] + [(False, r, v) for r, v in treated]
    n = len(rows)
    return pl.DataFrame({
        "customer_id": [f"{action}-{i}" for i in range(n)], "snapshot_date": [day] * n,
        "campaign_id": [f"RET-{action}-{day.isoformat()}"] * n, "action": [action] * n,
        "cost": [0.0 if c else cost for c, _, _ in rows], "expected_value": [5.0] * n,
        "control": [c for c, _, _ in rows], "reason": ["test"] * n,
        "retained": [r for _, r, _ in rows], "revenue": [v for _, _, v in rows],
    }, schema=MEASURED_SCHEMA)


def arm(n: int, retained: int, revenue: np.ndarray) -> list[tuple[bool, float]]:
    return [(i < retained, float(revenue[i])) for i in range(n)]


def test_uplift_against_hand_computed_statistics():
    rng = np.random.default_rng(0)
    revenue_t, revenue_c = rng.gamma(2, 30, 100), rng.gamma(2, 25, 50)
    frame = measured("discount_voucher", arm(100, 60, revenue_t), arm(50, 20, revenue_c))
    row = uplift(frame).row(0, named=True)
    assert list(uplift(frame).columns) == ["action", *UPLIFT_COLUMNS]
    assert (row["treated_n"], row["control_n"]) == (100, 50)
    assert row["uplift"] == pytest.approx(0.2)
    se = np.sqrt(0.6 * 0.4 / 100 + 0.4 * 0.6 / 50)
    assert row["uplift_low"] == pytest.approx(0.2 - 1.959964 * se, abs=1e-6)
    assert row["uplift_high"] == pytest.approx(0.2 + 1.959964 * se, abs=1e-6)
    welch = stats.ttest_ind(revenue_t, revenue_c, equal_var=False).confidence_interval(0.95)
    assert row["revenue_uplift"] == pytest.approx(revenue_t.mean() - revenue_c.mean())
    assert row["revenue_uplift_low"] == pytest.approx(welch.low)
    assert row["revenue_uplift_high"] == pytest.approx(welch.high)
    # 1000 spent on the treated, 0.2 x 100 = 20 customers saved.
    assert row["treated_cost"] == pytest.approx(1000.0)
    assert row["saved_customers"] == pytest.approx(20.0)
    assert row["cost_per_saved_customer"] == pytest.approx(50.0)


def test_no_cost_per_saved_customer_without_positive_uplift_and_empty_arms_are_null():
    ones = np.ones(40)
    worse = measured("loyalty_reward", arm(40, 10, ones), arm(40, 20, ones), cost=2.0)
    untested = measured("reengagement_email", arm(30, 5, ones), [], cost=0.1)
    table = uplift(pl.concat([worse, untested]))
    rows = {r["action"]: r for r in table.iter_rows(named=True)}
    assert rows["loyalty_reward"]["uplift"] == pytest.approx(-0.25)
    assert rows["loyalty_reward"]["cost_per_saved_customer"] is None
    assert rows["reengagement_email"]["control_n"] == 0
    assert rows["reengagement_email"]["uplift"] is None
    assert rows["reengagement_email"]["uplift_low"] is None


def test_the_interval_covers_a_known_uplift():
    rng = np.random.default_rng(42)
    n = 20_000
    treated = rng.uniform(size=n) < 0.45
    control = rng.uniform(size=n // 4) < 0.40
    frame = measured("reengagement_email", [(bool(r), 0.0) for r in treated],
                     [(bool(r), 0.0) for r in control], cost=0.1)
    row = uplift(frame).row(0, named=True)
    assert row["uplift_low"] < 0.05 < row["uplift_high"]
    assert row["uplift_low"] > 0  # and it is detected


def test_per_campaign_grouping():
    a = measured("reengagement_email", arm(10, 5, np.ones(10)), arm(10, 5, np.ones(10)), 0.1)
    b = measured("reengagement_email", arm(10, 8, np.ones(10)), arm(10, 2, np.ones(10)), 0.1,
                 day=DAY + timedelta(days=1))
    b = b.with_columns(pl.col("customer_id") + "-b")
    by_campaign = uplift(pl.concat([a, b]), by=("campaign_id", "action"))
    assert by_campaign["uplift"].to_list() == pytest.approx([0.0, 0.6])
    assert uplift(pl.concat([a, b]))["uplift"].item() == pytest.approx(0.3)


def test_save_rate_update_rule():
    ones = np.ones(4000)
    table = uplift(pl.concat([
        # clear effect: 0.30 vs 0.20 retained -> saves (0.1 / 0.8) of would-be churners
        measured("discount_voucher", arm(2000, 600, ones), arm(500, 100, ones)),
        # too small to tell: kept
        measured("loyalty_reward", arm(40, 12, ones), arm(40, 10, ones), cost=2.0),
        # a precise null: both arms >= min_n -> the measured (zero) rate is used
        measured("reengagement_email", arm(3000, 600, ones), arm(1500, 300, ones), cost=0.1),
    ]))
    update = save_rate_updates(table, Actions(), min_n=1000)
    rows = {r["action"]: r for r in update.table.iter_rows(named=True)}
    assert update.table.schema == pl.Schema(UPDATE_SCHEMA)
    assert rows["discount_voucher"]["updated"] and rows["discount_voucher"]["rule"] == (
        "CI excludes zero")
    assert update.actions.discount_voucher.save_rate == pytest.approx(0.125)
    assert not rows["loyalty_reward"]["updated"]
    assert update.actions.loyalty_reward.save_rate == 0.08
    assert rows["reengagement_email"]["updated"]
    assert update.actions.reengagement_email.save_rate == pytest.approx(0.0)
    assert update.actions.discount_voucher.cost == 10.0  # costs are untouched
    assert isinstance(update.actions, Actions)


def test_a_clearly_harmful_action_gets_a_zero_save_rate():
    ones = np.ones(1000)
    table = uplift(measured("discount_voucher", arm(1000, 200, ones), arm(1000, 400, ones)))
    catalogue = {"discount_voucher": ActionConfig(cost=10, save_rate=0.25)}
    update = save_rate_updates(table, catalogue, min_n=100_000)
    assert update.table["rule"].item() == "CI excludes zero"
    assert update.actions["discount_voucher"].save_rate == 0.0
    with pytest.raises(ValueError, match="one uplift row per action"):
        save_rate_updates(pl.concat([table, table]), catalogue)


def test_outcomes_from_daily_activity_use_the_window_after_the_campaign_day():
    feed = pl.DataFrame({"customer_id": ["A", "B", "C", "D"], "snapshot_date": [DAY] * 4})
    activity = pl.DataFrame({
        "customer_id": ["A", "A", "B", "B", "C", "D"],
        "event_date": [DAY, DAY + timedelta(days=1), DAY + timedelta(days=30),
                       DAY + timedelta(days=5), DAY + timedelta(days=31), DAY + timedelta(2)],
        "orders": [1, 1, 1, 0, 1, 0], "revenue": [50.0, 20.0, 30.0, -5.0, 99.0, 0.0],
    })
    outcomes = outcomes_from_activity(feed, activity, window_days=30)
    got = {r["customer_id"]: (r["retained"], r["revenue"]) for r in outcomes.iter_rows(named=True)}
    # A: the order on the campaign day does not count; B: day 30 counts, a refund nets off;
    # C: day 31 is outside; D: activity without an order is not retention.
    assert got == {"A": (True, 20.0), "B": (True, 25.0), "C": (False, 0.0), "D": (False, 0.0)}
    fed = measured("reengagement_email", arm(2, 0, np.zeros(2)), arm(1, 0, np.zeros(1)), 0.1)
    fed = fed.drop("retained", "revenue").with_columns(
        customer_id=pl.Series(["A", "B", "C"]))
    joined = measure(fed, outcomes.filter(pl.col("customer_id") != "C"))
    assert joined.schema == pl.Schema(MEASURED_SCHEMA)
    assert dict(joined.select("customer_id", "retained").iter_rows()) == {
        "A": True, "B": True, "C": False}


def test_a_handful_of_customers_never_moves_a_save_rate():
    from churn_assets.decisions.uplift import save_rate_updates

    # 3 of 3 treated retained, the single control not: a zero-width "interval" at +100%.
    measured = pl.DataFrame({
        "customer_id": ["a", "b", "c", "d"], "snapshot_date": [date(2026, 3, 1)] * 4,
        "campaign_id": ["RET-x"] * 4, "action": ["discount_voucher"] * 4,
        "cost": [10.0, 10.0, 10.0, 0.0], "expected_value": [1.0] * 4,
        "control": [False, False, False, True], "reason": ["r"] * 4,
        "retained": [True, True, True, False], "revenue": [1.0, 1.0, 1.0, 0.0],
    })
    table = uplift(measured, by=("action",))
    assert table["uplift_low"][0] > 0  # the normal interval claims significance…
    update = save_rate_updates(table, Actions())
    assert update.actions.discount_voucher.save_rate == Actions().discount_voucher.save_rate
    assert not update.table["updated"][0]

