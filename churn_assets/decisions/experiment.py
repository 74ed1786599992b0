"""The experiment inside every day's decisions: exploration, a power-sized control hold-out, and
the propensity of every logged assignment.

Two randomized strata, each drawn with the deterministic per-customer hash of ``control.py``
(so a rerun draws the same customers):

- **explore**: an ``explore_share`` of the eligible customers (draw keyed ``EXPLORE-<day>``)
  gets one of the K actions or ``no_action`` uniformly at random (draw keyed
  ``EXPLORE-ARM-<day>``), whatever the policy would have done. Propensity ``1 / (K + 1)``.
  Exploration spends at most ``explore_budget_share`` of the day's budget: explorers are taken
  in draw order while *the cost of those before them plus the most expensive action* fits, so
  whether a customer is explored never depends on their own arm (their arm stays uniform) and
  the cap always holds. What is left of the budget goes to the policy.
- **policy**: the policy chooses among the other customers; of those it selects for action
  ``a``, a share ``c_a`` is held out as control (``assign_control``). Propensity ``1 - c_a``
  for a treated row and ``c_a`` for a control row.

Both strata depend on the customer only through the scores the policy read and hash draws, so
within each, assignment is random given the features: an outcome model per arm (``ml/uplift``)
is unbiased, and rows weighted by ``1 / propensity`` stand for their stratum's population.
Explore rows are additionally a uniform sample of *all* eligible customers: off-policy
evaluation (``ope.py``) reads only them.

Power: with ``n`` customers selected for ``a`` over one outcome window and a control share
``c``, the minimum detectable retention uplift at 95 % confidence (two-sided) and 80 % power is
``(z_0.975 + z_0.8) x sqrt(p (1 - p) (1 / (n (1 - c)) + 1 / (n c)))`` for a retention rate
``p``. ``control_plan`` picks per action the smallest ``c`` in ``[control_share,
max_control_share]`` that reaches ``target_mde`` (``c (1 - c) >= z^2 p (1 - p) / (n MDE^2)``)
and says when even the largest cannot: the budget buys too few customers for that action.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
from scipy import stats

from churn_assets.decisions.config import ActionConfig, ExperimentConfig
from churn_assets.decisions.control import control_draws
from churn_assets.decisions.knapsack import to_micro

NO_ACTION = "no_action"
Z_POWER = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.8))  # 95 % two-sided, 80 % power
# Without a measured control retention, the variance is taken at its largest (p = 0.5).
DEFAULT_RETENTION = 0.5

POWER_SCHEMA: dict[str, pl.DataType] = {
    "action": pl.String(), "selected_per_day": pl.Int64(), "control_share": pl.Float64(),
    "treated_in_window": pl.Int64(), "control_in_window": pl.Int64(),
    "explored_per_arm_in_window": pl.Int64(), "mde": pl.Float64(), "target_mde": pl.Float64(),
    "reachable": pl.Boolean(),
}


def explore(eligible: pl.DataFrame, day: date, actions: dict[str, ActionConfig],
            share: float, budget: float) -> pl.DataFrame:
    """The day's explorers among ``eligible`` (one row per customer): ``customer_id``,
    ``action`` (an action or ``NO_ACTION``), ``cost``, ``propensity``; at most ``budget``
    spent."""
    schema = {"customer_id": pl.String, "action": pl.String, "cost": pl.Float64,
              "propensity": pl.Float64}
    if share <= 0 or eligible.is_empty() or budget <= 0:
        return pl.DataFrame(schema=schema)
    arms = [*actions, NO_ACTION]
    ids = eligible["customer_id"].cast(pl.String)
    member = control_draws(ids, pl.Series([f"EXPLORE-{day.isoformat()}"] * ids.len()))
    arm = control_draws(ids, pl.Series([f"EXPLORE-ARM-{day.isoformat()}"] * ids.len()))
    costs = [actions[a].cost if a in actions else 0.0 for a in arms]
    drawn = pl.DataFrame({"customer_id": ids, "_u": member, "_arm": arm}).filter(
        pl.col("_u") < share).sort("_u", "customer_id").with_columns(
        action=pl.col("_arm").mul(len(arms)).floor().cast(pl.Int64).clip(0, len(arms) - 1)
        .replace_strict(list(range(len(arms))), arms, return_dtype=pl.String),
    ).with_columns(cost=pl.col("action").replace_strict(arms, costs, return_dtype=pl.Float64))
    micro = to_micro(drawn["cost"].to_numpy())
    before = np.cumsum(micro) - micro
    fits = before + int(to_micro(max(costs))) <= int(to_micro(budget))
    return drawn.filter(pl.Series(fits)).select(
        "customer_id", "action", "cost", propensity=pl.lit(1.0 / len(arms)))


def minimum_detectable_uplift(treated: float, control: float,
                              retention: float = DEFAULT_RETENTION) -> float:
    """The smallest retention uplift a treated-vs-control comparison of these arm sizes
    detects at 95 % confidence and 80 % power (inf when an arm is empty)."""
    if treated <= 0 or control <= 0:
        return math.inf
    p = min(max(retention, 0.01), 0.99)
    return Z_POWER * math.sqrt(p * (1 - p) * (1 / treated + 1 / control))


def control_share_for(selected_in_window: float, target_mde: float, floor: float, cap: float,
                      retention: float = DEFAULT_RETENTION) -> tuple[float, bool]:
    """The smallest control share in ``[floor, cap]`` whose arms detect ``target_mde``, and
    whether it does (``cap`` and False when no share does)."""
    floor, cap = min(floor, cap), max(floor, cap)
    if selected_in_window <= 0:
        return floor, False
    p = min(max(retention, 0.01), 0.99)
    needed = Z_POWER**2 * p * (1 - p) / (selected_in_window * target_mde**2)  # c(1-c) >= this
    if needed > 0.25:
        return cap, False
    share = (1 - math.sqrt(1 - 4 * needed)) / 2
    if share > cap:
        return cap, False
    return max(floor, share), True


def control_plan(selected_per_day: dict[str, int], window_days: int, explored_per_day: int,
                 arms: int, config: ExperimentConfig, control_share: float,
                 retention: float | None = None) -> pl.DataFrame:
    """Per action: the control share to use today and what it buys over one outcome window
    (``POWER_SCHEMA``), assuming the coming days select as many customers as today."""
    p = DEFAULT_RETENTION if retention is None or not np.isfinite(retention) else retention
    rows = []
    explored_per_arm = explored_per_day * window_days // max(arms, 1)
    for action, selected in selected_per_day.items():
        n = selected * window_days
        share, reachable = control_share_for(n, config.target_mde, control_share,
                                             config.max_control_share, p)
        treated, control = round(n * (1 - share)), round(n * share)
        rows.append({
            "action": action, "selected_per_day": selected, "control_share": share,
            "treated_in_window": treated, "control_in_window": control,
            "explored_per_arm_in_window": explored_per_arm,
            "mde": minimum_detectable_uplift(treated, control, p),
            "target_mde": config.target_mde, "reachable": reachable,
        })
    return pl.DataFrame(rows, schema=POWER_SCHEMA)


def power_warning(plan: pl.DataFrame) -> str | None:
    """A sentence naming the actions whose hold-out cannot reach the target, or None."""
    short = plan.filter(~pl.col("reachable"))
    if short.is_empty():
        return None
    parts = [f"{r['action']} (MDE {r['mde']:.3f} with {r['treated_in_window']} treated / "
             f"{r['control_in_window']} control per window)" for r in short.iter_rows(named=True)]
    return (f"the budget cannot reach the target minimum detectable uplift "
            f"{short['target_mde'][0]:.3f} for {', '.join(parts)}: raise the budget, "
            "[decisions.experiment] max_control_share or outcome_window_days, or accept a "
            "larger target_mde")
