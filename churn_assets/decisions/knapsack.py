"""The multiple-choice knapsack behind the budget policy, vectorized with numpy.

Each customer ``i`` (a row) may get at most one option ``a`` (a column) with ``profit[i, a]``
(expected saved revenue minus cost) and ``cost[a]`` (or ``cost[i, a]``); choose at most one option
per row to maximize total profit with total cost <= budget. Options with non-positive profit
are never chosen.

The solver is the LP-relaxation greedy for the MCKP (Sinha & Zoltners, 1979):

1. Per row, keep the upper convex hull of its options in the (cost, profit) plane, starting at
   "do nothing" (0, 0). Walking the hull gives *increments* (upgrade from one option to the next)
   of decreasing efficiency d_profit / d_cost. Options under the hull are LP-dominated.
2. Sort all increments of all rows by efficiency and take them in that order while they fit.
   A row's increments stay in their hull order, so the taken ones always describe one option per
   row. The first increment that does not fit is the *break item*; the LP optimum takes a
   fraction of it, so ``LP = greedy prefix + fraction x d_profit(break)`` bounds the optimum.
3. Fill the budget left over: repeatedly give every row its most efficient upgrade that still
   fits (from its current option to any better one) and take those in efficiency order while
   they fit. This only adds profit and never exceeds the budget.
4. Also try the break item's option first (reserved), the greedy running on the other rows with
   the rest of the budget, and keep the better of the two: a big, valuable item crowded out by
   many small ones is not lost (this also makes the solver a 1/2-approximation in the worst
   case).

Optimality gap: ``optimum - greedy <= LP - greedy <= d_profit(break) <= max_ia profit[i, a]``:
at most one item's value (``Solution.upper_bound`` reports the LP bound, so the gap of every
solve is measured, not only bounded). With thousands of chosen customers that is a fraction of a
percent. When every row's best option fits at once, there is no break item and the greedy is
optimal.

Costs and the budget are compared in whole micro-units (1e-6 of the currency) with integers, so
rounding can never push the spend over the budget; amounts with at most six decimals (any real
currency amount) are represented exactly.

Every step is a numpy operation over all rows, looping only over the (few) options and fill
rounds: a million customers with three actions solve in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MICRO = 1_000_000
FILL_ROUNDS = 32  # each fill round takes at least one upgrade; a handful usually fill the budget


@dataclass(frozen=True)
class Solution:
    """``choice[i]`` is the chosen option (column) of row ``i``, or -1 for none."""

    choice: np.ndarray
    spend: float
    profit: float
    upper_bound: float  # the LP relaxation's optimum: no integer solution has more profit

    @property
    def gap_bound(self) -> float:
        """How far this solution may be from the optimum, at most (0 when provably optimal)."""
        return max(0.0, self.upper_bound - self.profit)


def to_micro(amount: np.ndarray | float) -> np.ndarray:
    """Currency amounts as whole micro-units (int64)."""
    return np.rint(np.asarray(amount, dtype=np.float64) * MICRO).astype(np.int64)


def solve_mckp(profit: np.ndarray, cost: np.ndarray, budget: float) -> Solution:
    """Choose at most one option per row to maximize total profit under ``budget``.

    ``profit`` is ``(rows, options)``; NaN or non-positive profits mark options never to take.
    ``cost`` is ``(options,)`` or ``(rows, options)``, non-negative.
    """
    profit = np.asarray(profit, dtype=np.float64)
    if profit.ndim != 2:
        raise ValueError(f"profit must be a (rows, options) array; got shape {profit.shape}")
    n, k = profit.shape
    weight = np.broadcast_to(to_micro(cost), (n, k)) if n else np.zeros((0, k), np.int64)
    if np.any(weight < 0):
        raise ValueError("option costs must be non-negative")
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"the budget must be a non-negative number; got {budget}")
    capacity = int(to_micro(budget))
    valid = np.isfinite(profit) & (profit > 0)

    # Free options (cost 0) with positive profit are taken outright: the best one is the base.
    free = np.where(valid & (weight == 0), profit, -np.inf)
    base = np.where(np.isfinite(free.max(axis=1, initial=-np.inf)), free.argmax(axis=1), -1) \
        if k else np.full(n, -1)
    base_profit = np.where(base >= 0, free.max(axis=1, initial=0.0), 0.0)

    increments = _hull_increments(profit, weight, valid, base_profit)
    row, option, d_weight, d_profit, efficiency, step = increments
    order = np.lexsort((row, step, -efficiency))
    row, option, d_weight, d_profit, step = (a[order] for a in (row, option, d_weight, d_profit,
                                                                  step))
    spent = np.cumsum(d_weight)
    taken = int(np.searchsorted(spent, capacity, side="right"))  # spent is non-decreasing
    upper = float(base_profit.sum() + d_profit[:taken].sum())
    if taken < row.size:
        left = capacity - (int(spent[taken - 1]) if taken else 0)
        upper += d_profit[taken] * left / d_weight[taken]

    choice = _prefix_and_fill(profit, weight, valid, base, row, option, d_weight, step, capacity)
    if taken < row.size and weight[row[taken], option[taken]] <= capacity:
        # The break item's option alone may beat the prefix (a big item the prefix crowded
        # out): reserve it first, then run the greedy on the other rows with what is left.
        b, chosen = row[taken], option[taken]
        others = row != b
        reserved = base.copy()
        reserved[b] = chosen
        alternative = _prefix_and_fill(
            profit, weight, valid, reserved, row[others], option[others], d_weight[others],
            step[others], capacity - int(weight[b, chosen]))
        if _gather(profit, alternative, 0.0).sum() > _gather(profit, choice, 0.0).sum():
            choice = alternative

    chosen_weight = _gather(weight, choice, 0)
    total = float(_gather(profit, choice, 0.0).sum())
    return Solution(choice=choice, spend=int(chosen_weight.sum()) / MICRO, profit=total,
                    upper_bound=float(max(upper, total)))


def _prefix_and_fill(profit, weight, valid, base, row, option, d_weight, step, capacity: int
                     ) -> np.ndarray:
    """Take the sorted increments while they fit, then fill what is left (``_fill``)."""
    taken = int(np.searchsorted(np.cumsum(d_weight), capacity, side="right"))
    choice = base.copy()
    for s in range(profit.shape[1]):  # in step order: a row's later option overwrites earlier
        mask = step[:taken] == s
        choice[row[:taken][mask]] = option[:taken][mask]
    _fill(profit, weight, valid, choice, capacity - int(_gather(weight, choice, 0).sum()))
    return choice


def _gather(values: np.ndarray, choice: np.ndarray, none: float | int) -> np.ndarray:
    rows = np.arange(choice.size)
    picked = values[rows, np.maximum(choice, 0)] if values.shape[1] else np.zeros(choice.size)
    return np.where(choice >= 0, picked, none)


def _hull_increments(profit, weight, valid, base_profit):
    """Gift-wrap each row's upper hull from (0, base_profit): at most ``options`` steps, each
    vectorized over rows. Ties in efficiency go to the cheaper option (smaller steps fill a tight
    budget better); efficiencies are clipped to be non-increasing along a row so that float
    rounding cannot reorder a row's increments."""
    n, k = profit.shape
    current_w = np.zeros(n, dtype=np.int64)
    current_p = base_profit.copy()
    last_eff = np.full(n, np.inf)
    parts: list[tuple[np.ndarray, ...]] = []
    for s in range(k):
        d_w = weight - current_w[:, None]
        d_p = profit - current_p[:, None]
        eligible = valid & (d_w > 0) & (d_p > 0)
        eff = np.where(eligible, d_p / np.where(d_w > 0, d_w, 1), -np.inf)
        best = eff.max(axis=1)
        has = np.isfinite(best)
        if not has.any():
            break
        # Among the most efficient options, the cheapest.
        tied_w = np.where(eligible & (eff == best[:, None]), weight, np.iinfo(np.int64).max)
        pick = tied_w.argmin(axis=1)
        r = np.flatnonzero(has)
        a = pick[r]
        eff_r = np.minimum(best[r], last_eff[r])
        parts.append((r, a, d_w[r, a], d_p[r, a], eff_r, np.full(r.size, s)))
        current_w[r] = weight[r, a]
        current_p[r] = profit[r, a]
        last_eff[r] = eff_r
    if not parts:
        empty_i = np.zeros(0, dtype=np.int64)
        return empty_i, empty_i, empty_i, np.zeros(0), np.zeros(0), empty_i
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _fill(profit, weight, valid, choice, left: int) -> None:
    """Spend what the greedy prefix left: rounds of 'each row's most efficient upgrade that
    fits, taken in efficiency order while they fit'. Updates ``choice`` in place."""
    n, _ = profit.shape
    candidates = np.arange(n)
    for _ in range(FILL_ROUNDS):
        if left <= 0 or candidates.size == 0:
            return
        current_w = _gather(weight[candidates], choice[candidates], 0)
        current_p = _gather(profit[candidates], choice[candidates], 0.0)
        d_w = weight[candidates] - current_w[:, None]
        d_p = profit[candidates] - current_p[:, None]
        eligible = valid[candidates] & (d_w > 0) & (d_w <= left) & (d_p > 0)
        keep = eligible.any(axis=1)
        candidates, d_w, d_p, eligible = (candidates[keep], d_w[keep], d_p[keep],
                                          eligible[keep])
        if candidates.size == 0:
            return
        eff = np.where(eligible, d_p / np.where(d_w > 0, d_w, 1), -np.inf)
        pick = eff.argmax(axis=1)
        idx = np.arange(candidates.size)
        order = np.lexsort((candidates, -eff[idx, pick]))
        spent = np.cumsum(d_w[idx, pick][order])
        taken = order[: int(np.searchsorted(spent, left, side="right"))]
        choice[candidates[taken]] = pick[taken]
        left -= int(d_w[taken, pick[taken]].sum())
