"""The sparse-retail preset against the published CDNOW summaries it is calibrated to (README,
"Simulate a business"), read back through bronze and silver like any export."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from churn_assets.cli import main
from churn_assets.lab.evaluate import silver_from_landing
from churn_assets.settings import Paths, load_settings
from churn_assets.simulator import DirtConfig
from churn_assets.simulator.sparse import (
    CDNOW_SAMPLE_CUSTOMERS,
    SparseRetailParams,
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


def test_truth_and_domains(cdnow_sized):
    paths, config, summary, _ = cdnow_sized
    landed = sorted(p.name for p in paths.landing.iterdir() if not p.name.startswith("_"))
    assert landed == ["customers", "payments"]
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
