"""The sparse-retail preset against the published CDNOW summaries it is calibrated to (README,
"The sparse-retail preset"), read back through bronze and silver like any export; the three
departures from BG/NBD (replenishment cycles, fading before leaving, a holiday season) as seen in
that data; and the oracles its truth gives."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from churn_assets.cli import main
from churn_assets.ingest.landing import SIMULATOR, list_drops
from churn_assets.lab.evaluate import silver_from_landing
from churn_assets.settings import Paths, load_settings
from churn_assets.simulator import DirtConfig
from churn_assets.simulator.sparse import (
    CDNOW_SAMPLE_CUSTOMERS,
    SparseRetailParams,
    TrueState,
    expected_revenue,
    no_purchase_probability,
    simulate_sparse,
    sparse_retail_config,
)

CALIBRATION_WEEKS = 39


@pytest.fixture(scope="module")
def cdnow_sized(tmp_path_factory):
    """The CDNOW sample's size and span: 2,357 customers over 78 weeks, a clean export (dirt
    would drop a few rows in silver and blur the counts)."""
    paths = Paths(tmp_path_factory.mktemp("sparse"))
    config = sparse_retail_config(customers=CDNOW_SAMPLE_CUSTOMERS, dirt=DirtConfig.clean())
    summary = simulate_sparse(paths, config)
    payments = silver_from_landing(paths)["payments"]
    return paths, config, summary, payments


def test_matches_the_cdnow_summaries(cdnow_sized):
    paths, config, summary, payments = cdnow_sized
    orders = payments.filter(pl.col("status") == "paid").with_columns(
        week=(pl.col("event_date") - pl.lit(config.start)).dt.total_days() // 7)
    per_customer = orders.group_by("customer_id").agg(
        first=pl.col("created_at").min(),
        calibration=(pl.col("week") < CALIBRATION_WEEKS).sum(),
        total=pl.len())
    # Everyone is a first-quarter buyer (a cohort, as the CDNOW sample is).
    assert per_customer.height == CDNOW_SAMPLE_CUSTOMERS
    first_days = per_customer["first"].dt.date()
    assert first_days.min() >= config.start
    assert first_days.max() < config.start + timedelta(days=SparseRetailParams().cohort_days)
    # About 60 % make no repeat purchase in the 39-week calibration period.
    no_repeat = (per_customer["calibration"] == 1).mean()
    assert 0.55 <= no_repeat <= 0.65, no_repeat
    # A large share never comes back at all within the 78 weeks.
    assert 0.40 <= (per_customer["total"] == 1).mean() <= 0.60

    # Purchases weeks to months apart: the median gap between a customer's purchases.
    gaps = (orders.sort("customer_id", "created_at")
            .select(gap=(pl.col("created_at").diff().over("customer_id")).dt.total_days())
            .drop_nulls()["gap"])
    assert 14 <= gaps.median() <= 90, gaps.median()

    # Spend: about $35 a purchase (the published Gamma-Gamma estimates), heavy-tailed.
    amounts = orders["amount"].to_numpy()
    assert 30 <= amounts.mean() <= 40, amounts.mean()
    assert np.quantile(amounts, 0.99) >= 4 * np.median(amounts)
    per_customer_mean = orders.group_by("customer_id").agg(pl.col("amount").mean())["amount"]
    assert per_customer_mean.max() >= 8 * per_customer_mean.median()
    assert summary.churned_explicit == 0


def _paid_with_truth(paths, payments):
    truth = pl.read_parquet(paths.truth / "customers.parquet")
    return (payments.filter(pl.col("status") == "paid")
            .join(truth, on="customer_id", how="inner")
            .sort("customer_id", "created_at")
            .with_columns(gap=pl.col("created_at").diff().over("customer_id").dt.total_hours()
                          / 24.0))


def test_replenishment_buyers_are_regular(cdnow_sized):
    """A cycle buyer's gaps scatter less around their own mean than a Poisson buyer's (whose
    coefficient of variation is 1), and cycle buying is commoner for consumables."""
    paths, _, _, payments = cdnow_sized
    paid = _paid_with_truth(paths, payments).filter(pl.col("fading_date").is_null())
    cv = (paid.drop_nulls("gap").group_by("customer_id")
          .agg(pl.col("regularity").first(), n=pl.len(),
               cv=pl.col("gap").std() / pl.col("gap").mean())
          .filter(pl.col("n") >= 4))
    regular = cv.filter(pl.col("regularity") > 1)["cv"].median()
    poisson = cv.filter(pl.col("regularity") == 1)["cv"].median()
    assert regular < 0.55 < 0.8 < poisson, (regular, poisson)
    truth = pl.read_parquet(paths.truth / "customers.parquet").with_columns(
        cycle=pl.col("regularity") > 1,
        consumable=pl.col("favourite_category").is_in(["beauty", "grocery"]))
    share = dict(truth.group_by("consumable").agg(pl.col("cycle").mean()).iter_rows())
    assert 0.5 <= share[True] <= 0.7 and 0.15 <= share[False] <= 0.25, share


def test_customers_fade_before_they_leave(cdnow_sized):
    """After the purchase that starts a customer's fading phase, baskets are ~30 % smaller and
    gaps longer than the same customer's before it."""
    paths, _, _, payments = cdnow_sized
    paid = _paid_with_truth(paths, payments).filter(pl.col("fading_date").is_not_null())
    paid = paid.with_columns(fading=pl.col("event_date") >= pl.col("fading_date"))
    per = paid.group_by("customer_id").agg(
        before=pl.col("amount").filter(~pl.col("fading")).mean(),
        after=pl.col("amount").filter(pl.col("fading")).mean(),
        gap_before=pl.col("gap").filter(~pl.col("fading")).mean(),
        gap_after=pl.col("gap").filter(pl.col("fading")).mean()).drop_nulls()
    assert per.height > 100
    assert 0.6 <= (per["after"] / per["before"]).median() <= 0.8
    assert (per["gap_after"] / per["gap_before"]).median() > 1.5
    # Everyone who left faded first; fading is not leaving.
    truth = pl.read_parquet(paths.truth / "customers.parquet")
    left = truth.drop_nulls("churn_date")
    assert left["fading_date"].is_not_null().all()
    assert (left["churn_date"] >= left["fading_date"]).all()
    assert truth.filter(pl.col("fading_date").is_not_null() & pl.col("churn_date").is_null()
                        ).height > 0


def test_holiday_season(cdnow_sized):
    """November-December buys more a day than September-October, although fewer customers are
    still buying by then (a pure BG/NBD cohort only thins out)."""
    _, _, _, payments = cdnow_sized
    paid = payments.filter(pl.col("status") == "paid")

    def per_day(first: str, last: str) -> float:
        lo, hi = date.fromisoformat(first), date.fromisoformat(last)
        n = paid.filter(pl.col("event_date").is_between(lo, hi)).height
        return n / ((hi - lo).days + 1)

    assert per_day("2025-11-01", "2025-12-31") > 1.2 * per_day("2025-09-01", "2025-10-31")
    assert per_day("2026-01-01", "2026-02-28") < per_day("2025-11-01", "2025-12-31")


def test_oracles_reduce_to_bgnbd():
    """With the departures off, the probability of no purchase is BG/NBD's exp(-lambda H) and
    the simulated expected revenue its closed form (1 - exp(-lambda p H)) / p purchases."""
    pure = SparseRetailParams.pure()
    rate = np.array([0.002, 0.01, 0.05, 0.0])
    dropout = np.array([0.2, 0.5, 0.1, 0.3])
    state = TrueState(since=np.array([3.0, 40.0, 1.0, 5.0]), rate=rate,
                      regularity=np.ones(4), fading=np.zeros(4, dtype=bool),
                      gone=rate == 0, value=np.array([30.0, 50.0, 20.0, 40.0]),
                      dropout=dropout, window=np.full(4, 90.0))
    np.testing.assert_allclose(no_purchase_probability(state), np.exp(-rate * 90), rtol=1e-9)
    closed = -np.expm1(-rate * dropout * 90) / dropout * state.value
    np.testing.assert_allclose(expected_revenue(state, pure, runs=20_000), closed, rtol=0.05,
                               atol=0.05)
    # A cycle buyer who bought just now will not buy again soon; one who is overdue will.
    regular = TrueState(since=np.array([1.0, 60.0]), rate=np.full(2, 1 / 60),
                        regularity=np.full(2, 8.0), fading=np.zeros(2, dtype=bool),
                        gone=np.zeros(2, dtype=bool), value=np.full(2, 30.0),
                        dropout=np.full(2, 0.2), window=np.full(2, 20.0))
    fresh, due = no_purchase_probability(regular)
    assert fresh > 0.95 and due < 0.5


def test_truth_and_domains(cdnow_sized):
    paths, config, summary, _ = cdnow_sized
    landed = sorted(p.name for p in paths.landing.iterdir() if not p.name.startswith("_"))
    assert landed == ["customers", "payments"]
    # Every drop names the simulator as its writer, so `run` may hash with the local key.
    assert {d.source for domain in landed for d in list_drops(paths.landing, domain)} == {
        SIMULATOR}
    assert summary.rows["events"] == summary.rows["tickets"] == summary.rows["marketing"] == 0
    truth = pl.read_parquet(paths.truth / "customers.parquet")
    assert truth.height == CDNOW_SAMPLE_CUSTOMERS
    assert truth["purchase_rate_per_day"].min() >= 0
    # Dropping out happens after a repeat purchase, so nobody leaves before signing up.
    left = truth.drop_nulls("churn_date")
    assert (left["churn_date"] > left["signup_date"]).all()
    assert summary.churned == left.height


def test_cli_preset_is_reproducible(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "a"))
    args = ["simulate", "--preset", "sparse-retail", "--customers", "300", "--days", "120"]
    assert main(args) == 0
    assert "300 customers over 120 days from 2025-01-01" in capsys.readouterr().out
    settings = load_settings(Paths(tmp_path / "a"))
    assert (settings.model.training_days, settings.model.snapshot_every_days) == (365, 7)
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "b"))
    assert main(args) == 0
    files = sorted((tmp_path / "a" / "landing" / "payments").rglob("*.csv"))
    assert files
    for f in files:
        twin = tmp_path / "b" / f.relative_to(tmp_path / "a")
        assert twin.read_bytes() == f.read_bytes()
    assert main([*args, "--until", "2025-02-01"]) == 2
