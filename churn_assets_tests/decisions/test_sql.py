"""Every SQL question, run by polars.SQLContext on small tables, against a direct Polars answer."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.decisions import (
    DecisionSettings,
    PolicyConfig,
    RiskBands,
    crm_feed,
    decide,
    measure,
)
from churn_assets.decisions.config import ExperimentConfig
from churn_assets.decisions.sql import QUESTIONS, TABLES, ask, register_tables
from churn_assets.ml.forecast import FORECAST_SCHEMA

LATEST = date(2026, 3, 3)
SEGMENTS = ["consumer", "small_business", "enterprise"]


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(5)
    days = [LATEST - timedelta(days=1), LATEST]
    n = 40
    scores = pl.concat([
        pl.DataFrame({
            "snapshot_date": [day] * n, "customer_id": [f"C{i:03d}" for i in range(n)],
            "churn_probability": rng.uniform(0, 1, n), "cltv": rng.gamma(1.5, 200, n),
            "segment": rng.choice(SEGMENTS, n).tolist(),
            "driver_1": rng.choice(["days_since_last_order", "sessions_30d"], n).tolist(),
            "model_version": ["7"] * n,
        }) for day in days
    ]).with_columns(revenue_at_risk=pl.col("churn_probability") * pl.col("cltv"),
                    risk_band=RiskBands().band())
    settings = DecisionSettings(policy=PolicyConfig(daily_budget=25.0, control_share=0.3))
    decided = decide(scores, settings).decisions
    feed = crm_feed(decided)
    outcomes = feed.select("customer_id", "snapshot_date").with_columns(
        retained=pl.Series(rng.uniform(0, 1, feed.height) < 0.5),
        revenue=pl.Series(rng.gamma(1.0, 40, feed.height)),
    )
    features = scores.select(
        "snapshot_date", "customer_id",
        days_since_last_order=pl.Series(rng.integers(0, 200, scores.height)),
        sessions_30d=pl.Series(rng.integers(0, 30, scores.height)),
        tickets_30d=pl.Series(rng.integers(0, 4, scores.height)),
        failed_payments_90d=pl.Series(rng.integers(0, 3, scores.height)),
    )
    return {"gold_customer_features": features, "scores_daily": scores,
            "decisions_actions": feed, "decisions_outcomes": measure(feed, outcomes),
            "ml_revenue_forecast": revenue_forecast(rng)}


def revenue_forecast(rng: np.random.Generator) -> pl.DataFrame:
    """Three whole weeks observed and two forecast, per segment and overall ('all')."""
    monday = date(2026, 2, 2)
    rows = []
    for segment in [*SEGMENTS, "all"]:
        for week in range(5):
            ahead = week >= 3
            value = float(rng.gamma(2.0, 500))
            rows.append({
                "week_start": monday + timedelta(weeks=week), "segment": segment,
                "kind": "forecast" if ahead else "actual", "revenue": None if ahead else value,
                "forecast": value if ahead else None, "lower": value * 0.8 if ahead else None,
                "upper": value * 1.2 if ahead else None, "model": "lightgbm" if ahead else None,
                "origin": date(2026, 2, 22) if ahead else None})
    return pl.DataFrame(rows, schema=FORECAST_SCHEMA)


@pytest.fixture
def ctx(tables) -> pl.SQLContext:
    return register_tables(pl.SQLContext(), {k: v.lazy() for k, v in tables.items()})


def same(answer: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert_frame_equal(answer, expected, check_dtypes=False, abs_tol=1e-9)
    assert all(dtype != pl.Int32 for dtype in answer.dtypes)  # counts are BIGINT


def test_every_question_is_tested_and_every_table_is_registered(ctx):
    assert set(ctx.tables()) == set(TABLES)
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(QUESTIONS) <= tested


def test_high_risk_customers(ctx, tables):
    today = tables["scores_daily"].filter(pl.col("snapshot_date") == LATEST)
    expected = pl.DataFrame({
        "snapshot_date": [LATEST],
        "high_risk_customers": [today.filter(pl.col("risk_band") == "high").height],
        "customers_scored": [today.height],
    })
    same(ask(ctx, "high_risk_customers"), expected)


def test_revenue_at_risk_by_segment(ctx, tables):
    today = tables["scores_daily"].filter(pl.col("snapshot_date") == LATEST)
    expected = today.group_by("segment").agg(
        customers=pl.len(), high_risk_customers=(pl.col("risk_band") == "high").sum(),
        revenue_at_risk=pl.col("revenue_at_risk").sum(), cltv=pl.col("cltv").sum(),
    ).sort(["revenue_at_risk", "segment"], descending=[True, False])
    answer = ask(ctx, "revenue_at_risk_by_segment")
    same(answer, expected)
    assert answer["revenue_at_risk"].sum() == pytest.approx(today["revenue_at_risk"].sum())


def test_prioritize_today(ctx, tables):
    today = tables["scores_daily"].filter(pl.col("snapshot_date") == LATEST)
    feed = tables["decisions_actions"]
    expected = today.join(feed, on=["customer_id", "snapshot_date"], how="left").sort(
        ["revenue_at_risk", "customer_id"], descending=[True, False]).head(20).select(
        "customer_id", "segment", "risk_band", "churn_probability", "cltv", "revenue_at_risk",
        "driver_1", "action", "control", "reason")
    answer = ask(ctx, "prioritize_today")
    same(answer, expected)
    assert answer.height == 20 and answer["action"].null_count() < 20


def test_campaign_performance(ctx, tables):
    rows = tables["decisions_outcomes"]
    treated, control = ~pl.col("control"), pl.col("control")
    expected = rows.group_by("campaign_id", "action", "snapshot_date").agg(
        treated_n=treated.sum(), control_n=control.sum(),
        treated_retention=pl.col("retained").filter(treated).mean(),
        control_retention=pl.col("retained").filter(control).mean(),
        treated_revenue_per_customer=pl.col("revenue").filter(treated).mean(),
        control_revenue_per_customer=pl.col("revenue").filter(control).mean(),
        spend=pl.col("cost").filter(treated).sum(),
    ).with_columns(
        uplift=pl.col("treated_retention") - pl.col("control_retention"),
    ).with_columns(
        cost_per_saved_customer=pl.when(pl.col("uplift") > 0)
        .then(pl.col("spend") / (pl.col("uplift") * pl.col("treated_n"))),
    ).sort("snapshot_date", "campaign_id").select(
        "campaign_id", "action", "snapshot_date", "treated_n", "control_n", "treated_retention",
        "control_retention", "uplift", "treated_revenue_per_customer",
        "control_revenue_per_customer", "spend", "cost_per_saved_customer")
    answer = ask(ctx, "campaign_performance")
    same(answer, expected)
    assert answer.height >= 2  # two days of campaigns


def test_risk_band_profile(ctx, tables):
    today = tables["scores_daily"].filter(pl.col("snapshot_date") == LATEST)
    expected = today.join(tables["gold_customer_features"],
                          on=["customer_id", "snapshot_date"]).group_by("risk_band").agg(
        customers=pl.len(),
        avg_days_since_last_order=pl.col("days_since_last_order").mean(),
        avg_sessions_30d=pl.col("sessions_30d").mean(),
        avg_tickets_30d=pl.col("tickets_30d").mean(),
        avg_failed_payments_90d=pl.col("failed_payments_90d").mean(),
    ).sort("risk_band")
    same(ask(ctx, "risk_band_profile"), expected)


def test_revenue_forecast(ctx, tables):
    weeks = tables["ml_revenue_forecast"]
    ahead = weeks.filter(pl.col("kind") == "forecast")
    last = weeks.filter(pl.col("kind") == "actual").sort("week_start").group_by("segment").last()
    today = tables["scores_daily"].filter(pl.col("snapshot_date") == LATEST)
    risk = pl.concat([
        today.group_by("segment").agg(pl.col("revenue_at_risk").sum()),
        pl.DataFrame({"segment": ["all"], "revenue_at_risk": [today["revenue_at_risk"].sum()]}),
    ])
    expected = (
        ahead.group_by("segment").agg(
            model=pl.col("model").max(), weeks_ahead=pl.len().cast(pl.Int64),
            forecast_revenue=pl.col("forecast").sum(),
            sum_of_weekly_lower=pl.col("lower").sum(), sum_of_weekly_upper=pl.col("upper").sum())
        .join(last.select("segment", last_actual_week="week_start",
                          last_week_revenue="revenue"), on="segment")
        .join(risk, on="segment", how="left")
        .select("segment", "model", "last_actual_week", "last_week_revenue", "weeks_ahead",
                "forecast_revenue", "sum_of_weekly_lower", "sum_of_weekly_upper",
                "revenue_at_risk")
        .sort("segment"))
    answer = ask(ctx, "revenue_forecast")
    same(answer, expected)
    assert answer.filter(pl.col("segment") == "all")["revenue_at_risk"].item() == pytest.approx(
        today["revenue_at_risk"].sum())


def test_register_tables_refuses_names_sql_cannot_use():
    with pytest.raises(ValueError, match="not SQL identifiers"):
        register_tables(pl.SQLContext(), {"scores-daily": pl.LazyFrame()})


def test_campaign_performance_compares_the_policys_arms_only(tables):
    scores = tables["scores_daily"]
    settings = DecisionSettings(policy=PolicyConfig(daily_budget=50.0, control_share=0.3),
                                experiment=ExperimentConfig(explore_share=0.5,
                                                            explore_budget_share=0.5))
    decided = decide(scores, settings).decisions
    assert (decided["assignment"] == "explore").any()
    outcomes = crm_feed(decided).join(
        decided.select("customer_id", "snapshot_date", "assignment"),
        on=["customer_id", "snapshot_date"]).with_columns(retained=True, revenue=1.0)
    ctx = register_tables(pl.SQLContext(), {**tables, "decisions_outcomes": outcomes})
    answer = ask(ctx, "campaign_performance")
    policy = decided.filter(pl.col("assignment") == "policy")
    assert answer["treated_n"].sum() == policy["treated"].sum()
    assert answer["control_n"].sum() == policy["control"].sum()
    assert not answer["campaign_id"].str.contains("no_action").any()
