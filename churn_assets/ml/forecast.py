"""Weekly revenue forecast: revenue per week for the next weeks, overall and per segment, with
prediction intervals, by the better of a seasonal-naive baseline and LightGBM on lags.

Everything here is one-node numpy/Polars/LightGBM: frames in, frames out, no store, no Dagster.

- ``weekly_revenue`` sums gold ``daily_activity`` revenue (paid charges + refunds) by the week
  (Monday start) of the *event* day, per segment and overall (``'all'``), keeping only whole
  weeks inside the history (a half-observed week would look like a slump) and filling weeks
  without revenue with 0.
- ``seasonal_naive``: week ``T + i`` is the week one season earlier; its interval is the
  empirical quantiles of the training's one-season differences, widened by ``sqrt(k)`` for the
  ``k``-th season ahead. The season is ``season_weeks`` (52) when every backtest origin has
  more than a season of history, otherwise 1 (the last week), and the metadata says which.
- ``lightgbm``: one direct model over every series and horizon (``h`` is a feature), on
  revenue scaled by the series' recent level (lags 1-4, the 4-week mean and trend, the lag one
  season before the target week when it exists); the interval from two quantile models, widened
  by the margin that makes them cover the nominal share of the two latest held-out windows
  (conformalized quantile regression: judged on their training rows they are too narrow).
- ``backtest``: a rolling origin. At each of ``backtest_origins`` origins (``origin_step_weeks``
  apart, the last one ``origin_step_weeks`` before the end) both models train on the weeks
  before it and forecast up to ``horizon_weeks`` held-out weeks. MASE divides the mean absolute
  error by the mean absolute seasonal difference of the training weeks (so < 1 beats the
  in-sample seasonal naive); coverage is the share of held-out weeks inside the interval.
  The model with the lower mean MASE over all series and origins makes the forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import narwhals as nw
import numpy as np
import polars as pl

from churn_assets.transforms.frames import MONEY_DECIMALS, money_sum

ALL, UNKNOWN = "all", "unknown"
SEASONAL_NAIVE, LIGHTGBM = "seasonal_naive", "lightgbm"
NOT_ENOUGH_HISTORY = "not enough history"
OK = "ok"
# Scaling a series by its recent level: a floor so a segment with no recent revenue is not /0.
MIN_SCALE = 1.0
LAGS = 4

FORECAST_SCHEMA: dict[str, pl.DataType] = {
    "week_start": pl.Date, "segment": pl.String, "kind": pl.String, "revenue": pl.Float64,
    "forecast": pl.Float64, "lower": pl.Float64, "upper": pl.Float64, "model": pl.String,
    "origin": pl.Date,
}


@dataclass(frozen=True)
class ForecastConfig:
    horizon_weeks: int = 12
    season_weeks: int = 52
    backtest_origins: int = 4
    origin_step_weeks: int = 4
    min_train_weeks: int = 12
    interval: float = 0.8

    def __post_init__(self) -> None:
        if self.min_train_weeks < 2:
            raise ValueError("min_train_weeks must be at least 2 (a lag needs a week to train on)")

    @property
    def min_history_weeks(self) -> int:
        """Whole weeks needed: the earliest backtest origin still has ``min_train_weeks``."""
        return self.min_train_weeks + self.backtest_origins * self.origin_step_weeks


@dataclass
class Forecast:
    status: str
    reason: str
    weeks_of_history: int
    table: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FORECAST_SCHEMA))
    chosen: str | None = None
    season_weeks: int | None = None
    # model -> metric -> value (mase, coverage, held_out_weeks, origins)
    backtest: dict[str, dict[str, float]] = field(default_factory=dict)


# ── weekly series ────────────────────────────────────────────────────────────────────────────────


def daily_revenue_by_segment(activity, segments=None):
    """Revenue per (segment, event_date), in the engine of the inputs (narwhals: Polars or
    Spark), so only segments x days reach the driver.

    ``activity`` is gold ``daily_activity`` (``customer_id``, ``event_date``, ``revenue``);
    ``segments`` maps ``customer_id`` to ``segment`` (customers without one, or every customer
    when it is None, are ``'unknown'``).
    """
    activity = nw.from_native(activity).lazy().select("customer_id", "event_date", "revenue")
    if segments is None:
        labelled = activity.with_columns(segment=nw.lit(UNKNOWN, nw.String()))
    else:
        segments = nw.from_native(segments).lazy().select("customer_id", "segment").unique(
            ["customer_id"])
        labelled = activity.join(segments, on="customer_id", how="left")
    return (labelled.with_columns(nw.col("segment").fill_null(UNKNOWN))
            .group_by("segment", "event_date").agg(money_sum("revenue"))
            .to_native())


def weekly_revenue(daily: pl.DataFrame, first_day: date, last_day: date) -> pl.DataFrame:
    """Revenue per (segment, week_start), ``'all'`` included, over the whole weeks (Monday to
    Sunday) within ``[first_day, last_day]``; every series has every week (0 without revenue).

    ``daily`` is ``daily_revenue_by_segment``'s answer (``segment``, ``event_date``,
    ``revenue``).
    """
    first_week = _monday(first_day) + (timedelta(0) if first_day.weekday() == 0
                                       else timedelta(days=7))
    last_week = _monday(last_day) - (timedelta(0) if last_day.weekday() == 6
                                     else timedelta(days=7))
    empty = pl.DataFrame(schema={"segment": pl.String, "week_start": pl.Date,
                                 "revenue": pl.Float64})
    if last_week < first_week:
        return empty
    weeks = pl.date_range(first_week, last_week, interval="1w", eager=True).alias("week_start")
    in_weeks = (daily.lazy().with_columns(week_start=pl.col("event_date").dt.truncate("1w"))
                .filter(pl.col("week_start").is_between(first_week, last_week)))
    # Rounded to the cent like gold's sums: a multi-threaded sum's last bit would otherwise
    # move the boosted model's splits from run to run.
    week_sum = pl.col("revenue").cast(pl.Float64).sum().round(MONEY_DECIMALS)
    per_segment = in_weeks.group_by("segment", "week_start").agg(week_sum)
    overall = (in_weeks.group_by("week_start").agg(week_sum)
               .select(segment=pl.lit(ALL), week_start="week_start", revenue="revenue"))
    sums = pl.concat([per_segment, overall]).collect()
    names = sums.select("segment").unique()
    if names.is_empty():
        names = pl.DataFrame({"segment": [ALL]})
    grid = names.join(weeks.to_frame(), how="cross")
    return (grid.join(sums, on=["segment", "week_start"], how="left")
            .with_columns(pl.col("revenue").fill_null(0.0))
            .sort("segment", "week_start"))


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


# ── the two models ───────────────────────────────────────────────────────────────────────────────


def _z_quantiles(level: float) -> tuple[float, float]:
    return (1 - level) / 2, (1 + level) / 2


def seasonal_naive(series: dict[str, np.ndarray], horizon: int, season: int, level: float
                   ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per series: (forecast, lower, upper) for the ``horizon`` weeks after its end."""
    lo_q, hi_q = _z_quantiles(level)
    out = {}
    for name, y in series.items():
        steps = np.arange(horizon)
        point = y[len(y) - season + steps % season]
        seasons_ahead = np.sqrt(steps // season + 1)
        diffs = y[season:] - y[:-season]
        lo, hi = (np.quantile(diffs, [lo_q, hi_q]) if diffs.size else (0.0, 0.0))
        out[name] = (point, point + lo * seasons_ahead, point + hi * seasons_ahead)
    return out


def _features(y: np.ndarray, origin: int, h: int, season: int) -> tuple[list[float], float]:
    """Features known at ``origin`` (weeks observed) for the week ``origin + h - 1``, scaled by
    the series' recent level; returns them with the scale."""
    recent = y[max(0, origin - 8):origin]
    scale = max(float(np.mean(np.abs(recent))) if recent.size else 0.0, MIN_SCALE)
    lags = [y[origin - k] / scale if origin - k >= 0 else np.nan for k in range(1, LAGS + 1)]
    last4, prior4 = y[max(0, origin - 4):origin], y[max(0, origin - 8):max(0, origin - 4)]
    mean4 = float(np.mean(last4)) / scale if last4.size else np.nan
    trend = mean4 - float(np.mean(prior4)) / scale if prior4.size else np.nan
    target_week = origin + h - 1
    seasonal = (y[target_week - season] / scale
                if season > 1 and 0 <= target_week - season < origin else np.nan)
    return [*lags, mean4, trend, seasonal, float(h)], scale


def _training_rows(series: dict[str, np.ndarray], horizon: int, season: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    rows, targets = [], []
    for y in series.values():
        # From the second week on: lags not yet observed are NaN, which the trees handle.
        for origin in range(1, len(y)):
            for h in range(1, min(horizon, len(y) - origin) + 1):
                x, scale = _features(y, origin, h, season)
                rows.append(x)
                targets.append(y[origin + h - 1] / scale)
    return np.asarray(rows, dtype=float), np.asarray(targets, dtype=float)


def _booster(objective: str, alpha: float | None = None) -> lgb.LGBMRegressor:
    extra = {"alpha": alpha} if alpha is not None else {}
    # Small data (tens of weeks x a handful of series): shallow trees, one thread, reproducible.
    return lgb.LGBMRegressor(objective=objective, n_estimators=150, learning_rate=0.05,
                             num_leaves=7, min_child_samples=10, subsample=1.0,
                             n_jobs=1, random_state=0, verbose=-1, deterministic=True,
                             **extra)


def lightgbm_forecast(series: dict[str, np.ndarray], horizon: int, season: int, level: float
                      ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    x, target = _training_rows(series, horizon, season)
    lo_q, hi_q = _z_quantiles(level)
    models = [_booster("quantile", 0.5), _booster("quantile", lo_q), _booster("quantile", hi_q)]
    for model in models:
        model.fit(x, target)
    widen = _conformal_margin(series, horizon, season, level)
    out = {}
    for name, y in series.items():
        grid, scales = _forecast_grid(y, horizon, season)
        point, lower, upper = (m.predict(grid) * scales for m in models)
        lower, upper = lower - widen * scales, upper + widen * scales
        # Quantile models are fitted apart and can cross: the interval always holds the point.
        out[name] = (point, np.minimum(lower, point), np.maximum(upper, point))
    return out


def _forecast_grid(y: np.ndarray, horizon: int, season: int) -> tuple[np.ndarray, np.ndarray]:
    feats = [_features(y, len(y), h, season) for h in range(1, horizon + 1)]
    return np.asarray([f for f, _ in feats]), np.asarray([s for _, s in feats])


def _conformal_margin(series: dict[str, np.ndarray], horizon: int, season: int,
                      level: float, windows: int = 2) -> float:
    """How much to widen the quantile models' interval (in scaled revenue) so it covers
    ``level`` of recent weeks: quantile models judged on their own training rows are too sure
    of themselves (conformalized quantile regression). For each of ``windows`` recent origins
    the bound models are refitted on the weeks before it and judged on forecasting the ``held``
    weeks after it; 0 when the history is too short to hold any out."""
    length = len(next(iter(series.values())))
    held = min(horizon, length // (2 * windows + 2))
    if held < 1:
        return 0.0
    lo_q, hi_q = _z_quantiles(level)
    scores = []
    for k in range(1, windows + 1):
        origin = length - k * held
        fit = {name: y[:origin] for name, y in series.items()}
        x, target = _training_rows(fit, horizon, season)
        if len(target) < 2:
            continue
        bounds = [_booster("quantile", lo_q), _booster("quantile", hi_q)]
        for model in bounds:
            model.fit(x, target)
        for name, y in fit.items():
            grid, scales = _forecast_grid(y, held, season)
            lower, upper = (m.predict(grid) for m in bounds)
            actual = series[name][origin:origin + held] / scales
            scores.append(np.maximum(lower - actual, actual - upper))
    if not scores:
        return 0.0
    scores = np.concatenate(scores)
    rank = min(1.0, math.ceil((len(scores) + 1) * level) / len(scores))
    return float(np.quantile(scores, rank))


MODELS = {SEASONAL_NAIVE: seasonal_naive, LIGHTGBM: lightgbm_forecast}


# ── backtest and forecast ────────────────────────────────────────────────────────────────────────


def _mase_scale(y: np.ndarray, season: int) -> float:
    diffs = np.abs(y[season:] - y[:-season])
    return float(np.mean(diffs)) if diffs.size else math.nan


def backtest(series: dict[str, np.ndarray], config: ForecastConfig, season: int
             ) -> tuple[dict[str, dict[str, float]], pl.DataFrame]:
    """Rolling-origin backtest of every model: the summary per model and the held-out rows."""
    length = len(next(iter(series.values())))
    origins = [length - k * config.origin_step_weeks
               for k in range(config.backtest_origins, 0, -1)]
    rows = []
    for origin in origins:
        train = {name: y[:origin] for name, y in series.items()}
        held = min(config.horizon_weeks, length - origin)
        for model, fit in MODELS.items():
            predicted = fit(train, held, season, config.interval)
            for name, (point, lower, upper) in predicted.items():
                actual = series[name][origin:origin + held]
                rows += [{"model": model, "segment": name, "origin": origin, "step": i + 1,
                          "actual": float(actual[i]), "forecast": float(point[i]),
                          "lower": float(lower[i]), "upper": float(upper[i]),
                          "scale": _mase_scale(train[name], season)} for i in range(held)]
    held_out = pl.DataFrame(rows)
    per_fold = (held_out.filter(pl.col("scale").is_finite() & (pl.col("scale") > 0))
                .group_by("model", "segment", "origin")
                .agg(mase=(pl.col("actual") - pl.col("forecast")).abs().mean()
                     / pl.col("scale").first()))
    summary = {}
    for model in MODELS:
        mine = held_out.filter(pl.col("model") == model)
        inside = mine.select(((pl.col("actual") >= pl.col("lower"))
                              & (pl.col("actual") <= pl.col("upper"))).mean()).item()
        overall = per_fold.filter((pl.col("model") == model) & (pl.col("segment") == ALL))
        summary[model] = {
            "mase": _mean(per_fold.filter(pl.col("model") == model)["mase"]),
            "mase_all": _mean(overall["mase"]),
            "coverage": float(inside),
            "held_out_weeks": float(mine.height),
            "origins": float(len(origins)),
        }
    return summary, held_out


def _mean(values: pl.Series) -> float:
    """The mean, NaN when there is nothing to average (no fold had a non-zero MASE scale)."""
    mean = values.mean()
    return math.nan if mean is None else float(mean)


def choose(summary: dict[str, dict[str, float]]) -> tuple[str, str]:
    """The model with the lower backtest MASE (the baseline on ties or when LightGBM's is not
    finite), and why."""
    ours, base = summary[LIGHTGBM]["mase"], summary[SEASONAL_NAIVE]["mase"]
    if math.isfinite(ours) and (not math.isfinite(base) or ours < base):
        return LIGHTGBM, f"LightGBM's backtest MASE {ours:.3f} < seasonal naive's {base:.3f}"
    return SEASONAL_NAIVE, (f"seasonal naive's backtest MASE {base:.3f} <= LightGBM's "
                            f"{ours:.3f}")


def forecast_revenue(weekly: pl.DataFrame, config: ForecastConfig = ForecastConfig(),
                     prefer: str | None = None) -> Forecast:
    """Backtest both models on ``weekly`` (``weekly_revenue``), then forecast the next
    ``horizon_weeks`` with the better one (or ``prefer``, for experiments). Too few whole weeks
    give ``status='not enough history'`` and the history alone, never an exception."""
    weeks = weekly["week_start"].unique().sort()
    history = (weekly.with_columns(
        kind=pl.lit("actual"), forecast=pl.lit(None, pl.Float64), lower=pl.lit(None, pl.Float64),
        upper=pl.lit(None, pl.Float64), model=pl.lit(None, pl.String),
        origin=pl.lit(None, pl.Date)).select(list(FORECAST_SCHEMA)).cast(FORECAST_SCHEMA))
    if weeks.len() < config.min_history_weeks:
        return Forecast(
            NOT_ENOUGH_HISTORY,
            f"{weeks.len()} whole weeks of revenue; the backtest needs "
            f"{config.min_history_weeks} ({config.min_train_weeks} to train before the first of "
            f"{config.backtest_origins} origins {config.origin_step_weeks} weeks apart)",
            weeks.len(), history)
    series = {name: part.sort("week_start")["revenue"].to_numpy().astype(float)
              for (name,), part in weekly.group_by("segment")}
    earliest_origin = weeks.len() - config.backtest_origins * config.origin_step_weeks
    season = config.season_weeks if earliest_origin > config.season_weeks else 1
    summary, _ = backtest(series, config, season)
    chosen, reason = choose(summary)
    if prefer is not None:
        chosen, reason = prefer, f"{prefer} asked for ({reason})"
    predicted = MODELS[chosen](series, config.horizon_weeks, season, config.interval)
    last_week = weeks.max()
    future = [last_week + timedelta(weeks=i + 1) for i in range(config.horizon_weeks)]
    origin = last_week + timedelta(days=6)
    rows = [{"week_start": week, "segment": name, "kind": "forecast", "revenue": None,
             "forecast": float(point[i]), "lower": float(lower[i]), "upper": float(upper[i]),
             "model": chosen, "origin": origin}
            for name, (point, lower, upper) in predicted.items()
            for i, week in enumerate(future)]
    table = pl.concat([history, pl.DataFrame(rows, schema=FORECAST_SCHEMA)]).sort(
        "segment", "week_start")
    return Forecast(OK, reason, weeks.len(), table, chosen, season, summary)
