"""A day's decisions end to end (exploration, policy, control group) and the CRM feed.

Exploration first (``experiment.py``): a share of the eligible customers gets a random arm and
spends at most its share of the budget. Budget and control group: the policy then selects under
what is left of the daily budget among the other customers, and the control group is drawn
among the selected (``control.py``), its share per action sized by the power calculation. Control customers
are therefore exactly comparable to the treated ones (same selection), and they cost nothing:
the committed cost (treated and control) is <= the budget, and the spend actually incurred,
``treated_cost``, is about ``(1 - control_share)`` of it. In the feed, ``cost`` is what a row
spends (0.0 for control rows); ``expected_value`` stays the policy's estimate had the customer
been treated, so both arms can be compared to it.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from churn_assets.decisions.config import DecisionSettings, catalogue
from churn_assets.decisions.control import assign_control, campaign_id_expr
from churn_assets.decisions.experiment import (
    NO_ACTION,
    POWER_SCHEMA,
    control_plan,
    explore,
)
from churn_assets.decisions.policy import (
    DAY_SCHEMA,
    DECISION_SCHEMA,
    action_values,
    choose_actions,
    prepare_scores,
    rule_policy,
)
from churn_assets.decisions.text import action_phrase

DECIDED_SCHEMA: dict[str, pl.DataType] = {
    **DECISION_SCHEMA, "campaign_id": pl.String(), "control": pl.Boolean(), "treated": pl.Boolean(),
    # The experiment (experiment.py): which stratum assigned the row, whether its arm was drawn
    # at random, and the probability of that arm; what the configured policy and the rules
    # would have chosen for this customer at the full budget (off-policy evaluation reads them).
    "assignment": pl.String(), "randomized": pl.Boolean(), "propensity": pl.Float64(),
    "policy_action": pl.String(), "rules_action": pl.String(),
}
DECIDED_DAY_SCHEMA: dict[str, pl.DataType] = {
    **DAY_SCHEMA, "customers_treated": pl.Int64(), "customers_control": pl.Int64(),
    "treated_cost": pl.Float64(), "customers_explored": pl.Int64(), "explore_cost": pl.Float64(),
}
FEED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(), "snapshot_date": pl.Date(), "campaign_id": pl.String(),
    "action": pl.String(), "cost": pl.Float64(), "expected_value": pl.Float64(),
    "control": pl.Boolean(), "reason": pl.String(),
}
EXPERIMENT_COLUMNS = ("assignment", "randomized", "propensity", "policy_action", "rules_action")


class Decided(NamedTuple):
    decisions: pl.DataFrame  # DECIDED_SCHEMA
    days: pl.DataFrame  # DECIDED_DAY_SCHEMA
    power: pl.DataFrame  # experiment.POWER_SCHEMA, one row per action selected on each day


def decide(scores: pl.DataFrame | pl.LazyFrame, settings: DecisionSettings | None = None,
           uplift: pl.DataFrame | None = None, window_days: int = 30,
           retention: float | None = None) -> Decided:
    """Each day: explorers first (within their share of the budget), then the configured policy
    on the others with the rest of the budget, then a power-sized control group per action.

    ``uplift`` (``policy.UPLIFT_SCHEMA``) values actions per customer for the budget policy;
    ``window_days`` and ``retention`` (the control retention measured so far) size the
    control groups (``experiment.control_plan``).
    """
    settings = DecisionSettings() if settings is None else settings
    frame = prepare_scores(scores, settings.bands)
    decided, days, plans = [], [], []
    for (day,), today in frame.partition_by("snapshot_date", as_dict=True,
                                            maintain_order=True).items():
        rows, summary, plan = _decide_day(today, day, settings, uplift, window_days, retention)
        decided.append(rows)
        days.append(summary)
        plans.append(plan.with_columns(snapshot_date=pl.lit(day)))
    decisions = pl.concat(decided) if decided else pl.DataFrame(schema=DECIDED_SCHEMA)
    empty_days = frame.clear().select("snapshot_date")
    return Decided(
        decisions,
        pl.concat(days) if days else empty_days.select(
            pl.lit(None, dtype=t).alias(c) for c, t in DECIDED_DAY_SCHEMA.items()).clear(),
        pl.concat(plans) if plans else pl.DataFrame(
            schema={**POWER_SCHEMA, "snapshot_date": pl.Date}),
    )


def _decide_day(today: pl.DataFrame, day, settings: DecisionSettings,
                uplift: pl.DataFrame | None, window_days: int, retention: float | None
                ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    book = catalogue(settings.actions)
    policy, experiment = settings.policy, settings.experiment
    budget = policy.daily_budget
    explorers = explore(today, day, book, experiment.explore_share,
                        budget * experiment.explore_budget_share)
    explore_cost = float(explorers["cost"].sum()) if explorers.height else 0.0
    rest = today.join(explorers.select("customer_id"), on="customer_id", how="anti")
    chosen = choose_actions(rest, settings, uplift, budget=max(0.0, budget - explore_cost))

    selected = dict(chosen.decisions.group_by("action").len().iter_rows())
    plan = control_plan(selected, window_days, explorers.height, len(book) + 1, experiment,
                        policy.control_share, retention)
    shares = dict(zip(plan["action"].to_list(), plan["control_share"].to_list(), strict=True))
    policy_rows = assign_control(chosen.decisions, shares).with_columns(
        assignment=pl.lit("policy"),
        propensity=pl.when(pl.col("control"))
        .then(pl.col("action").replace_strict(shares, default=0.0, return_dtype=pl.Float64))
        .otherwise(1 - pl.col("action").replace_strict(shares, default=0.0,
                                                       return_dtype=pl.Float64)),
    ).with_columns(randomized=pl.col("propensity") < 1)
    explore_rows = _explore_rows(today, explorers, book, settings, uplift, day)

    # What each policy would have chosen for every customer of the day at the full budget.
    shadow = choose_actions(today, settings, uplift, budget=budget).decisions
    rules = rule_policy(today, settings.actions, policy, settings.bands, budget=budget).decisions
    choices = today.select("customer_id").join(
        shadow.select("customer_id", policy_action="action"), on="customer_id", how="left"
    ).join(rules.select("customer_id", rules_action="action"), on="customer_id", how="left"
           ).with_columns(pl.col("policy_action", "rules_action").fill_null(NO_ACTION))
    rows = pl.concat([
        policy_rows.select(c for c in DECIDED_SCHEMA if c not in ("policy_action",
                                                                   "rules_action")),
        explore_rows.select(c for c in DECIDED_SCHEMA if c not in ("policy_action",
                                                                    "rules_action")),
    ], how="vertical_relaxed").join(choices, on="customer_id", how="left").with_columns(
        # A policy row's choice is what the policy did; an explorer's, what it would have done.
        policy_action=pl.when(pl.col("assignment") == "policy").then(pl.col("action"))
        .otherwise(pl.col("policy_action")),
    ).select(pl.col(c).cast(t) for c, t in DECIDED_SCHEMA.items())

    policy_day = chosen.days.row(0, named=True) if chosen.days.height else {}
    treated = rows.filter(pl.col("treated"))
    summary = pl.DataFrame([{
        "snapshot_date": day, "policy": policy.kind, "customers_scored": today.height,
        "customers_selected": int(policy_day.get("customers_selected") or 0),
        "committed_cost": float(policy_day.get("committed_cost") or 0.0) + explore_cost,
        "expected_value": float(policy_day.get("expected_value") or 0.0),
        "net_value": float(policy_day.get("net_value") or 0.0),
        "net_value_bound": policy_day.get("net_value_bound"),
        "customers_treated": treated.height, "customers_control": rows.height - treated.height,
        "treated_cost": float(treated["cost"].sum()), "customers_explored": explorers.height,
        "explore_cost": explore_cost,
    }], schema=DECIDED_DAY_SCHEMA)
    return rows, summary.select(pl.col(c).cast(t) for c, t in DECIDED_DAY_SCHEMA.items()), plan


def _explore_rows(today: pl.DataFrame, explorers: pl.DataFrame, book, settings, uplift, day
                  ) -> pl.DataFrame:
    """Explorers as decided rows: their random arm, valued as the policy would value it."""
    arms = len(book) + 1
    valued = action_values(today.join(explorers.select("customer_id", "action", "propensity"),
                                      on="customer_id"), book, uplift, settings.uplift.value)
    picked = valued.with_columns(
        _value=_pick(book, "_value_"), _uplift=_pick(book, "_uplift_"),
        cost=pl.col("action").replace_strict(list(book), [c.cost for c in book.values()],
                                             default=0.0, return_dtype=pl.Float64))
    untreated = pl.col("action") == NO_ACTION
    return picked.with_columns(
        expected_value=pl.col("_value").fill_null(0.0),
        net_value=pl.col("_value").fill_null(0.0) - pl.col("cost"),
        retention_uplift=pl.col("_uplift").fill_null(0.0),
        priority=pl.lit(None, dtype=pl.Int64),
        policy=pl.lit("explore"),
        reason=pl.when(untreated).then(pl.lit(f"exploration: randomly left untreated (1 of "
                                              f"{arms} arms)"))
        .otherwise(pl.format("exploration: {} drawn at random (1 of {} arms)",
                             action_phrase(pl.col("action")), pl.lit(arms))),
        campaign_id=campaign_id_expr(),
        control=untreated, treated=~untreated,
        assignment=pl.lit("explore"), randomized=pl.lit(True),
    )


def _pick(book, prefix: str) -> pl.Expr:
    out = pl.lit(None, dtype=pl.Float64)
    for a in book:
        out = pl.when(pl.col("action") == a).then(pl.col(f"{prefix}{a}")).otherwise(out)
    return out


def crm_feed(decisions: pl.DataFrame) -> pl.DataFrame:
    """The rows the CRM receives (``FEED_SCHEMA``): one per selected customer, control rows
    included (flagged, cost 0.0) so outcomes can be measured for both arms."""
    missing = [c for c in ("customer_id", "snapshot_date", "campaign_id", "action", "cost",
                           "expected_value", "control", "reason") if c not in decisions.columns]
    if missing:
        raise ValueError(f"the CRM feed needs decided rows (policy, then assign_control); "
                         f"missing columns {missing}")
    return decisions.select(
        pl.col(c).cast(t) for c, t in FEED_SCHEMA.items()
    ).with_columns(
        cost=pl.when(pl.col("control")).then(0.0).otherwise(pl.col("cost")),
    ).sort(["snapshot_date", "campaign_id", "customer_id"])
