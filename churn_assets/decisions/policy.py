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
from churn_assets.decisions.text import (
    action_phrase,
    driver_suffix,
    signed,
    thousands,
    two_decimals,
)

SCORE_REQUIRED = ("snapshot_date", "customer_id", "churn_probability", "cltv", "revenue_at_risk")
_OPTIONAL = {"segment": pl.String, "model_version": pl.String}

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "snapshot_date": pl.Date(), "customer_id": pl.String(), "segment": pl.String(),
    "risk_band": pl.String(), "churn_probability": pl.Float64(), "cltv": pl.Float64(),
    "revenue_at_risk": pl.Float64(), "action": pl.String(), "cost": pl.Float64(),
    "expected_value": pl.Float64(), "net_value": pl.Float64(),
    "priority": pl.Int64(),  # 1 = the day's most valuable (budget) or most at risk (rules)
    "policy": pl.String(), "reason": pl.String(), "model_version": pl.String(),
    # The retention uplift the valuation assumed: the uplift model's, or save rate x risk.
    "retention_uplift": pl.Float64(),
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
                  budget: float | None = None, uplift: pl.DataFrame | None = None,
                  value: str = "cltv") -> PolicyResult:
    """Maximize each day's net value under ``budget`` (default ``policy.daily_budget``).

    Without ``uplift`` an action's value is ``save_rate x revenue_at_risk``; with it (rows of
    ``customer_id``, ``action``, ``retention_uplift``, ``revenue_uplift``: the uplift model's
    per-customer predictions, see ``action_values``) it is that customer's predicted
    incremental revenue.
    """
    book = catalogue(Actions() if actions is None else actions)
    policy = PolicyConfig() if policy is None else policy
    budget = policy.daily_budget if budget is None else budget
    _check_budget(budget)
    frame = prepare_scores(scores, bands)
    names = list(book)
    cost = np.array([book[a].cost for a in names])
    valued = action_values(frame.sort("snapshot_date", "customer_id"), book, uplift, value)
    parts, bounds = [], []
    for (day,), part in valued.partition_by(
            "snapshot_date", as_dict=True, maintain_order=True).items():
        worth = part.select(f"_value_{a}" for a in names).to_numpy().astype(np.float64)
        solution = solve_mckp(worth - cost[None, :], cost, budget)
        picked = solution.choice >= 0
        parts.append(part.filter(pl.Series(picked)).with_columns(
            action=pl.Series(names, dtype=pl.String).gather(solution.choice[picked])))
        bounds.append({"snapshot_date": day, "net_value_bound": solution.upper_bound})
    chosen = pl.concat(parts) if parts else valued.clear().with_columns(
        action=pl.lit(None, dtype=pl.String))
    chosen = (
        chosen.with_columns(_chosen_value(book, chosen.columns))
        .with_columns(reason=pl.concat_str(_budget_reason(uplift is not None),
                                           driver_suffix(frame.columns)))
        .sort(["snapshot_date", "net_value", "customer_id"], descending=[False, True, False])
        .with_columns(priority=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
                      .over("snapshot_date"), policy=pl.lit("budget"))
    )
    decisions = _conform(chosen, DECISION_SCHEMA)
    bound_frame = pl.DataFrame(bounds, schema={"snapshot_date": pl.Date,
                                               "net_value_bound": pl.Float64})
    return PolicyResult(decisions, _days(frame, decisions, "budget", bounds=bound_frame))


UPLIFT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(), "action": pl.String(), "retention_uplift": pl.Float64(),
    "revenue_uplift": pl.Float64(),
}


def action_values(frame: pl.DataFrame, actions: ActionCatalogue,
                  uplift: pl.DataFrame | None = None, value: str = "cltv") -> pl.DataFrame:
    """``frame`` with, per action ``a``, ``_uplift_<a>`` (the predicted retention uplift) and
    ``_value_<a>`` (the revenue it is expected to keep).

    Save rates (no ``uplift``): ``save_rate x churn_probability`` of retention, worth
    ``save_rate x revenue_at_risk``. Uplift predictions: ``retention_uplift`` of retention,
    worth ``retention_uplift x cltv`` (``value="cltv"``: a kept customer keeps their expected
    value) or ``revenue_uplift`` (``value="window_revenue"``). A customer without a prediction
    gets none of the actions (null value).
    """
    book = catalogue(actions)
    if uplift is None:
        return frame.with_columns(
            [(pl.lit(book[a].save_rate) * pl.col("churn_probability")).alias(f"_uplift_{a}")
             for a in book]
            + [(pl.lit(book[a].save_rate) * pl.col("revenue_at_risk")).alias(f"_value_{a}")
               for a in book])
    if value not in ("cltv", "window_revenue"):
        raise ValueError(f"value must be 'cltv' or 'window_revenue'; got {value!r}")
    missing = [c for c in UPLIFT_SCHEMA if c not in uplift.columns]
    if missing:
        raise ValueError(f"uplift predictions lack columns {missing}; expected {list(UPLIFT_SCHEMA)}")
    # Predictions for several days carry their snapshot_date; one day's may leave it out.
    keys = ["customer_id", *(["snapshot_date"] if "snapshot_date" in uplift.columns else [])]
    wide = uplift.select(*(pl.col(c).cast(t) for c, t in UPLIFT_SCHEMA.items()),
                         *keys[1:]).filter(pl.col("action").is_in(list(book))).pivot(
        on="action", index=keys, values=["retention_uplift", "revenue_uplift"])
    renamed = {f"{measure}_{a}": f"_{measure}_{a}" for a in book
               for measure in ("retention_uplift", "revenue_uplift")}
    wide = wide.rename({k: v for k, v in renamed.items() if k in wide.columns})
    wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(v) for v in renamed.values()
                             if v not in wide.columns)
    joined = frame.join(wide, on=keys, how="left")
    worth = {a: (pl.col(f"_retention_uplift_{a}") * pl.col("cltv")) if value == "cltv"
             else pl.col(f"_revenue_uplift_{a}") for a in book}
    return joined.with_columns(
        [pl.col(f"_retention_uplift_{a}").alias(f"_uplift_{a}") for a in book]
        + [worth[a].alias(f"_value_{a}") for a in book],
    ).drop(renamed.values())


def _chosen_value(book: dict, columns: list[str]) -> list[pl.Expr]:
    """cost, expected_value, net_value and retention_uplift of each row's chosen ``action``."""
    names = list(book)

    def pick(prefix: str) -> pl.Expr:
        out = pl.lit(None, dtype=pl.Float64)
        for a in names:
            out = pl.when(pl.col("action") == a).then(pl.col(f"{prefix}{a}")).otherwise(out)
        return out

    cost = pl.col("action").replace_strict(names, [book[a].cost for a in names],
                                           return_dtype=pl.Float64)
    return [cost.alias("cost"), pick("_value_").alias("expected_value"),
            (pick("_value_") - cost).alias("net_value"),
            pick("_uplift_").alias("retention_uplift")]


def _budget_reason(from_model: bool) -> pl.Expr:
    """Why: the uplift model's prediction ("voucher: predicted +6.1 % retention, +41 kept, cost
    10.00"), or the save rate's expectation with the risk that drives it."""
    if from_model:
        return pl.format("{}: predicted {} % retention, {} kept, cost {}",
                         action_phrase(pl.col("action")),
                         signed(pl.col("retention_uplift") * 100, percent=True),
                         signed(pl.col("expected_value")), two_decimals(pl.col("cost")))
    p, cltv = two_decimals(pl.col("churn_probability")), thousands(pl.col("cltv"))
    return pl.format("{} risk ({}), CLTV {}: {} is expected to save {} for {}",
                     pl.col("risk_band").fill_null("unknown"), p, cltv,
                     action_phrase(pl.col("action")), _amount(pl.col("expected_value")),
                     two_decimals(pl.col("cost")))


def choose_actions(scores: pl.DataFrame | pl.LazyFrame,
                   settings: DecisionSettings | None = None,
                   uplift: pl.DataFrame | None = None,
                   budget: float | None = None) -> PolicyResult:
    """The configured policy (``settings.policy.kind``) at ``budget`` (default
    ``settings.policy.daily_budget``); the budget policy values actions with ``uplift``
    predictions when given (the rules ignore them)."""
    settings = DecisionSettings() if settings is None else settings
    budget = settings.policy.daily_budget if budget is None else budget
    if settings.policy.kind == "budget":
        return budget_policy(scores, settings.actions, settings.policy, settings.bands,
                             budget=budget, uplift=uplift, value=settings.uplift.value)
    return rule_policy(scores, settings.actions, settings.policy, settings.bands, budget=budget)


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
    return [cost.alias("cost"), value.alias("expected_value"), (value - cost).alias("net_value"),
            (rate * pl.col("churn_probability")).alias("retention_uplift")]


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
