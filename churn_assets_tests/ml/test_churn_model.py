"""The churn model on a small simulated business: the real path from simulator drops through
bronze, silver and gold to labels, a time-based split, LightGBM + baseline, calibration and
explanations.

The world (600 customers, 150 days, default dirt, seed 11; features every second day from day
30, 30-day labels) is simulated once per session and shared with the other ``test_ml_*``
modules through ``ml_world``.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from churn_assets.lab.evaluate import (
    SimulatedWorld,
    features_for_days,
    labels_for,
    simulate_world,
)
from churn_assets.ml import metrics as m
from churn_assets.ml.churn_model import (
    BASELINE_FEATURES,
    ChurnTrainingConfig,
    TrainingResult,
    choose_scorer,
    train_churn_model,
)
from churn_assets.ml.dataset import FEATURES, FeatureSpec, time_split, training_frame
from churn_assets.ml.purchase_process import DERIVED
from churn_assets.simulator import SimConfig

HORIZON = 30
_CACHE: dict[str, object] = {}
PAYMENT_FEATURES = {"tenure_days", "days_since_last_order", "orders_total", "revenue_total",
                    "avg_order_value", "category_diversity", "orders_7d", "orders_30d",
                    "orders_90d", "revenue_90d", "failed_payments_90d", "refunds_90d",
                    "days_since_first_order", "mean_days_between_orders", "order_gap_ratio",
                    "orders_per_tenure_month", "spend_trend", "recent_gap_cv",
                    "last_gap_ratio", "overdue_in_spreads", "basket_trend",
                    "probability_alive", "expected_orders_horizon"}  # (the last two derived)


def _cached(key: str, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def ml_world(tmp_path_factory) -> SimulatedWorld:
    """The shared world, simulated at most once per test session."""
    return _cached("world", lambda: simulate_world(
        tmp_path_factory.mktemp("ml_world"), SimConfig(customers=600, days=150, seed=11),
        horizon_days=HORIZON, snapshot_every=2))


def ml_trained(tmp_path_factory) -> TrainingResult:
    """The churn model trained on the shared world with the default configuration."""
    world = ml_world(tmp_path_factory)
    return _cached("trained", lambda: train_churn_model(world.features, world.labels))


def transactions_only(world: SimulatedWorld) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features and labels of the same business had it only a payments export."""
    def build():
        days = world.features["snapshot_date"].unique().sort().to_list()
        features = features_for_days(world.silver, days, domains=("payments",))
        silver = {"payments": world.silver["payments"], "customers": None}
        return features, labels_for(features, silver, HORIZON, world.last_day)
    return _cached("transactions_only", build)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> SimulatedWorld:
    return ml_world(tmp_path_factory)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainingResult:
    return ml_trained(tmp_path_factory)


@pytest.fixture(scope="session")
def frame(world) -> pl.DataFrame:
    return training_frame(world.features, world.labels)


# ---------------------------------------------------------------- the training set and split


def test_training_frame_keeps_exactly_the_labelled_snapshots(world, frame):
    assert frame.height == world.labels.height
    assert frame["churned"].null_count() == 0
    assert frame.select("snapshot_date", "customer_id").is_duplicated().sum() == 0
    last_labelled = world.last_day - timedelta(days=HORIZON)
    assert frame["snapshot_date"].max() <= last_labelled
    assert world.features["snapshot_date"].max() > last_labelled  # unlabelled days dropped
    assert 0.1 < frame["churned"].mean() < 0.9


@pytest.mark.parametrize("validation_days", [1, 14, 30])
def test_no_training_label_window_reaches_the_first_validation_snapshot(frame, validation_days):
    split = time_split(frame, HORIZON, validation_days=validation_days)
    fitted = np.concatenate([split.train, split.calibration])
    validation = frame[split.validation]

    assert validation["snapshot_date"].min() >= split.validation_start
    assert (frame["snapshot_date"].max() - split.validation_start).days == validation_days - 1
    assert frame[fitted]["label_window_end"].max() <= split.validation_start
    assert frame[fitted]["snapshot_date"].max() < split.validation_start
    # Tight, not just safe: the latest allowed snapshot is used when the world has it.
    latest_allowed = split.validation_start - timedelta(days=HORIZON)
    allowed = frame.filter(pl.col("snapshot_date") <= latest_allowed)
    assert len(fitted) == allowed.height
    # Every row lands in at most one part; calibration holds out whole customers.
    assert len(set(split.train) | set(split.calibration) | set(split.validation)) == (
        split.train.size + split.calibration.size + split.validation.size)
    assert not set(frame[split.train]["customer_id"]) & set(frame[split.calibration]["customer_id"])
    assert 0.1 < split.calibration.size / len(fitted) < 0.3


def test_split_names_what_to_change_when_the_history_is_too_short(frame):
    short = frame.filter(pl.col("snapshot_date") <= frame["snapshot_date"].min()
                         + timedelta(days=HORIZON + 10))
    with pytest.raises(ValueError, match=r"too few labelled days.*30-day label horizon"):
        time_split(short, HORIZON, validation_days=14)
    with pytest.raises(ValueError, match="labels have a 30-day horizon, not the 90 days"):
        time_split(frame, 90)


# ---------------------------------------------------------------- model, baseline, metrics


def test_model_and_baseline_share_the_split_and_report_every_metric(trained):
    model, baseline = trained.metrics["model"], trained.metrics["baseline"]
    assert model["rows"] == baseline["rows"] == trained.split.validation.size
    for name in ("roc_auc", "pr_auc", "brier", "ece"):
        assert name in model and f"{name}_vs_baseline" in trained.comparison
    for share in ("5pct", "10pct", "20pct"):
        for kind in ("precision", "recall", "lift"):
            assert f"{kind}_at_{share}" in model
    assert model["roc_auc"] >= 0.80 and baseline["roc_auc"] >= 0.75
    assert model["lift_at_10pct"] > 1.5
    assert trained.comparison["roc_auc_vs_baseline"] == pytest.approx(
        model["roc_auc"] - baseline["roc_auc"])
    segments = trained.segments
    assert set(segments["scorer"]) == {"model", "baseline"}
    assert {"basic", "plus", "premium"} <= set(segments["segment"])
    assert segments.filter(pl.col("segment") != "unknown")["roc_auc"].null_count() == 0


def test_calibration_lowers_ece_on_held_out_data(world):
    """Class weighting (a common choice for churn) inflates raw scores; the calibration fitted
    on held-out customers must bring them back, measured on the later validation days."""
    # Weight 8: on this world a weight of 4 barely moves the raw scores (validation ECE 0.06,
    # little to calibrate); 8 inflates them clearly (raw ECE 0.23).
    params = {**ChurnTrainingConfig().lgbm_params, "scale_pos_weight": 8.0}
    for method in ("isotonic", "platt"):
        result = train_churn_model(world.features, world.labels,
                                   ChurnTrainingConfig(calibration=method, lgbm_params=params))
        raw, calibrated = result.metrics["model_uncalibrated"], result.metrics["model"]
        assert calibrated["ece"] < raw["ece"] / 1.5, method
        assert calibrated["brier"] < raw["brier"], method


def test_calibration_fits_on_the_held_out_customers_of_the_latest_trainable_days(frame):
    whole, recent = time_split(frame), time_split(frame, calibration_days=10)
    np.testing.assert_array_equal(recent.calibration, whole.calibration)
    assert whole.calibration_fit_rows is whole.calibration
    days = frame["snapshot_date"]
    in_window = (days.gather(whole.calibration)
                 > whole.train_end - timedelta(days=10)).to_numpy()
    np.testing.assert_array_equal(recent.calibration_fit, whole.calibration[in_window])
    assert 0 < recent.calibration_fit.size < whole.calibration.size
    assert days.gather(recent.calibration_fit).max() == whole.train_end
    with pytest.raises(ValueError, match="calibration_days must be at least 1"):
        time_split(frame, calibration_days=0)


def test_recent_calibration_follows_a_churn_rate_that_drifts(world):
    """The same business, but extra churn climbs from none on the first snapshot day to half
    of the customers on the last: a map fitted on the whole window under-predicts validation;
    fitted on its latest days it is closer. The booster is the same either way."""
    days = world.labels["snapshot_date"]
    climb = ((days - days.min()).dt.total_days() / (days.max() - days.min()).days).to_numpy()
    extra = np.random.default_rng(0).random(world.labels.height) < 0.5 * climb
    labels = world.labels.with_columns(churned=pl.col("churned") | pl.Series(extra))
    gaps, boosters = {}, set()
    for calibration_days in (None, 10):
        result = train_churn_model(world.features, labels,
                                   ChurnTrainingConfig(calibration_days=calibration_days))
        churned = result.validation["churned"].to_numpy()
        gaps[calibration_days] = churned.mean() - result.validation_probability.mean()
        boosters.add(result.model.booster.model_to_string())
    assert len(boosters) == 1
    assert 0 < gaps[10] < gaps[None] - 0.02


def test_calibration_keeps_the_ranking(trained):
    raw = trained.metrics["model_uncalibrated"]["roc_auc"]
    assert trained.metrics["model"]["roc_auc"] == pytest.approx(raw, abs=1e-3)
    p = trained.validation_probability
    assert ((p >= 0) & (p <= 1)).all()


def test_drivers_are_each_customers_largest_shap_values(trained):
    model, rows = trained.model, trained.validation.head(50)
    contributions = model.contributions(rows)
    # SHAP values add up to the raw log-odds of every row.
    raw = model.raw_proba(rows)
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(raw / (1 - raw)), atol=1e-6)
    drivers = model.drivers(rows, k=3)
    assert drivers.columns == ["driver_1", "driver_1_impact", "driver_2", "driver_2_impact",
                               "driver_3", "driver_3_impact"]
    names = list(model.spec.columns)
    for i, row in enumerate(drivers.iter_rows(named=True)):
        top = np.sort(contributions[i, :-1])[::-1][:3]
        assert [row[f"driver_{k}_impact"] for k in (1, 2, 3)] == pytest.approx(top)
        assert contributions[i, names.index(row["driver_1"])] == pytest.approx(top[0])
    scored = model.score(rows)
    assert scored.columns[:2] == ["customer_id", "churn_probability"]
    assert scored["customer_id"].to_list() == rows["customer_id"].to_list()


def test_global_importance_covers_every_feature_used(trained):
    importance = trained.model.importance
    assert set(importance["feature"]) == set(trained.model.spec.columns)
    assert importance["mean_abs_shap"].is_sorted(descending=True)
    assert importance["mean_abs_shap"][0] > 0


def test_a_transactions_only_business_trains(world):
    features, labels = transactions_only(world)
    result = train_churn_model(features, labels)
    spec = result.model.spec
    assert set(spec.columns) <= PAYMENT_FEATURES
    assert {"sessions_7d", "segment", "tickets_30d", "offers_received_90d"} <= set(spec.dropped)
    assert result.metrics["model"]["roc_auc"] > 0.75
    drivers = result.model.drivers(result.validation)
    assert set(drivers["driver_1"]) <= PAYMENT_FEATURES
    assert np.isfinite(result.validation_probability).all()


def test_scoring_uses_the_training_codes(trained):
    rows = trained.validation.head(20)
    spec = trained.model.spec
    assert spec.categories["segment"] == ("basic", "plus", "premium")
    renamed = rows.with_columns(segment=pl.lit("never-seen-before"),
                                region=pl.lit(None, dtype=pl.String))
    p = trained.model.predict_proba(renamed)  # unseen and null categories are missing values
    assert np.isfinite(p).all() and p.shape == (20,)
    codes = spec.matrix(rows)[:, spec.columns.index("segment")]
    expected = [spec.categories["segment"].index(s) for s in rows["segment"].to_list()]
    assert codes.tolist() == expected
    with pytest.raises(ValueError, match=r"lacks columns \['orders_total'\]"):
        trained.model.predict_proba(rows.drop("orders_total"))


def test_entirely_null_columns_are_dropped_not_fatal(frame):
    spec = FeatureSpec.fit(frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("csat_trend")))
    assert "csat_trend" in spec.dropped and "csat_trend" not in spec.columns
    assert set(spec.columns) | set(spec.dropped) == set(FEATURES)


def test_metrics_against_the_validation_rows(trained):
    y = trained.validation["churned"].to_numpy()
    recomputed = m.classification_metrics(y, trained.validation_probability)
    assert recomputed == trained.metrics["model"]


# ---------------------------------------------------------------- sparse histories


def test_purchase_process_inputs_are_point_in_time_and_carried_by_the_model(trained):
    spec = trained.model.spec
    assert spec.process is not None and set(DERIVED) <= set(spec.columns)
    assert not set(DERIVED) & set(spec.inputs)  # computed on the way in, not read from gold
    rows = trained.validation.head(200)
    derived = spec.process.add(rows)
    alive = derived["probability_alive"].drop_nulls()
    assert alive.len() > 0 and alive.is_between(0.0, 1.0).all()
    # A row's derived values depend on that row only, not on what else is scored with it.
    alone = spec.process.add(rows.head(1))
    assert alone["expected_orders_horizon"][0] == derived["expected_orders_horizon"][0]
    # The same customer and history, but longer silent: less likely alive.
    buyers = rows.filter(pl.col("orders_total") > 1).head(1)
    later = buyers.with_columns(pl.col("days_since_last_order") + 60, pl.col("tenure_days") + 60)
    assert (spec.process.add(later)["probability_alive"][0]
            < spec.process.add(buyers)["probability_alive"][0])


def test_the_baseline_is_recency_frequency_monetary_and_tenure(trained):
    assert set(trained.baseline.spec.columns) <= set(BASELINE_FEATURES)
    contributions = trained.baseline.contributions(trained.validation.head(100))
    # The logistic terms add up to the baseline's raw log-odds.
    raw = trained.baseline.raw_proba(trained.validation.head(100))
    np.testing.assert_allclose(1 / (1 + np.exp(-contributions.sum(axis=1))), raw, rtol=1e-9)
    assert 0.5 < trained.recency_auc < trained.metrics["model"]["roc_auc"]


def test_choose_scorer_says_which_and_why():
    assert choose_scorer(0.80, 0.78, 0.7)[0] == "lightgbm"
    chosen, why = choose_scorer(0.80, 0.79, 0.7, min_gain=0.02)
    assert chosen == "logistic_baseline"
    assert "gain +0.0100, required > 0.0200" in why and "recency alone 0.7000" in why


def test_every_nth_snapshot_day_and_customer_weights(world, trained):
    config = ChurnTrainingConfig(snapshot_every_days=4, weight_customers=True)
    result = train_churn_model(world.features, world.labels, config)
    frame = training_frame(world.features, world.labels)
    every = frame[trained.split.train]["snapshot_date"].unique().sort(descending=True)
    kept = frame[result.split.train]["snapshot_date"].unique().sort(descending=True)
    # Every 4th calendar day back from the newest (this world has a snapshot every 2nd day).
    assert kept.to_list() == [d for d in every.to_list() if (every[0] - d).days % 4 == 0]
    assert 1 < kept.len() < every.len()
    assert 0 < result.split.train.size < trained.split.train.size
    # Validation keeps every day.
    np.testing.assert_array_equal(result.split.validation, trained.split.validation)
    assert result.metrics["model"]["roc_auc"] > 0.75


def test_top_drivers_are_a_stable_descending_sort_cut_at_k():
    from churn_assets.ml.churn_model import _top_columns

    # Small integers: many ties, which keep the features' order.
    values = np.random.default_rng(3).integers(-2, 3, size=(5000, 7)).astype(float)
    for k in (1, 3, 7):
        np.testing.assert_array_equal(
            _top_columns(values, k), np.argsort(-values, axis=1, kind="stable")[:, :k])
