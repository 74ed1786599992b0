"""The uplift learner on a synthetic randomized experiment with a known heterogeneous effect:
the customers the voucher moves are *not* the riskiest ones (retention futility)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from churn_assets.decisions.experiment import NO_ACTION
from churn_assets.ml.dataset import FEATURES
from churn_assets.ml.uplift import (
    UpliftTrainingConfig,
    evaluate,
    fit_uplift,
    gate,
    prepare_rows,
    qini_coefficient,
    split_by_day,
    train_uplift,
)
from churn_assets.transforms.gold import FEATURE_SCHEMA

ACTIONS = ["discount_voucher", "reengagement_email"]
START = date(2026, 3, 1)


def world(n: int, seed: int, days: int = 20, explore: float = 1.0):
    """Decision rows with outcomes and their gold features.

    Churn risk rises with ``days_since_last_order``; the voucher's true retention effect is
    0.30 for engaged customers (``sessions_30d`` >= 5) and 0 otherwise, whatever their risk;
    the email does nothing. Arms: uniform over the actions and no action (explore rows,
    propensity 1/3), plus policy rows with a 10 % control hold-out.
    """
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 90, n).astype(float)
    sessions = rng.poisson(4, n).astype(float)
    risk = 1 / (1 + np.exp(-(recency - 45) / 12))
    true_effect = np.where(sessions >= 5, 0.30, 0.0)
    explored = rng.random(n) < explore
    arm_draw = rng.integers(0, 3, n)
    arm = np.where(explored, np.array([*ACTIONS, NO_ACTION])[arm_draw],
                   np.where(rng.random(n) < 0.1, NO_ACTION, "discount_voucher"))
    propensity = np.where(explored, 1 / 3, np.where(arm == NO_ACTION, 0.1, 0.9))
    p_retain = np.clip(1 - risk + np.where(arm == "discount_voucher", true_effect, 0.0), 0, 1)
    retained = rng.random(n) < p_retain
    ids = [f"C{i:06d}" for i in range(n)]
    day = [START + timedelta(days=int(d)) for d in rng.integers(0, days, n)]
    measured = pl.DataFrame({
        "customer_id": ids, "snapshot_date": day,
        "action": np.where(arm == NO_ACTION, "discount_voucher", arm),
        "control": arm == NO_ACTION, "retained": retained,
        "revenue": retained * rng.gamma(2.0, 40.0, n), "cost": 0.0,
        "randomized": True, "propensity": propensity, "churn_probability": risk,
        "assignment": np.where(explored, "explore", "policy"),
    }).with_columns(
        action=pl.when(pl.col("assignment") == "explore").then(
            pl.when(pl.col("control")).then(pl.lit(NO_ACTION)).otherwise(pl.col("action")))
        .otherwise(pl.col("action")))
    features = pl.DataFrame({"customer_id": ids, "snapshot_date": day}).with_columns(
        pl.lit(None).cast(pl.Float64).alias(c) for c in FEATURES
    ).with_columns(
        days_since_last_order=pl.Series(recency), sessions_30d=pl.Series(sessions),
        tenure_days=pl.Series(rng.integers(30, 900, n).astype(float)),
        segment=pl.Series(rng.choice(["consumer", "small_business"], n)),
    ).with_columns(pl.col(c).cast(t.to_polars() if hasattr(t, "to_polars") else pl.Float64)
                   for c, t in FEATURE_SCHEMA.items() if c in FEATURES and c != "segment")
    return measured, features, true_effect, risk


def test_qini_rewards_putting_responders_first():
    rng = np.random.default_rng(0)
    n = 20_000
    responder = rng.random(n) < 0.3
    treated = rng.random(n) < 0.5
    y = rng.random(n) < 0.4 + 0.3 * (responder & treated)
    perfect = qini_coefficient(responder.astype(float), treated, y)
    backwards = qini_coefficient(-responder.astype(float), treated, y)
    random = [qini_coefficient(rng.random(n), treated, y) for _ in range(5)]
    # Per treated customer: 0.09 x (0.15 + 0.7 - 0.5) = 0.0315 for the perfect ranking.
    assert perfect == pytest.approx(0.0315, abs=0.006)
    assert backwards == pytest.approx(-0.0315, abs=0.006)
    assert max(abs(r) for r in random) < 0.006
    assert np.isnan(qini_coefficient(np.ones(4), np.ones(4, bool), np.ones(4)))


def test_the_learned_ranking_beats_risk_ranking_on_held_out_days():
    measured, features, true_effect, _ = world(12_000, seed=1)
    result = train_uplift(measured, features, ACTIONS, UpliftTrainingConfig(min_arm_rows=200))
    assert result.model is not None and result.enough_data
    voucher = result.evaluation.filter(pl.col("action") == "discount_voucher").row(0, named=True)
    assert voucher["counted"]
    assert voucher["qini_model"] > voucher["qini_risk"] + 0.02
    assert voucher["qini_model"] > 0.02
    assert result.decision.promote, result.decision.reasons
    # The predictions separate the customers the voucher moves from those it does not.
    scored = result.model.predict(features).filter(pl.col("action") == "discount_voucher")
    tau = scored["retention_uplift"].to_numpy()
    assert tau[true_effect > 0].mean() - tau[true_effect == 0].mean() > 0.15
    email = result.model.predict(features).filter(pl.col("action") == "reengagement_email")
    assert abs(email["retention_uplift"].mean()) < 0.05
    assert result.train_days[1] < result.holdout_days[0]


def test_too_few_outcomes_fall_back_and_say_how_many_more():
    measured, features, _, _ = world(300, seed=2)
    result = train_uplift(measured, features, ACTIONS, UpliftTrainingConfig(min_arm_rows=200))
    assert result.model is None and not result.decision.promote
    assert all(0 < result.needed[arm] < 200 for arm in [*ACTIONS, NO_ACTION])
    assert "needs" in result.decision.reasons[0]


def test_rows_without_propensities_are_not_training_rows():
    measured, features, _, _ = world(2_000, seed=3)
    legacy = measured.head(500).drop("randomized", "propensity")
    prepared = prepare_rows(legacy, features)
    assert prepared.rows.is_empty() and prepared.not_randomized == 500
    mixed = pl.concat([measured.head(500).with_columns(propensity=pl.lit(None, pl.Float64)),
                       measured.tail(1_500)])
    prepared = prepare_rows(mixed, features.head(1_900))
    assert prepared.not_randomized == 500
    assert prepared.without_features == 100
    assert prepared.rows.height == 1_400
    assert (prepared.rows["weight"] >= 1).all()


def test_small_held_out_arms_never_move_the_gate():
    measured, features, _, _ = world(4_000, seed=4)
    prepared = prepare_rows(measured, features)
    train, holdout = split_by_day(prepared.rows, 0.3)
    model = fit_uplift(train, ACTIONS)
    tiny = holdout.filter(pl.col("arm") == "discount_voucher").head(10).vstack(
        holdout.filter(pl.col("arm") == NO_ACTION).head(8))
    evaluation = evaluate(model, tiny, min_holdout_arm=30)
    assert not evaluation["counted"].any()
    decision = gate(evaluation)
    assert not decision.promote and "large enough" in decision.reasons[0]


def test_a_model_no_better_than_risk_ranking_is_refused():
    evaluation = pl.DataFrame({
        "action": ["discount_voucher", "reengagement_email"], "treated_n": [500, 400],
        "control_n": [500, 400], "counted": [True, True], "qini_model": [0.01, 0.0],
        "qini_risk": [0.02, 0.0], "measured_uplift": [0.1, 0.0],
        "mean_predicted_uplift": [0.1, 0.0],
    })
    decision = gate(evaluation)
    assert not decision.promote
    assert decision.reasons[0].startswith("held-out Qini 0.0056 > 0")
    assert "<= 0.0111 (ranking by churn risk)" in decision.reasons[1]
