"""Did the actions work? Treated against control, per action, and what that says about save rates.

Outcomes (``OUTCOME_SCHEMA``, one row per customer and campaign day ``snapshot_date``):
``retained`` is True when the customer paid an order in the outcome window (``snapshot_date``,
``snapshot_date + window_days``], ``revenue`` is their net revenue in it. ``outcomes_from_activity``
builds them from gold's ``daily_activity``. ``measure`` joins them to the CRM feed
(``MEASURED_SCHEMA``; this is the ``decisions_outcomes`` table of ``sql.py``): a fed customer
without an outcome row counts as not retained with no revenue, so measure only once the window
has passed.

``uplift`` compares the arms per group (per action by default; per campaign with
``by=("campaign_id", "action")``):

- retention uplift = treated retention - control retention, with a normal-approximation CI for a
  difference of proportions, ``se = sqrt(p1(1-p1)/n1 + p0(1-p0)/n0)``;
- revenue uplift per customer = mean treated revenue - mean control revenue, with a Welch CI
  (unequal variances, Welch-Satterthwaite degrees of freedom);
- ``cost_per_saved_customer = treated_cost / (uplift x treated_n)``, null unless uplift > 0.

Statistics that need data an arm lacks (an empty arm, one customer for a variance) are null.

``save_rate_updates`` turns measured uplift into save rates for the budget policy. The policy's
``save_rate`` is the share of would-be churners an action keeps, so the retention uplift it
predicts among the treated is ``save_rate x (1 - control_retention)``; the measured save rate is
therefore ``uplift / (1 - control_retention)``, clipped to [0, 1]. Rule: a measured rate replaces
the configured one only when the uplift's CI excludes zero (a clear effect, or a clear harm, which
sets the rate to 0 so the policy stops buying that action) **or** both arms have at least
``min_n`` customers (then even a null result is precise enough to act on); otherwise the
configured rate stays. Retention in the outcome window is a proxy for the churn label's horizon:
keep windows comparable between campaigns you pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

import numpy as np
import polars as pl
from scipy import stats

from churn_assets.decisions.config import ActionCatalogue, ActionConfig, Actions, catalogue
from churn_assets.decisions.feed import FEED_SCHEMA

OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(), "snapshot_date": pl.Date(), "retained": pl.Boolean(),
    "revenue": pl.Float64(),
}
MEASURED_SCHEMA: dict[str, pl.DataType] = {
    **FEED_SCHEMA, "retained": pl.Boolean(), "revenue": pl.Float64(),
}
UPLIFT_COLUMNS = (
    "treated_n", "control_n", "treated_retention", "control_retention", "uplift", "uplift_low",
    "uplift_high", "treated_revenue_per_customer", "control_revenue_per_customer",
    "revenue_uplift", "revenue_uplift_low", "revenue_uplift_high", "treated_cost",
    "saved_customers", "cost_per_saved_customer",
)
UPDATE_SCHEMA: dict[str, pl.DataType] = {
    "action": pl.String(), "treated_n": pl.Int64(), "control_n": pl.Int64(),
    "uplift": pl.Float64(), "uplift_low": pl.Float64(), "uplift_high": pl.Float64(),
    "prior_save_rate": pl.Float64(), "measured_save_rate": pl.Float64(),
    "updated": pl.Boolean(), "save_rate": pl.Float64(), "rule": pl.String(),
}


def outcomes_from_activity(feed: pl.DataFrame, activity: pl.DataFrame | pl.LazyFrame,
                           window_days: int = 30) -> pl.DataFrame:
    """``OUTCOME_SCHEMA`` for every fed (customer_id, snapshot_date) from ``daily_activity``
    rows (customer_id, event_date, orders, revenue): orders and revenue in (D, D + window]."""
    if window_days < 1:
        raise ValueError(f"the outcome window must be at least one day; got {window_days}")
    keys = feed.select(pl.col("customer_id").cast(pl.String),
                       pl.col("snapshot_date").cast(pl.Date)).unique()
    if keys.height == 0:
        return pl.DataFrame(schema=OUTCOME_SCHEMA)
    first, last = keys["snapshot_date"].min(), keys["snapshot_date"].max()
    rows = activity.lazy().select(
        pl.col("customer_id").cast(pl.String), pl.col("event_date").cast(pl.Date),
        pl.col("orders").cast(pl.Int64), pl.col("revenue").cast(pl.Float64),
    ).filter(pl.col("event_date").is_between(first + timedelta(days=1),
                                             last + timedelta(days=window_days)))
    days = pl.col("event_date") - pl.col("snapshot_date")
    inside = keys.lazy().join(rows, on="customer_id", how="inner").filter(
        (days > pl.duration(days=0)) & (days <= pl.duration(days=window_days))
    ).group_by("customer_id", "snapshot_date").agg(
        retained=pl.col("orders").sum() > 0, revenue=pl.col("revenue").sum())
    return keys.lazy().join(inside, on=["customer_id", "snapshot_date"], how="left").with_columns(
        pl.col("retained").fill_null(False), pl.col("revenue").fill_null(0.0),
    ).select(pl.col(c).cast(t) for c, t in OUTCOME_SCHEMA.items()).collect().sort(
        "snapshot_date", "customer_id")


def measure(feed: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """The feed with each row's outcome (``MEASURED_SCHEMA``)."""
    outcome = outcomes.select(pl.col(c).cast(t) for c, t in OUTCOME_SCHEMA.items())
    if outcome.select(pl.struct("customer_id", "snapshot_date").is_duplicated().any()).item():
        raise ValueError("outcomes have several rows for one customer and campaign day; "
                         "expected one (customer_id, snapshot_date) row each")
    return feed.join(outcome, on=["customer_id", "snapshot_date"], how="left").with_columns(
        pl.col("retained").fill_null(False), pl.col("revenue").fill_null(0.0),
    ).select(pl.col(c).cast(t) for c, t in MEASURED_SCHEMA.items())


def uplift(measured: pl.DataFrame, by: Sequence[str] = ("action",),
           confidence: float = 0.95) -> pl.DataFrame:
    """Treated against control per group: ``by`` columns, then ``UPLIFT_COLUMNS``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    by = list(by)
    missing = [c for c in (*by, "control", "retained", "revenue", "cost")
               if c not in measured.columns]
    if missing:
        raise ValueError(f"uplift needs measured rows (see measure); missing columns {missing}")
    treated, control = pl.col("control").not_(), pl.col("control")
    retained = pl.col("retained").cast(pl.Float64)

    def arm(condition: pl.Expr, name: str) -> list[pl.Expr]:
        return [
            condition.sum().cast(pl.Int64).alias(f"{name}_n"),
            retained.filter(condition).mean().alias(f"{name}_retention"),
            pl.col("revenue").filter(condition).mean().alias(f"{name}_revenue_per_customer"),
            pl.col("revenue").filter(condition).var(ddof=1).alias(f"_{name}_revenue_var"),
        ]

    table = measured.group_by(by).agg(
        *arm(treated, "treated"), *arm(control, "control"),
        treated_cost=pl.col("cost").filter(treated).sum(),
    ).sort(by)
    z = stats.norm.ppf(0.5 + confidence / 2)

    def col(name: str) -> np.ndarray:
        return table[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    n1, n0 = col("treated_n"), col("control_n")
    p1, p0 = col("treated_retention"), col("control_retention")
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = p1 - p0
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        m1, m0 = col("treated_revenue_per_customer"), col("control_revenue_per_customer")
        v1, v0 = col("_treated_revenue_var") / n1, col("_control_revenue_var") / n0
        revenue_diff = m1 - m0
        revenue_se = np.sqrt(v1 + v0)
        dof = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
        t = np.where(revenue_se > 0, stats.t.ppf(0.5 + confidence / 2, dof), 0.0)
        saved = diff * n1
        cost = col("treated_cost")
        per_saved = np.where(diff > 0, cost / saved, np.nan)
    out = table.drop("_treated_revenue_var", "_control_revenue_var").with_columns(
        _series("uplift", diff), _series("uplift_low", diff - z * se),
        _series("uplift_high", diff + z * se), _series("revenue_uplift", revenue_diff),
        _series("revenue_uplift_low", revenue_diff - t * revenue_se),
        _series("revenue_uplift_high", revenue_diff + t * revenue_se),
        _series("saved_customers", saved), _series("cost_per_saved_customer", per_saved),
    )
    return out.select(*by, *UPLIFT_COLUMNS)


class SaveRateUpdate(NamedTuple):
    actions: Actions | dict[str, ActionConfig]  # the same kind as the catalogue passed in
    table: pl.DataFrame  # UPDATE_SCHEMA, one row per measured action


# A normal interval collapses to zero width when an arm's retention is 0 or 1 (3 of 3 treated
# retained, 0 of 1 control): a "significant" result from a handful of customers. Below this
# arm size a CI never counts as excluding zero.
MIN_ARM_FOR_CI = 30


def save_rate_updates(measured_uplift: pl.DataFrame, actions: ActionCatalogue | None = None,
                      min_n: int = 1000) -> SaveRateUpdate:
    """New save rates from ``uplift(..., by=("action",))`` (see the module's rule)."""
    actions = Actions() if actions is None else actions
    book = catalogue(actions)
    if "action" not in measured_uplift.columns or measured_uplift["action"].is_duplicated().any():
        raise ValueError("save_rate_updates needs one uplift row per action: "
                         "uplift(measured, by=('action',))")
    if unknown := sorted(set(measured_uplift["action"].to_list()) - set(book)):
        raise ValueError(f"uplift measured for actions {unknown} that the catalogue lacks")
    significant = ((pl.col("uplift_low") > 0) | (pl.col("uplift_high") < 0)) & (
        pl.min_horizontal("treated_n", "control_n") >= MIN_ARM_FOR_CI)
    large = pl.min_horizontal("treated_n", "control_n") >= min_n
    measured_rate = (
        pl.when(pl.col("control_retention") < 1)
        .then(pl.col("uplift") / (1 - pl.col("control_retention")))
        .clip(0.0, 1.0)
    )
    prior = pl.col("action").replace_strict(list(book), [c.save_rate for c in book.values()],
                                            return_dtype=pl.Float64)
    eligible = (significant.fill_null(False) | large) & measured_rate.is_not_null()
    table = measured_uplift.with_columns(
        prior_save_rate=prior, measured_save_rate=measured_rate, updated=eligible,
        rule=pl.when(significant.fill_null(False)).then(pl.lit("CI excludes zero"))
        .when(large).then(pl.lit(f"both arms >= {min_n}"))
        .otherwise(pl.lit(f"kept: CI includes zero and an arm < {min_n}")),
    ).with_columns(
        save_rate=pl.when(pl.col("updated")).then(pl.col("measured_save_rate"))
        .otherwise(pl.col("prior_save_rate")),
    ).select(pl.col(c).cast(t) for c, t in UPDATE_SCHEMA.items())
    new_rates = dict(zip(table["action"].to_list(), table["save_rate"].to_list(), strict=True))
    updated = {name: ActionConfig(cost=config.cost,
                                  save_rate=new_rates.get(name, config.save_rate))
               for name, config in book.items()}
    result: Actions | dict[str, ActionConfig] = (
        Actions(**updated) if isinstance(actions, Actions) else updated)
    return SaveRateUpdate(result, table)


def policy_arm(measured: pl.DataFrame) -> pl.DataFrame:
    """The rows of the policy's own treated-vs-control comparison: exploration rows (a random
    arm over all eligible customers, another population) left out. Rows written before the
    experiment columns existed are the policy's."""
    if "assignment" not in measured.columns:
        return measured
    return measured.filter(pl.col("assignment").fill_null("policy") == "policy")


def explore_arm_uplift(measured: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """``uplift`` per action from the exploration rows alone: each action's random arm against
    the random no-action arm, over all eligible customers (empty without exploration rows)."""
    from churn_assets.decisions.experiment import NO_ACTION

    if "assignment" not in measured.columns:
        return pl.DataFrame()
    explored = measured.filter(pl.col("assignment") == "explore")
    untreated = explored.filter(pl.col("action") == NO_ACTION)
    actions = sorted(set(explored["action"].to_list()) - {NO_ACTION})
    if not actions or untreated.is_empty():
        return pl.DataFrame()
    arms = pl.concat([
        pl.concat([explored.filter(pl.col("action") == a),
                   untreated.with_columns(action=pl.lit(a))]) for a in actions])
    return uplift(arms, by=("action",), confidence=confidence)


def control_retention(measured: pl.DataFrame) -> float | None:
    """Share of the untreated rows (control and explored without action) that were retained."""
    if measured.is_empty():
        return None
    value = measured.filter(pl.col("control"))["retained"].cast(pl.Float64).mean()
    return None if value is None else float(value)


def _series(name: str, values: np.ndarray) -> pl.Series:
    return pl.Series(name, values, dtype=pl.Float64).fill_nan(None)

