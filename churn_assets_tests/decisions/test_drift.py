"""Population stability index of features and score against a reference window."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from churn_assets.decisions import population_stability
from churn_assets.decisions.drift import DRIFT_SCHEMA, HISTOGRAM_SCHEMA, NULL_BIN, psi


def population(n: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        "days_since_last_order": np.round(rng.exponential(30 * scale, n)).astype(np.int64),
        "churn_probability": np.clip(rng.beta(2, 5, n) + shift, 0, 1),
        "segment": rng.choice(["consumer", "small_business", "enterprise"], n, p=[.7, .2, .1]),
    })


def test_psi_formula():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    expected = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.7, 0.3])) == pytest.approx(expected)


def test_identical_populations_are_stable():
    reference = population(50_000, seed=1)
    report = population_stability(reference, population(50_000, seed=2))
    assert report.summary.schema == pl.Schema(DRIFT_SCHEMA)
    assert set(report.summary["feature"]) == {"days_since_last_order", "churn_probability",
                                              "segment"}  # customer_id is excluded
    assert (report.summary["psi"] < 0.01).all()
    assert (report.summary["status"] == "ok").all()
    assert population_stability(reference, reference).summary["psi"].max() == pytest.approx(0)


def test_shifted_populations_warn_or_fail():
    reference = population(50_000, seed=1)
    report = population_stability(
        reference, population(50_000, seed=2, shift=0.08, scale=1.6),
        features=["churn_probability", "days_since_last_order"])
    status = dict(report.summary.select("feature", "status").iter_rows())
    values = dict(report.summary.select("feature", "psi").iter_rows())
    assert status["churn_probability"] == "error" and values["churn_probability"] >= 0.25
    assert status["days_since_last_order"] == "warn"
    assert 0.1 <= values["days_since_last_order"] < 0.25
    strict = population_stability(reference, population(50_000, seed=2, scale=1.25),
                                  features=["days_since_last_order"], warn=0.01, error=0.03)
    assert strict.summary["status"].item() == "error"
    histogram = report.histogram
    assert histogram.schema == pl.Schema(HISTOGRAM_SCHEMA)
    sums = histogram.group_by("feature").agg(pl.col("reference_share", "current_share").sum())
    assert np.allclose(sums["reference_share"], 1) and np.allclose(sums["current_share"], 1)
    probability = histogram.filter(pl.col("feature") == "churn_probability")
    assert probability.height == 10  # deciles of the reference, no nulls
    assert np.allclose(probability["reference_share"], 0.1, atol=0.001)


def test_categories_ties_constants_and_nulls():
    reference = pl.DataFrame({
        "segment": ["consumer"] * 80 + ["enterprise"] * 20,
        "tickets_30d": [0] * 90 + [1] * 5 + [2] * 5,  # mostly ties
        "is_cancelled": [False] * 100,
        "csat_trend": [None] * 50 + [0.5] * 50,  # constant with nulls
    })
    current = pl.DataFrame({
        "segment": ["consumer"] * 50 + ["enterprise"] * 20 + ["reseller"] * 30,
        "tickets_30d": [0] * 90 + [1] * 5 + [2] * 5,
        "is_cancelled": [False] * 70 + [True] * 30,
        "csat_trend": [None] * 10 + [0.5] * 50 + [2.0] * 40,
    })
    report = population_stability(reference, current)
    values = dict(report.summary.select("feature", "psi").iter_rows())
    assert values["tickets_30d"] == pytest.approx(0.0)
    assert values["segment"] > 0.25 and values["is_cancelled"] > 0.25
    assert values["csat_trend"] > 0.25
    bins = report.histogram.filter(pl.col("feature") == "csat_trend")
    assert bins["bin"].to_list() == ["(-inf, 0.5]", "(0.5, inf)", NULL_BIN]
    assert bins["reference_share"].to_list() == [0.5, 0.0, 0.5]
    assert bins["current_share"].to_list() == [0.5, 0.4, 0.1]
    ties = report.histogram.filter(pl.col("feature") == "tickets_30d")
    assert ties.height < 10  # repeated deciles collapse into fewer bins
    segments = report.histogram.filter(pl.col("feature") == "segment")
    assert dict(segments.select("bin", "reference_share").iter_rows())["reseller"] == 0.0


def test_drift_explains_bad_input():
    frame = population(100, seed=1)
    with pytest.raises(ValueError, match="missing from the reference or the current"):
        population_stability(frame, frame.drop("segment"), features=["segment"])
    with pytest.raises(ValueError, match="rows on both sides"):
        population_stability(frame, frame.clear())
