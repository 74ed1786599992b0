"""The weekly revenue forecast's arithmetic: whole weeks, the rolling-origin backtest, the choice
between seasonal naive and LightGBM, and too little history."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from churn_assets.ml.forecast import (
    ALL,
    LIGHTGBM,
    NOT_ENOUGH_HISTORY,
    SEASONAL_NAIVE,
    ForecastConfig,
    backtest,
    daily_revenue_by_segment,
    forecast_revenue,
    weekly_revenue,
)

MONDAY = date(2026, 1, 5)
SMALL = ForecastConfig(horizon_weeks=4, season_weeks=4, backtest_origins=3,
                       origin_step_weeks=2, min_train_weeks=6)


def weekly(values: dict[str, list[float]]) -> pl.DataFrame:
    """A ``weekly_revenue``-shaped frame, 'all' being the sum of the segments."""
    weeks = len(next(iter(values.values())))
    values = {**values, ALL: list(np.sum(list(values.values()), axis=0))}
    return pl.DataFrame([
        {"segment": name, "week_start": MONDAY + timedelta(weeks=i), "revenue": float(v[i])}
        for name, v in values.items() for i in range(weeks)])


def test_only_whole_weeks_count_and_all_is_the_sum_of_segments():
    activity = pl.DataFrame({
        "customer_id": ["a", "b", "a", "c", "b"],
        # Thursday (a half week), Monday, Sunday, a Monday two weeks on, the last Saturday.
        "event_date": [date(2026, 1, 1), MONDAY, date(2026, 1, 11), date(2026, 1, 19),
                       date(2026, 1, 24)],
        "revenue": [100.0, 10.0, 5.0, 7.0, 50.0],
    })
    segments = pl.DataFrame({"customer_id": ["a", "b"], "segment": ["vip", "casual"]})
    daily = daily_revenue_by_segment(activity.lazy(), segments.lazy()).collect()
    out = weekly_revenue(daily, date(2026, 1, 1), date(2026, 1, 24))
    # History from Thursday 1 Jan to Saturday 24 Jan: whole weeks are 5 and 12 Jan only.
    assert out["week_start"].unique().sort().to_list() == [MONDAY, date(2026, 1, 12)]
    by = {(s, w): r for s, w, r in out.iter_rows()}
    assert by[("vip", MONDAY)] == 5.0 and by[("casual", MONDAY)] == 10.0
    assert by[(ALL, MONDAY)] == 15.0
    # A week without revenue is there, as 0; c has no segment and counts as unknown.
    assert by[(ALL, date(2026, 1, 12))] == 0.0
    assert set(out["segment"]) == {"vip", "casual", ALL}


def test_the_backtest_scores_both_models_on_held_out_weeks_only():
    rng = np.random.default_rng(1)
    y = 100 + np.arange(20) * 3 + rng.normal(0, 5, 20)
    series = {ALL: y, "vip": y / 2}
    summary, held_out = backtest(series, SMALL, season=1)
    # Origins at weeks 14, 16, 18 of 20: 4 + 4 + 2 held-out weeks, per series and model.
    assert sorted(held_out["origin"].unique()) == [14, 16, 18]
    assert (held_out["origin"] + held_out["step"] <= 20).all()
    for model in (SEASONAL_NAIVE, LIGHTGBM):
        assert summary[model]["held_out_weeks"] == 2 * (4 + 4 + 2)
        assert math.isfinite(summary[model]["mase"]) and summary[model]["mase"] >= 0
        assert 0 <= summary[model]["coverage"] <= 1
    # Coverage is the share of held-out actuals inside the interval, recomputed here.
    naive = held_out.filter(pl.col("model") == SEASONAL_NAIVE)
    inside = ((naive["actual"] >= naive["lower"]) & (naive["actual"] <= naive["upper"])).mean()
    assert summary[SEASONAL_NAIVE]["coverage"] == pytest.approx(inside)


def test_seasonal_naive_is_kept_when_it_wins():
    # A strong 4-week cycle with a little noise: one season back is hard to beat.
    rng = np.random.default_rng(2)
    cycle = list(np.tile([100.0, 300.0, 50.0, 200.0], 6) + rng.normal(0, 3, 24))
    result = forecast_revenue(weekly({"vip": cycle, "casual": [c / 4 for c in cycle]}), SMALL)
    assert result.status == "ok" and result.season_weeks == 4
    assert result.backtest[SEASONAL_NAIVE]["mase"] < result.backtest[LIGHTGBM]["mase"]
    assert result.chosen == SEASONAL_NAIVE
    forecast = result.table.filter(pl.col("kind") == "forecast")
    assert set(forecast["model"]) == {SEASONAL_NAIVE}
    assert forecast.filter(pl.col("segment") == "vip")["forecast"].to_list() == cycle[-4:]
    assert forecast["week_start"].min() == MONDAY + timedelta(weeks=24)
    assert forecast.height == 3 * SMALL.horizon_weeks
    assert (forecast["lower"] <= forecast["forecast"]).all()
    assert (forecast["forecast"] <= forecast["upper"]).all()


def test_lightgbm_is_kept_when_it_beats_the_baseline():
    # A steady trend: last week's value (season 1) lags further behind every week ahead.
    trend = list(100.0 + 20.0 * np.arange(30))
    config = ForecastConfig(horizon_weeks=6, season_weeks=52, backtest_origins=3,
                            origin_step_weeks=3, min_train_weeks=8)
    result = forecast_revenue(weekly({"vip": trend}), config)
    assert result.season_weeks == 1
    assert result.backtest[LIGHTGBM]["mase"] < result.backtest[SEASONAL_NAIVE]["mase"]
    assert result.chosen == LIGHTGBM
    assert set(result.table.filter(pl.col("kind") == "forecast")["model"]) == {LIGHTGBM}


def test_too_few_weeks_say_not_enough_history_and_forecast_nothing():
    result = forecast_revenue(weekly({"vip": [10.0] * 9}), SMALL)
    assert result.status == NOT_ENOUGH_HISTORY
    assert "9 whole weeks" in result.reason and "needs 12" in result.reason
    assert result.table.filter(pl.col("kind") == "forecast").is_empty()
    assert result.table.height == 2 * 9  # the history is still there, to plot


def test_an_empty_history_is_not_enough_history_too():
    empty = weekly_revenue(pl.DataFrame(schema={"segment": pl.String, "event_date": pl.Date,
                                                "revenue": pl.Float64}),
                           date(2026, 1, 1), date(2026, 1, 3))
    result = forecast_revenue(empty, SMALL)
    assert result.status == NOT_ENOUGH_HISTORY and result.weeks_of_history == 0


def test_lightgbm_intervals_are_widened_to_cover_recent_weeks():
    # Quantile models judged on their own training rows cover about half of the held-out weeks
    # on these noisy trends; widened on recent held-out weeks (conformalized), near 80 %.
    config = ForecastConfig(horizon_weeks=6, season_weeks=52, backtest_origins=4,
                            origin_step_weeks=3, min_train_weeks=12)
    coverage = []
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        y = 100 + np.arange(40) * 3 + rng.normal(0, 15, 40)
        summary, _ = backtest({ALL: y, "vip": y / 2 + rng.normal(0, 5, 40)}, config, season=1)
        coverage.append(summary[LIGHTGBM]["coverage"])
    assert np.mean(coverage) >= 0.75
