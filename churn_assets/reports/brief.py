"""The brief's figures for one scored day, from frames already read (pure Polars, no I/O).

Every number on the page comes from one of these functions, and each is the answer to a
question ``churn-assets sql`` can ask of the same tables (the tests hold them equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from churn_assets.decisions.uplift import policy_arm, uplift

BANDS = ("low", "medium", "high")
SNAPSHOT = "snapshot_date"


@dataclass(frozen=True)
class BriefInputs:
    """What one page is drawn from. Frames may be empty: their sections then say so."""

    day: date
    scores: pl.DataFrame  # scores/daily over the trend window, through ``day``
    customers: pl.DataFrame  # snapshot_date, customers: gold feature rows per day
    labels: pl.DataFrame  # snapshot_date, customer_id, churned (labelled days of the window)
    actions: pl.DataFrame  # decisions/actions over the trend window
    whales: pl.DataFrame  # decisions/whales of ``day``
    outcomes: pl.DataFrame  # decisions/outcomes of every campaign day through ``day``
    models: pl.DataFrame  # version, roc_auc, champion, run_id, created
    importance: pl.DataFrame  # feature, mean_abs_shap of the champion
    calibration: pl.DataFrame  # mean_predicted, observed_rate of the champion (validation)
    drift: pl.DataFrame  # feature, psi, status of ``day`` against the training reference
    daily_budget: float
    drift_warn: float = 0.1
    drift_error: float = 0.25
    auc_floor: float = 0.8
    currency: str = "€"
    links: dict[str, str] = field(default_factory=dict)  # e.g. the MLflow UI of the champion
    # ml/revenue_forecast, overall (segment 'all'): weeks observed and forecast; may be empty
    forecast: pl.DataFrame = field(default_factory=pl.DataFrame)

    def today(self, frame: pl.DataFrame) -> pl.DataFrame:
        if frame.is_empty() or SNAPSHOT not in frame.columns:
            return frame
        return frame.filter(pl.col(SNAPSHOT) == self.day)


def trend(inputs: BriefInputs) -> pl.DataFrame:
    """Per day: customers known, customers scored (the at-risk population), high-risk
    customers, the predicted churn rate (mean calibrated probability of those scored) and,
    where the label window has closed, the observed churn rate of the same customers."""
    scores = inputs.scores
    per_day = scores.group_by(SNAPSHOT).agg(
        customers_scored=pl.len(),
        high_risk_customers=(pl.col("risk_band") == "high").sum().cast(pl.Int64),
        predicted_churn_rate=pl.col("churn_probability").mean(),
    )
    if not inputs.labels.is_empty():
        observed = (scores.select(SNAPSHOT, "customer_id")
                    .join(inputs.labels, on=[SNAPSHOT, "customer_id"])
                    .group_by(SNAPSHOT).agg(observed_churn_rate=pl.col("churned").cast(
                        pl.Float64).mean()))
        per_day = per_day.join(observed, on=SNAPSHOT, how="left")
    else:
        per_day = per_day.with_columns(observed_churn_rate=pl.lit(None, dtype=pl.Float64))
    customers = inputs.customers.select(SNAPSHOT, pl.col("customers").cast(pl.Int64))
    return (customers.join(per_day, on=SNAPSHOT, how="full", coalesce=True)
            .filter(pl.col(SNAPSHOT) <= inputs.day).sort(SNAPSHOT))


def band_mix(scores: pl.DataFrame) -> pl.DataFrame:
    """Customers per day and risk band (one column per band, zeros where none)."""
    counts = scores.group_by(SNAPSHOT, "risk_band").len()
    wide = counts.pivot(on="risk_band", index=SNAPSHOT, values="len").sort(SNAPSHOT)
    return wide.with_columns(pl.col(b).fill_null(0) if b in wide.columns
                             else pl.lit(0, dtype=pl.UInt32).alias(b) for b in BANDS)


def revenue_at_risk_by_segment(scores: pl.DataFrame) -> pl.DataFrame:
    """Revenue at risk per day and segment (null segment: ``unknown``), long format."""
    return (scores.with_columns(pl.col("segment").fill_null("unknown"))
            .group_by(SNAPSHOT, "segment").agg(revenue_at_risk=pl.col("revenue_at_risk").sum())
            .sort(SNAPSHOT, "segment"))


def segments_today(inputs: BriefInputs) -> pl.DataFrame:
    """Today's scored customers per segment: the ``revenue_at_risk_by_segment`` question."""
    return (inputs.today(inputs.scores).group_by("segment").agg(
        customers=pl.len(),
        high_risk_customers=(pl.col("risk_band") == "high").sum().cast(pl.Int64),
        revenue_at_risk=pl.col("revenue_at_risk").sum(), cltv=pl.col("cltv").sum())
        .sort(["revenue_at_risk", "segment"], descending=[True, False]))


def driver_movement(inputs: BriefInputs, days_back: int = 7) -> pl.DataFrame:
    """Share of scored customers whose top driver is each feature, today and ``days_back``
    days earlier (the earliest scored day in the window when that day was not scored)."""
    scores = inputs.scores
    if scores.is_empty():
        return pl.DataFrame(schema={"driver": pl.String, "share_today": pl.Float64,
                                    "share_before": pl.Float64, "change": pl.Float64})
    wanted = inputs.day - timedelta(days=days_back)
    earlier = scores.filter(pl.col(SNAPSHOT) <= wanted)[SNAPSHOT].max()
    if earlier is None:
        earlier = scores[SNAPSHOT].min()

    def shares(day: date, name: str) -> pl.DataFrame:
        frame = scores.filter(pl.col(SNAPSHOT) == day)
        return frame.group_by(pl.col("driver_1").fill_null("none").alias("driver")).agg(
            (pl.len() / max(frame.height, 1)).alias(name))

    today = shares(inputs.day, "share_today")
    before = shares(earlier, "share_before")
    return (today.join(before, on="driver", how="full", coalesce=True)
            .with_columns(pl.col("share_today", "share_before").fill_null(0.0))
            .with_columns(change=pl.col("share_today") - pl.col("share_before"))
            .sort(["share_today", "driver"], descending=[True, False])
            .with_columns(compared_with=pl.lit(earlier)))


def actions_today(inputs: BriefInputs) -> pl.DataFrame:
    """Today's feed per action: customers treated and held out as control, spend (control
    rows cost nothing) and expected value of the treated."""
    feed = inputs.today(inputs.actions)
    if feed.is_empty():
        return pl.DataFrame(schema={"action": pl.String, "treated": pl.Int64,
                                    "control": pl.Int64, "cost": pl.Float64,
                                    "expected_value": pl.Float64})
    return feed.group_by("action").agg(
        treated=(~pl.col("control")).sum().cast(pl.Int64),
        control=pl.col("control").sum().cast(pl.Int64),
        cost=pl.col("cost").sum(),
        expected_value=pl.when(~pl.col("control")).then(pl.col("expected_value")).sum(),
    ).sort(["cost", "action"], descending=[True, False])


def campaign_results(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Per campaign day and action: retention uplift (treated - control) with its 95%
    interval, spend, and saved revenue = revenue uplift per customer x treated customers; the
    policy's own arms, as ``decisions/outcomes`` measures them (exploration rows are another
    population)."""
    outcomes = policy_arm(outcomes) if not outcomes.is_empty() else outcomes
    if outcomes.is_empty():
        return pl.DataFrame()
    per_day = uplift(outcomes, by=(SNAPSHOT, "action"))
    return per_day.with_columns(
        saved_revenue=(pl.col("revenue_uplift") * pl.col("treated_n")).fill_null(0.0),
        spend=pl.col("treated_cost"),
    ).sort(SNAPSHOT, "action")


def cumulative_value(results: pl.DataFrame) -> pl.DataFrame:
    """Running totals of spend and saved revenue over campaign days."""
    if results.is_empty():
        return pl.DataFrame()
    return (results.group_by(SNAPSHOT).agg(pl.col("spend").sum(), pl.col("saved_revenue").sum())
            .sort(SNAPSHOT)
            .with_columns(cumulative_spend=pl.col("spend").cum_sum(),
                          cumulative_saved_revenue=pl.col("saved_revenue").cum_sum()))


def cltv_histogram(inputs: BriefInputs, bins: int = 20) -> pl.DataFrame:
    """Today's CLTV of scored customers in equal-width bins up to the 99th percentile (the
    rest in the last bin, so one whale does not flatten the picture)."""
    values = inputs.today(inputs.scores)["cltv"].drop_nulls() if not inputs.scores.is_empty() \
        else pl.Series("cltv", [], dtype=pl.Float64)
    if values.is_empty():
        return pl.DataFrame(schema={"low": pl.Float64, "high": pl.Float64, "customers": pl.Int64})
    top = float(values.quantile(0.99)) or float(values.max()) or 1.0
    width = top / bins
    index = (values / width).floor().clip(0, bins - 1).cast(pl.Int64)
    counts = index.value_counts().rename({index.name: "bin", "count": "customers"})
    full = pl.DataFrame({"bin": range(bins)}, schema={"bin": pl.Int64}).join(
        counts, on="bin", how="left").with_columns(pl.col("customers").fill_null(0))
    return full.select(low=pl.col("bin") * width, high=(pl.col("bin") + 1) * width,
                       customers=pl.col("customers").cast(pl.Int64))


def revenue_weeks(inputs: BriefInputs, weeks_back: int = 26) -> pl.DataFrame:
    """The overall weekly revenue to plot: the last ``weeks_back`` whole weeks observed and every
    week forecast (``week_start``, ``kind``, ``revenue``, ``forecast``, ``lower``, ``upper``,
    ``model``); empty when the forecast has not run."""
    frame = inputs.forecast
    if frame.is_empty():
        return frame
    overall = frame.filter(pl.col("segment") == "all").sort("week_start")
    actual = overall.filter(pl.col("kind") == "actual").tail(weeks_back)
    return pl.concat([actual, overall.filter(pl.col("kind") == "forecast")])
