"""A day's decisions end to end (policy, then control group) and the feed the CRM receives.

Budget and control group: the policy selects under the daily budget among *all* customers
first, then the control group is drawn among the selected (``control.py``). Control customers
are therefore exactly comparable to the treated ones (same selection), and they cost nothing:
the committed cost (treated and control) is <= the budget, and the spend actually incurred,
``treated_cost``, is about ``(1 - control_share)`` of it. In the feed, ``cost`` is what a row
spends (0.0 for control rows); ``expected_value`` stays the policy's estimate had the customer
been treated, so both arms can be compared to it.
"""

from __future__ import annotations

import polars as pl

from churn_assets.decisions.config import DecisionSettings
from churn_assets.decisions.control import assign_control
from churn_assets.decisions.policy import DAY_SCHEMA, DECISION_SCHEMA, PolicyResult, choose_actions

DECIDED_SCHEMA: dict[str, pl.DataType] = {
    **DECISION_SCHEMA, "campaign_id": pl.String(), "control": pl.Boolean(), "treated": pl.Boolean(),
}
DECIDED_DAY_SCHEMA: dict[str, pl.DataType] = {
    **DAY_SCHEMA, "customers_treated": pl.Int64(), "customers_control": pl.Int64(),
    "treated_cost": pl.Float64(),
}
FEED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(), "snapshot_date": pl.Date(), "campaign_id": pl.String(),
    "action": pl.String(), "cost": pl.Float64(), "expected_value": pl.Float64(),
    "control": pl.Boolean(), "reason": pl.String(),
}


def decide(scores: pl.DataFrame | pl.LazyFrame,
           settings: DecisionSettings | None = None) -> PolicyResult:
    """The configured policy, then the control group: ``decisions`` in ``DECIDED_SCHEMA``,
    ``days`` in ``DECIDED_DAY_SCHEMA``."""
    settings = DecisionSettings() if settings is None else settings
    chosen = choose_actions(scores, settings)
    decisions = assign_control(chosen.decisions, settings.policy.control_share)
    arms = decisions.group_by("snapshot_date").agg(
        customers_treated=pl.col("treated").sum().cast(pl.Int64),
        customers_control=pl.col("control").sum().cast(pl.Int64),
        treated_cost=pl.col("cost").filter(pl.col("treated")).sum(),
    )
    days = chosen.days.join(arms, on="snapshot_date", how="left").with_columns(
        pl.col("customers_treated", "customers_control").fill_null(0),
        pl.col("treated_cost").fill_null(0.0))
    return PolicyResult(
        decisions.select(pl.col(c).cast(t) for c, t in DECIDED_SCHEMA.items()),
        days.select(pl.col(c).cast(t) for c, t in DECIDED_DAY_SCHEMA.items()),
    )


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
