"""Judging against the exact twin: the pure arithmetic of ``lab/twins.py`` on frames built by hand,
where the right answer is known."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from churn_assets.lab import twins


def test_savings_are_exact_per_customer_with_an_interval():
    none = pl.DataFrame({"customer_id": ["a", "b", "c", "d"], "revenue": [10.0, 0.0, 5.0, 7.0],
                         "orders": [1, 0, 1, 1], "churned": [False, True, True, False]})
    world = none.with_columns(
        revenue=pl.Series([10.0, 30.0, 5.0, 9.0]), orders=pl.Series([1, 2, 1, 1]),
        churned=pl.Series([False, False, True, False]))
    found = twins.savings(world, none)
    assert found["saved"][0] == pytest.approx(32.0)
    assert found["orders_saved"][0] == 2 and found["prevented"][0] == 1
    # Two customers' histories changed; the interval is z * sqrt(n) * sd of the differences.
    assert found["customers_changed"] == 2
    diff = np.array([0.0, 30.0, 0.0, 2.0])
    assert found["saved"][1] == pytest.approx(1.959964 * 2 * diff.std(ddof=1))


def test_qini_against_the_oracle_ranks_true_effects_above_random_and_constant_scores():
    rng = np.random.default_rng(1)
    effect = rng.exponential(0.02, 2000)
    oracle = twins.qini_area(effect, effect)
    assert oracle > 0
    assert twins.qini_area(-effect, effect) < 0 < oracle
    # A constant score is random targeting: about zero, far below the oracle.
    assert abs(twins.qini_area(np.zeros(effect.size), effect)) < 0.1 * oracle
    noisy = effect + rng.normal(0, 0.02, effect.size)
    assert 0 < twins.qini_area(noisy, effect) < oracle


def test_coverage_counts_only_arms_large_enough_and_finite_intervals():
    table = pl.DataFrame({
        "treated_n": [100, 100, 5, 100], "control_n": [50, 50, 50, 50],
        "uplift_low": [-0.1, 0.05, -1.0, -math.inf], "uplift_high": [0.1, 0.2, 1.0, math.inf],
        "true_uplift": [0.02, 0.01, 0.0, 0.0]})
    assert twins.coverage(table, min_arm=30) == (1, 2)


def test_targets_say_met_or_missed_from_the_numbers():
    numbers = {
        "uplift": {"saved": (3000.0, 500.0), "spend": 1000.0},
        "rules": {"saved": (1000.0, 400.0), "spend": 1200.0},
        "coverage": (9, 10),
        "qini": pl.DataFrame({"action": ["a", "b"], "oracle": [0.01, 0.02],
                              "model": [0.005, float("nan")]}),
    }
    lines = twins.targets(numbers)
    assert len(lines) == 4 and all(line.startswith("target: ") for line in lines)
    assert lines[0].endswith(": met") and "3.00" in lines[0]
    assert lines[1].endswith(": met")
    assert lines[2].endswith(": met") and "90%" in lines[2]
    assert lines[3].endswith(": missed") and "0.50 (over a)" in lines[3]
    numbers["uplift"]["spend"] = 1300.0  # more spend than the rules: the ratio alone is not enough
    assert twins.targets(numbers)[0].endswith(": missed")
    numbers["uplift"]["spend"] = 1000.0
    numbers["rules"]["saved"] = (-50.0, 400.0)  # no ratio against a loss
    numbers["uplift_minus_rules"] = (3050.0, 3500.0)  # ... and a difference not beyond doubt
    assert "undefined" in twins.targets(numbers)[0]
    assert twins.targets(numbers)[0].endswith(": missed")
    numbers["uplift_minus_rules"] = (3050.0, 1000.0)
    assert twins.targets(numbers)[0].endswith(": met")
