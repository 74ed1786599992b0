"""CLTV: the MBG/NBD + Gamma-Gamma model against data drawn from its own process (so the
formulas are checked against a known truth), then on the shared simulated business."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from churn_assets.lab.evaluate import SimulatedWorld, cltv_report
from churn_assets.ml.cltv import (
    CltvModel,
    actual_revenue,
    customer_history,
    evaluate_cltv,
    fit_cltv,
)
from churn_assets.ml.cltv_compare import (
    BOOSTED_COLUMNS,
    KeptCltv,
    compare_cltv,
    fit_boosted_cltv,
)
from churn_assets_tests.ml.test_churn_model import ml_world, transactions_only

SNAPSHOT = date(2026, 6, 1)
TRUE = {"r": 0.8, "alpha": 20.0, "a": 2.0, "b": 6.0}


def draw_mbg(n: int, horizon: float, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Customers from a known MBG/NBD: gold-like feature rows on SNAPSHOT, and the number of
    orders each places in the ``horizon`` days after it."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    dropout = rng.beta(TRUE["a"], TRUE["b"], n)
    age = rng.integers(0, 300, n).astype(np.float64)
    t, orders, last, future = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    alive = rng.random(n) >= dropout  # MBG: a customer may be gone from the start
    while alive.any():
        t[alive] += rng.exponential(1 / rate[alive])
        alive &= t <= age + horizon
        before, after = alive & (t <= age), alive & (t > age)
        orders[before] += 1
        last[before] = t[before]
        future[after] += 1
        alive &= rng.random(n) >= dropout
    value = rng.gamma(4.0, 15.0, n)
    features = pl.DataFrame({
        "snapshot_date": [SNAPSHOT] * n,
        "customer_id": [f"C{i:08d}" for i in range(n)],
        "status": ["active"] * n,
        "tenure_days": age.astype(np.int64),
        "orders_total": orders.astype(np.int64),
        "days_since_last_order": np.where(orders > 0, np.round(age - last), np.nan),
        "avg_order_value": np.where(orders > 0, value, np.nan),
        "revenue_total": orders * value,
        "is_cancelled": [False] * n,
    }).with_columns(pl.col("days_since_last_order", "avg_order_value").fill_nan(None))
    return features, future


def test_expected_orders_match_the_process_they_model():
    features, future = draw_mbg(20_000, horizon=365)
    history = customer_history(features)
    truth = CltvModel(**TRUE, p=1.0, q=2.0, gamma=1.0, net_share=1.0)
    with_true_parameters = truth.expected_orders(history, 365)
    assert with_true_parameters.sum() == pytest.approx(future.sum(), rel=0.04)

    fitted = fit_cltv(features)
    assert fitted.r == pytest.approx(TRUE["r"], rel=0.2)
    assert fitted.alpha == pytest.approx(TRUE["alpha"], rel=0.3)
    expected = fitted.expected_orders(history, 365)
    assert expected.sum() == pytest.approx(future.sum(), rel=0.06)
    # Conditional, not just on average: by number of past orders.
    orders = history["orders"].to_numpy()
    for x in (0, 1, 3):
        assert expected[orders == x].mean() == pytest.approx(future[orders == x].mean(), rel=0.2)


def test_order_values_shrink_towards_the_population():
    features, _ = draw_mbg(5_000, horizon=1)
    model = fit_cltv(features)
    population = model.p * model.gamma / (model.q - 1)
    probe = pl.DataFrame({
        "customer_id": ["one", "many", "none"], "spend_orders": [1.0, 50.0, 0.0],
        "order_value": [1000.0, 1000.0, None],
    })
    one, many, none = model.expected_order_value(probe)
    assert population < one < many < 1000.0
    assert many > 900.0
    assert none == pytest.approx(population)
    assert population == pytest.approx(60.0, rel=0.1)  # the mean of Gamma(4, 15)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimulatedWorld:
    return ml_world(tmp_path_factory)


def _snapshot(world: SimulatedWorld, day: int) -> pl.DataFrame:
    cutoff = world.config.start + timedelta(days=day)
    return world.features.filter(pl.col("snapshot_date") == cutoff)


def test_new_customers_and_long_horizons_get_finite_values(world):
    snapshot = _snapshot(world, 60)
    model = fit_cltv(snapshot, history_start=world.config.start)
    template = snapshot.head(1)
    new = pl.concat([
        template.with_columns(customer_id=pl.lit(f"NEW{i}"), tenure_days=pl.lit(0, pl.Int64),
                              orders_total=pl.lit(orders, pl.Int64),
                              days_since_last_order=pl.lit(0 if orders else None, pl.Int64),
                              avg_order_value=pl.lit(40.0 if orders else None, pl.Float64),
                              revenue_total=pl.lit(40.0 * orders, pl.Float64),
                              is_cancelled=pl.lit(False))
        for i, orders in enumerate((0, 1))
    ])
    rows = pl.concat([snapshot, new])
    year, two_years = model.predict(rows, 365), model.predict(rows, 730)
    for predicted in (year, two_years):
        values = predicted["cltv"].to_numpy()
        assert np.isfinite(values).all() and (values >= 0).all()
    assert (two_years["cltv"].to_numpy() >= year["cltv"].to_numpy() - 1e-9).all()
    brand_new = two_years.filter(pl.col("customer_id").str.starts_with("NEW"))["cltv"]
    assert (brand_new > 0).all() and (brand_new < two_years["cltv"].max()).all()
    assert two_years["cltv"].sum() > year["cltv"].sum()


def test_cancelled_customers_are_worth_nothing(world):
    snapshot = _snapshot(world, 60)
    model = fit_cltv(snapshot, history_start=world.config.start)
    predicted = model.predict(snapshot, 365).join(
        snapshot.select("customer_id", "is_cancelled"), on="customer_id")
    cancelled = predicted.filter(pl.col("is_cancelled"))
    assert cancelled.height > 0 and (cancelled["cltv"] == 0).all()
    assert predicted.filter(~pl.col("is_cancelled"))["cltv"].min() > 0


def test_prediction_against_the_revenue_that_came(world):
    report = cltv_report(world, world.config.start + timedelta(days=60))
    cltv, naive = report["cltv"], report["naive_last_90_days"]
    assert report["horizon_days"] == 89
    assert cltv["total_predicted"] == pytest.approx(cltv["total_actual"], rel=0.25)
    assert cltv["spearman"] > 0.4 and cltv["spearman"] > naive["spearman"]
    assert cltv["top_decile_share"] > 0.25  # 2.5x what a random decile earns
    assert report["predicted_365_total"] > cltv["total_predicted"]


def test_a_transactions_only_business_gets_values(world):
    features, _ = transactions_only(world)
    snapshot = features.filter(pl.col("snapshot_date") == world.config.start + timedelta(days=60))
    history = customer_history(snapshot)
    # No profile: born at the first order, which is therefore not a repeat order.
    repeat = (snapshot["orders_total"] - 1).clip(lower_bound=0).cast(pl.Float64)
    assert (history["orders"] == repeat).all() and snapshot["status"].null_count() == len(repeat)
    predicted = fit_cltv(snapshot).predict(snapshot, 730)
    assert np.isfinite(predicted["cltv"].to_numpy()).all() and predicted["cltv"].min() >= 0


def test_evaluation_counts_customers_without_revenue_as_zero():
    predicted = pl.DataFrame({"customer_id": [f"c{i}" for i in range(10)],
                              "cltv": [float(10 - i) for i in range(10)]})
    actual = pl.DataFrame({"customer_id": ["c0", "c1", "c9"], "revenue": [50.0, 30.0, 20.0]})
    result = evaluate_cltv(predicted, actual)
    assert result.total_predicted == 55.0 and result.total_actual == 100.0
    assert result.top_decile_share == 0.5  # the top decile is c0 alone
    assert result.customers == 10


HORIZON_EVAL = 30


def test_both_models_on_the_holdout_and_the_better_is_kept(world):
    """The MBG/NBD + Gamma-Gamma model and the boosted regressor on the same holdout window;
    the boosted one learns from the window before it."""
    days = world.features["snapshot_date"].unique().sort()
    cutoff = days.filter(days <= world.last_day - timedelta(days=HORIZON_EVAL)).max()
    earlier = cutoff - timedelta(days=HORIZON_EVAL)
    at = {d: world.features.filter(pl.col("snapshot_date") == d) for d in (cutoff, earlier)}
    assert all(f.height for f in at.values())
    report = compare_cltv(at, world.silver["payments"], cutoff, HORIZON_EVAL, world.config.start)
    models = report["models"]
    assert set(models) == {"bgnbd_gamma_gamma", "lightgbm_tweedie"}
    actual = actual_revenue(world.silver["payments"], cutoff, cutoff + timedelta(days=HORIZON_EVAL))
    # The customers known on the cutoff day (a later signup has no prediction to judge).
    actual = actual.join(at[cutoff].select("customer_id"), on="customer_id")
    for v in models.values():
        assert v["total_actual"] == pytest.approx(float(actual["revenue"].sum()))
        assert v["total_error"] == pytest.approx(v["total_predicted"] / v["total_actual"] - 1)
        assert 0 < v["top_decile_share"] <= 1 and v["mae_per_customer"] > 0
    best = min(models, key=lambda n: models[n]["mae_per_customer"])
    assert report["chosen"] == best and best in report["reason"]
    # Without the earlier snapshot only the probabilistic model can be judged.
    alone = compare_cltv({cutoff: at[cutoff]}, world.silver["payments"], cutoff, HORIZON_EVAL)
    assert list(alone["models"]) == ["bgnbd_gamma_gamma"]


def test_the_kept_boosted_model_travels_in_a_table_row_and_sets_the_level(world, tmp_path):
    """The boosted model written as table columns reads back to the same predictions; kept, it
    sets each customer's revenue over its own window, and the probabilistic curve carries that
    level to longer horizons (nothing for a cancelled customer)."""
    days = world.features["snapshot_date"].unique().sort()
    cutoff = days.filter(days <= world.last_day - timedelta(days=HORIZON_EVAL)).max()
    now = world.features.filter(pl.col("snapshot_date") == cutoff)
    earlier = world.features.filter(
        pl.col("snapshot_date") == cutoff - timedelta(days=HORIZON_EVAL))
    boosted = fit_boosted_cltv(earlier, actual_revenue(
        world.silver["payments"], cutoff - timedelta(days=HORIZON_EVAL), cutoff), HORIZON_EVAL)
    probabilistic = fit_cltv(now, world.config.start)
    row = {**{k: getattr(probabilistic, k) for k in
              ("r", "alpha", "a", "b", "p", "q", "gamma", "net_share", "history_start")},
           **boosted.to_row()}
    pl.DataFrame([row], schema_overrides=BOOSTED_COLUMNS).write_delta(tmp_path / "cltv")
    kept = KeptCltv.from_row(pl.read_delta(str(tmp_path / "cltv")).row(0, named=True))
    assert kept.kind == "lightgbm_tweedie" and kept.probabilistic == probabilistic
    np.testing.assert_array_equal(kept.boosted.predict(now)["cltv"], boosted.predict(now)["cltv"])

    level = boosted.predict(now).select("customer_id", level=pl.col("cltv").clip(0.0))
    window = kept.predict(now, HORIZON_EVAL).join(level, on="customer_id")
    live = window.join(now.select("customer_id", "is_cancelled"), on="customer_id").filter(
        ~pl.col("is_cancelled").fill_null(False))
    np.testing.assert_allclose(live["cltv"], live["level"], rtol=1e-9)
    year = kept.predict(now, 365).join(probabilistic.predict(now, 365).select(
        "customer_id", curve="cltv"), on="customer_id").join(
        probabilistic.predict(now, HORIZON_EVAL).select("customer_id", short="cltv"),
        on="customer_id").join(level, on="customer_id")
    expected = np.where(year["short"] > 0, year["level"] * year["curve"] / year["short"], 0.0)
    np.testing.assert_allclose(year["cltv"], expected, rtol=1e-9)
    longer = year.join(window.select("customer_id", short_cltv="cltv"), on="customer_id")
    assert (longer["cltv"] >= longer["short_cltv"] - 1e-9).all()
    # Without a boosted model the probabilistic one is what scores.
    alone = KeptCltv.from_row({k: v for k, v in row.items() if not k.startswith("boosted")})
    assert alone.kind == "bgnbd_gamma_gamma"
    assert alone.predict(now, 365).equals(probabilistic.predict(now, 365))
