"""Who gets which retention action today: the band rules and the budget-optimal policy.

Both read the daily score table (one row per customer per ``snapshot_date``: ``churn_probability``,
``cltv``, ``revenue_at_risk``, optionally ``risk_band``, ``segment``, ``driver_1..3``,
``model_version``) and return ``PolicyResult``: the chosen rows (``DECISION_SCHEMA``, at most one
action per customer and day) and one summary row per day (``DAY_SCHEMA``).

Money, per customer and action ``a``: ``expected_value = save_rate[a] x revenue_at_risk`` (revenue
the action is expected to keep), ``net_value = expected_value - cost[a]``.

- ``rule_policy``: the seeds' rules. High risk and high value (cltv >= the day's
  ``high_value_quantile``) -> discount_voucher; high risk below that cut ->
  ``rules_high_risk_low_value_action``; medium -> reengagement_email; low -> loyalty_reward.
  With a budget, customers are taken by descending revenue_at_risk while the running cost fits
  (stopping at the first that does not), so both policies can be compared at the same spend.
- ``budget_policy``: maximizes the day's total net_value with committed cost <= the budget
  (``knapsack.solve_mckp``; the gap to the optimum is at most one customer's net value and is
  reported per day as ``net_value_bound``). Actions with non-positive net value are never taken.

The published ``risk_band`` column is used when the score table has one (reasons then agree with
what the UI shows); otherwise it is derived with ``RiskBands``. The budget binds per day: a frame
with several days is solved day by day. Costs and budget are compared in micro-units (integers),
so the committed cost never exceeds the budget.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from churn_assets.decisions.config import (
    ActionCatalogue,
    Actions,
    DecisionSettings,
    PolicyConfig,
    RiskBands,
    catalogue,
)
from churn_assets.decisions.knapsack import MICRO, solve_mckp, to_micro
from churn_assets.decisions.text import action_phrase, driver_suffix, thousands, two_decimals

SCORE_REQUIRED = ("snapshot_date", "customer_id", "churn_probability", "cltv", "revenue_at_risk")
_OPTIONAL = {"segment": pl.String, "model_version": pl.String}

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "snapshot_date": pl.Date(), "customer_id": pl.String(), "segment": pl.String(),
    "risk_band": pl.String(), "churn_probability": pl.Float64(), "cltv": pl.Float64(),
    "revenue_at_risk": pl.Float64(), "action": pl.String(), "cost": pl.Float64(),
    "expected_value": pl.Float64(), "net_value": pl.Float64(),
    "priority": pl.Int64(),  # 1 = the day's most valuable (budget) or most at risk (rules)
    "policy": pl.String(), "reason": pl.String(), "model_version": pl.String(),
}
DAY_SCHEMA: dict[str, pl.DataType] = {
    "snapshot_date": pl.Date(), "policy": pl.String(), "customers_scored": pl.Int64(),
    "customers_selected": pl.Int64(), "committed_cost": pl.Float64(),
    "expected_value": pl.Float64(), "net_value": pl.Float64(),
    "net_value_bound": pl.Float64(),  # budget: no choice beats this (LP bound); rules: null
}


class PolicyResult(NamedTuple):
    decisions: pl.DataFrame  # DECISION_SCHEMA
    days: pl.DataFrame  # DAY_SCHEMA


def prepare_scores(scores: pl.DataFrame | pl.LazyFrame, bands: RiskBands | None = None
                   ) -> pl.DataFrame:
    """The score rows a policy can decide on: required columns checked, ``risk_band`` derived
    when absent, optional columns null when absent, rows without a probability, CLTV or revenue
    at risk dropped (nothing can be valued for them)."""
    bands = RiskBands() if bands is None else bands
    frame = scores.collect() if isinstance(scores, pl.LazyFrame) else scores
    missing = [c for c in SCORE_REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"the score table lacks columns {missing}; a policy needs "
                         f"{list(SCORE_REQUIRED)} (risk_band, segment, driver_1 are optional)")
    if "risk_band" not in frame.columns:
        frame = frame.with_columns(bands.band("churn_probability"))
    frame = frame.with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in _OPTIONAL.items() if name not in frame.columns
    ).with_columns(
        pl.col("snapshot_date").cast(pl.Date), pl.col("customer_id").cast(pl.String),
        pl.col("churn_probability", "cltv", "revenue_at_risk").cast(pl.Float64),
    ).filter(pl.all_horizontal(pl.col("churn_probability", "cltv", "revenue_at_risk")
                               .is_not_null() & pl.col("customer_id").is_not_null()))
    duplicated = frame.filter(pl.struct("snapshot_date", "customer_id").is_duplicated())
    if duplicated.height:
        example = duplicated.row(0, named=True)
        raise ValueError(f"the score table has {duplicated.height} rows for customers scored "
                         f"twice on one day, e.g. {example['customer_id']} on "
                         f"{example['snapshot_date']}; expected one row per customer and day")
    return frame


# ---------------------------------------------------------------- rules


def rule_policy(scores: pl.DataFrame | pl.LazyFrame, actions: ActionCatalogue | None = None,
                policy: PolicyConfig | None = None, bands: RiskBands | None = None,
                budget: float | None = None) -> PolicyResult:
    """The band rules; ``budget=None`` actions every customer a rule matches."""
    book = catalogue(Actions() if actions is None else actions)
    policy = PolicyConfig() if policy is None else policy
    frame = prepare_scores(scores, bands)
    cut = pl.col("cltv").quantile(policy.high_value_quantile, "linear").over("snapshot_date")
    band = pl.col("risk_band")
    low_value_action = policy.rules_high_risk_low_value_action
    action = (
        pl.when((band == "high") & pl.col("_high_value")).then(pl.lit("discount_voucher"))
        .when(band == "high").then(pl.lit(low_value_action, dtype=pl.String))
        .when(band == "medium").then(pl.lit("reengagement_email"))
        .when(band == "low").then(pl.lit("loyalty_reward"))
    )
    needed = {"discount_voucher", "reengagement_email", "loyalty_reward"}
    needed |= {low_value_action} if low_value_action else set()
    if unknown := sorted(needed - set(book)):
        raise ValueError(f"the rules use actions {unknown} that the action catalogue lacks "
                         f"(it has {sorted(book)})")
    p, cltv = two_decimals(pl.col("churn_probability")), thousands(pl.col("cltv"))
    reason = (
        pl.when((band == "high") & pl.col("_high_value"))
        .then(pl.format("high risk ({}) and high value (CLTV {})", p, cltv))
        .when(band == "high")
        .then(pl.format("high risk ({}), CLTV {} below the high-value cut ({})", p, cltv,
                        thousands(pl.col("_cut"))))
        .when(band == "medium").then(pl.format("medium risk ({}), CLTV {}", p, cltv))
        .otherwise(pl.format("low risk ({}): reward loyalty, CLTV {}", p, cltv))
    )
    chosen = (
        frame.with_columns(_cut=cut).with_columns(_high_value=pl.col("cltv") >= pl.col("_cut"))
        .with_columns(action=action)
        .filter(pl.col("action").is_not_null()
                & (pl.col("revenue_at_risk") >= policy.rules_min_revenue_at_risk))
        .with_columns(_priced(book))
        .with_columns(reason=pl.concat_str(reason, driver_suffix(frame.columns)))
        .sort(["snapshot_date", "revenue_at_risk", "customer_id"],
              descending=[False, True, False])
    )
    if budget is not None:
        _check_budget(budget)
        spent = (pl.col("cost") * MICRO).round(0).cast(pl.Int64).cum_sum().over("snapshot_date")
        chosen = chosen.filter(spent <= int(to_micro(budget)))
    chosen = chosen.with_columns(
        priority=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("snapshot_date"),
        policy=pl.lit("rules"))
    decisions = _conform(chosen, DECISION_SCHEMA)
    return PolicyResult(decisions, _days(frame, decisions, "rules", bounds=None))


# ---------------------------------------------------------------- budget


def budget_policy(scores: pl.DataFrame | pl.LazyFrame, actions: ActionCatalogue | None = None,
                  policy: PolicyConfig | None = None, bands: RiskBands | None = None,
                  budget: float | None = None) -> PolicyResult:
    """Maximize each day's net value under ``budget`` (default ``policy.daily_budget``)."""
    book = catalogue(Actions() if actions is None else actions)
    policy = PolicyConfig() if policy is None else policy
    budget = policy.daily_budget if budget is None else budget
    _check_budget(budget)
    frame = prepare_scores(scores, bands)
    names = list(book)
    save_rate = np.array([book[a].save_rate for a in names])
    cost = np.array([book[a].cost for a in names])
    parts, bounds = [], []
    for (day,), part in frame.sort("customer_id").partition_by(
            "snapshot_date", as_dict=True, maintain_order=True).items():
        at_risk = part["revenue_at_risk"].to_numpy()
        solution = solve_mckp(at_risk[:, None] * save_rate[None, :] - cost[None, :], cost, budget)
        picked = solution.choice >= 0
        parts.append(part.filter(pl.Series(picked)).with_columns(
            action=pl.Series(names, dtype=pl.String).gather(solution.choice[picked])))
        bounds.append({"snapshot_date": day, "net_value_bound": solution.upper_bound})
    chosen = pl.concat(parts) if parts else frame.clear().with_columns(
        action=pl.lit(None, dtype=pl.String))
    p, cltv = two_decimals(pl.col("churn_probability")), thousands(pl.col("cltv"))
    reason = pl.format("{} risk ({}), CLTV {}: {} is expected to save {} for {}",
                       pl.col("risk_band").fill_null("unknown"), p, cltv,
                       action_phrase(pl.col("action")), _amount(pl.col("expected_value")),
                       two_decimals(pl.col("cost")))
    chosen = (
        chosen.with_columns(_priced(book))
        .with_columns(reason=pl.concat_str(reason, driver_suffix(frame.columns)))
        .sort(["snapshot_date", "net_value", "customer_id"], descending=[False, True, False])
        .with_columns(priority=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
                      .over("snapshot_date"), policy=pl.lit("budget"))
    )
    decisions = _conform(chosen, DECISION_SCHEMA)
    bound_frame = pl.DataFrame(bounds, schema={"snapshot_date": pl.Date,
                                               "net_value_bound": pl.Float64})
    return PolicyResult(decisions, _days(frame, decisions, "budget", bounds=bound_frame))


def choose_actions(scores: pl.DataFrame | pl.LazyFrame,
                   settings: DecisionSettings | None = None) -> PolicyResult:
    """The configured policy (``settings.policy.kind``) at ``settings.policy.daily_budget``."""
    settings = DecisionSettings() if settings is None else settings
    run = budget_policy if settings.policy.kind == "budget" else rule_policy
    return run(scores, settings.actions, settings.policy, settings.bands,
               budget=settings.policy.daily_budget)


# ---------------------------------------------------------------- helpers


def _check_budget(budget: float) -> None:
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"the daily budget must be a non-negative number; got {budget}")


def _priced(book: dict) -> list[pl.Expr]:
    names = list(book)
    cost = pl.col("action").replace_strict(names, [book[a].cost for a in names],
                                           return_dtype=pl.Float64)
    rate = pl.col("action").replace_strict(names, [book[a].save_rate for a in names],
                                           return_dtype=pl.Float64)
    value = rate * pl.col("revenue_at_risk")
    return [cost.alias("cost"), value.alias("expected_value"), (value - cost).alias("net_value")]


def _amount(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr < 100).then(two_decimals(expr)).otherwise(thousands(expr))


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def _days(scored: pl.DataFrame, decisions: pl.DataFrame, policy: str,
          bounds: pl.DataFrame | None) -> pl.DataFrame:
    counts = scored.group_by("snapshot_date").agg(customers_scored=pl.len().cast(pl.Int64))
    sums = decisions.group_by("snapshot_date").agg(
        customers_selected=pl.len().cast(pl.Int64), committed_cost=pl.col("cost").sum(),
        expected_value=pl.col("expected_value").sum(), net_value=pl.col("net_value").sum())
    days = counts.join(sums, on="snapshot_date", how="left").with_columns(
        pl.col("customers_selected").fill_null(0),
        pl.col("committed_cost", "expected_value", "net_value").fill_null(0.0),
        policy=pl.lit(policy))
    if bounds is None:
        days = days.with_columns(net_value_bound=pl.lit(None, dtype=pl.Float64))
    else:
        days = days.join(bounds, on="snapshot_date", how="left")
    return _conform(days.sort("snapshot_date"), DAY_SCHEMA)
