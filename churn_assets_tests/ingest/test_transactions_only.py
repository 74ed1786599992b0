"""A business with transactions only, as a new user brings it: import, run through a day before
the last landed one, then enrich with a customer export."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from churn_assets.cli import main
from churn_assets.ingest.importer import import_customers, import_transactions, parse_mapping
from churn_assets.ingest.landing import list_drops
from churn_assets.settings import Paths
from churn_assets.simulator.sparse import SparseRetailParams, draw_purchases, sparse_retail_config

START = date(2025, 1, 1)
DAYS = 24
HORIZON = 5
MAPPING = "customer_id=Customer,timestamp=When,amount=Total,order_id=Invoice"


def transactions_csv(folder: Path, customers: int = 120) -> tuple[Path, pl.DataFrame]:
    """A retailer's export (one line per purchase) drawn from the sparse-retail process, with
    a busier cohort so a 24-day history has repeat buyers."""
    config = sparse_retail_config(customers=customers, days=DAYS, start=START)
    bought = draw_purchases(config, SparseRetailParams(alpha=0.5, cohort_days=12),
                            np.random.default_rng(3))
    frame = pl.DataFrame({
        "Invoice": [f"INV{i}" for i in range(bought.customer.size)],
        "Customer": [f"K{c:04d}" for c in bought.customer],
        "When": pl.Series((bought.at * 1e6).astype(np.int64)).cast(pl.Duration("us")),
        "Total": bought.cents / 100,
    }).with_columns(pl.col("When") + pl.lit(START).cast(pl.Datetime("us")))
    path = folder / "orders.csv"
    frame.with_columns(pl.col("When").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(path)
    return path, frame


@pytest.fixture
def home(tmp_path, monkeypatch) -> Paths:
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.toml").write_text(
        f"[partitions]\nstart = {START}\n\n[labels]\nhorizon_days = {HORIZON}\n")
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # Dagster's run storage for `run` goes under the cwd
    return Paths(home)


def test_transactions_alone_derive_the_customers(tmp_path, home):
    source, orders = transactions_csv(tmp_path)
    report = import_transactions(source, parse_mapping(MAPPING), home)
    assert any("derived 120 customers" in note for note in report.notes), report.notes
    derived = pl.concat([pl.read_parquet(f) for d in list_drops(home.landing, "customers")
                         for f in d.file_paths()])
    assert derived.height == 120 and set(derived["status"]) == {"active"}
    first = orders.group_by("Customer").agg(pl.col("When").min()).sort("Customer")
    assert derived.sort("customer_id")["signup_at"].to_list() == [
        w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in first["When"]]
    # Importing the same file again changes no drop.
    revisions = {d.day: d.revision for d in list_drops(home.landing, "customers")}
    import_transactions(source, parse_mapping(MAPPING), home)
    assert {d.day: d.revision for d in list_drops(home.landing, "customers")} == revisions

    # A customer export replaces the derived profiles of the customers it names.
    export = tmp_path / "customers.csv"
    pl.DataFrame({"id": ["K0001", "K0002"], "tier": ["premium", "basic"],
                  "created": ["2024-06-01 10:00:00", "2024-07-01 10:00:00"]}).write_csv(export)
    enriched = import_customers(export, parse_mapping("customer_id=id,signup_at=created,segment=tier"),
                                home, as_of=START + timedelta(days=20))
    assert any("replaced 2 customer profiles" in note for note in enriched.notes)
    derived = pl.concat([pl.read_parquet(d.path / f) for d in list_drops(home.landing, "customers")
                         for f in d.files if f.startswith("derived-")])
    assert derived.height == 118 and not {"K0001", "K0002"} & set(derived["customer_id"])


def test_run_through_a_day_labels_what_it_ingested(tmp_path, home, capsys):
    source, _ = transactions_csv(tmp_path)
    import_transactions(source, parse_mapping(MAPPING), home)
    through = START + timedelta(days=DAYS - 8)
    assert main(["run", "--through", through.isoformat()]) == 0
    out = capsys.readouterr().out
    labelled = through - timedelta(days=HORIZON)
    assert f"churn labels for {START} .. {labelled}" in out
    labels = pl.read_delta(str(home.lake / "gold" / "churn_labels"))
    assert labels["snapshot_date"].max() == labelled
    features = pl.read_delta(str(home.lake / "gold" / "customer_features"))
    last = features.filter(pl.col("snapshot_date") == through)
    # Every buyer is a known customer (no orphans), active, with no attributes yet.
    assert last["status"].unique().to_list() == ["active"]
    assert last["segment"].is_null().all()
    assert last.height == pl.read_delta(str(home.lake / "silver" / "customers"))[
        "customer_id"].n_unique()
