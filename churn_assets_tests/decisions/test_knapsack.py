"""The budget policy's knapsack against exhaustive search, and at a million customers."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import polars as pl
import pytest

from churn_assets.decisions import Actions, budget_policy
from churn_assets.decisions.knapsack import solve_mckp, to_micro

DEFAULT_COST = np.array([10.0, 0.10, 2.0])
DEFAULT_SAVE = np.array([0.25, 0.05, 0.08])


def brute_force(profit: np.ndarray, cost: np.ndarray, budget: float) -> float:
    """The best total profit over every assignment of at most one option per row."""
    n, k = profit.shape
    combos = np.array(list(itertools.product(range(-1, k), repeat=n)))  # (k+1)^n x n
    picked = combos >= 0
    idx = np.maximum(combos, 0)
    weight = np.where(picked, to_micro(cost)[idx], 0).sum(axis=1)
    gain = np.where(picked, profit[np.arange(n), idx], 0.0).sum(axis=1)
    return float(gain[weight <= int(to_micro(budget))].max())


def instances(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for i in range(count):
        if i % 2:  # the business's shape: default actions, revenue at risk varies by customer
            at_risk = np.round(rng.gamma(1.2, 80, 6), 2)
            cost = DEFAULT_COST
            profit = at_risk[:, None] * DEFAULT_SAVE - cost
        else:  # arbitrary costs and profits, some negative, sometimes a free option
            cost = np.round(rng.uniform(0.1, 10, 3), 2)
            if i % 6 == 0:
                cost[0] = 0.0
            profit = np.round(rng.normal(3, 4, (6, 3)), 2)
        budget = float(np.round(rng.uniform(0, cost.sum() * 3), 2))
        yield profit, cost, budget


def test_greedy_is_within_one_item_of_the_optimum_and_never_over_budget():
    optimal = 0
    cases = list(instances(seed=7, count=300))
    for profit, cost, budget in cases:
        solution = solve_mckp(profit, cost, budget)
        best = brute_force(np.where(profit > 0, profit, -1e9), cost, budget)
        chosen = solution.choice
        spend = to_micro(cost)[chosen[chosen >= 0]].sum()
        assert spend <= to_micro(budget), (profit, cost, budget, chosen)
        assert solution.spend <= budget
        assert np.all(profit[np.flatnonzero(chosen >= 0), chosen[chosen >= 0]] > 0)
        assert solution.profit == pytest.approx(
            profit[np.flatnonzero(chosen >= 0), chosen[chosen >= 0]].sum())
        # The documented bound: the gap is at most one item's value, and the reported LP
        # bound really is an upper bound on the optimum.
        assert best - solution.profit <= max(profit.max(), 0) + 1e-9
        assert best <= solution.upper_bound + 1e-9
        assert best - solution.profit <= solution.gap_bound + 1e-9
        optimal += best - solution.profit <= 1e-9
    assert optimal >= 0.9 * len(cases)  # and usually it is exact


def test_a_big_item_crowded_out_by_small_ones_is_recovered():
    # Budget 10: emails to both (0.2) leave 9.8, too little for the voucher the optimum buys.
    at_risk = np.array([1000.0, 500.0])
    profit = at_risk[:, None] * DEFAULT_SAVE - DEFAULT_COST
    solution = solve_mckp(profit, DEFAULT_COST, 10.0)
    assert solution.choice.tolist() == [0, -1]
    assert solution.profit == pytest.approx(240.0)
    assert solution.profit == pytest.approx(brute_force(profit, DEFAULT_COST, 10.0))


def test_when_everything_fits_the_greedy_is_optimal():
    rng = np.random.default_rng(3)
    at_risk = rng.gamma(1.2, 80, 6)
    profit = at_risk[:, None] * DEFAULT_SAVE - DEFAULT_COST
    solution = solve_mckp(profit, DEFAULT_COST, 1e6)
    best_per_row = np.where(profit.max(axis=1) > 0, profit.max(axis=1), 0).sum()
    assert solution.profit == pytest.approx(best_per_row)
    assert solution.gap_bound == pytest.approx(0.0, abs=1e-9)


def test_a_million_customers_within_budget_and_near_the_bound():
    rng = np.random.default_rng(11)
    n = 1_000_000
    p = rng.beta(2, 5, n)
    cltv = rng.gamma(1.5, 300, n)
    scores = pl.DataFrame({
        "snapshot_date": pl.repeat(date(2026, 3, 1), n, eager=True),
        "customer_id": pl.int_range(n, eager=True).cast(pl.String),
        "churn_probability": p, "cltv": cltv, "revenue_at_risk": p * cltv,
    })
    for budget in (500.0, 60_000.0):
        # Its speed is measured by `make bench`, not asserted here.
        result = budget_policy(scores, Actions(), budget=budget)
        day = result.days.row(0, named=True)
        assert result.decisions["cost"].sum() <= budget + 1e-6
        assert day["committed_cost"] >= 0.99 * budget  # the budget is used
        assert result.decisions["customer_id"].is_unique().all()
        # Provably near-optimal: within a millionth of the LP bound.
        assert day["net_value"] >= (1 - 1e-6) * day["net_value_bound"]
