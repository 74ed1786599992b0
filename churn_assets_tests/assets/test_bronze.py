"""Bronze on a dirty simulated world: every record accounted for, reasons that point at the line,
idempotent reruns, re-drops, schema evolution, absent domains, and no PII in metadata."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest

from churn_assets.ingest.bronze import PARTITION_COLUMN, contiguous_runs
from churn_assets.ingest.columns import LATE_COLUMNS
from churn_assets.ingest.landing import list_drops, write_drop
from churn_assets.settings import DOMAINS, Paths
from churn_assets_tests.conftest import WORLD_DAYS, WORLD_START, materialize_bronze

LAST = WORLD_START + timedelta(days=WORLD_DAYS + 3)  # late records land after the last day


def records_in_landing(paths: Paths, domain: str) -> int:
    """Count records the way a person would, without our readers: non-blank lines / Parquet rows."""
    total = 0
    for drop in list_drops(paths.landing, domain):
        for path in drop.file_paths():
            if path.suffix == ".parquet":
                total += pq.ParquetFile(path).metadata.num_rows
                continue
            lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
            total += len(lines) - (1 if path.suffix == ".csv" else 0)
    return total


def table(paths: Paths, name: str) -> pl.DataFrame:
    return pl.read_delta(str(paths.lake / name.replace(".", "/")))


@pytest.fixture(scope="module")
def ingested(dirty_world_template, tmp_path_factory):
    """One ingested copy of the dirty world shared by the read-only tests of this module."""
    home = tmp_path_factory.mktemp("ingested") / "home"
    shutil.copytree(dirty_world_template, home)
    paths = Paths(home)
    with dg.instance_for_test() as instance:
        result = materialize_bronze(paths, WORLD_START, LAST, instance)
        assert result.success
        logs = instance.all_logs(result.run_id)
    return paths, result, logs


@pytest.fixture
def ingested_copy(dirty_world, instance):
    """A private ingested world for tests that change it."""
    result = materialize_bronze(dirty_world, WORLD_START, LAST, instance)
    assert result.success
    return dirty_world


def test_every_record_is_in_bronze_or_quarantine(ingested):
    paths, result, _ = ingested
    checks = {
        e.asset_key.path[-1]: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "reconciled_with_landing"
    }
    assert set(checks) == set(DOMAINS)
    for domain in DOMAINS:
        expected = records_in_landing(paths, domain)
        bronze = table(paths, f"bronze.{domain}").height
        quarantined = table(paths, f"bronze.{domain}_quarantine").height
        assert expected > 0
        assert bronze + quarantined == expected, domain
        assert checks[domain].passed
        assert checks[domain].metadata["records_in_files"].value == expected
    # The dirty world has structurally broken lines in the text formats.
    assert table(paths, "bronze.payments_quarantine").height > 0
    assert table(paths, "bronze.events_quarantine").height > 0


def test_quarantine_names_file_line_and_reason(ingested):
    paths, _, _ = ingested
    bad = table(paths, "bronze.payments_quarantine")
    assert bad["reason"].null_count() == 0 and bad["reason"].str.len_chars().min() > 5
    for row in bad.head(10).iter_rows(named=True):
        lines = (paths.landing / row["_source_file"]).read_text(errors="replace").split("\n")
        assert lines[row["_row_number"] - 1].rstrip("\r") == row["raw"]


def test_bronze_rows_carry_ingestion_metadata(ingested):
    paths, _, _ = ingested
    payments = table(paths, "bronze.payments")
    for column in ("_source_file", "_row_number", "_batch_id", "_ingested_at", PARTITION_COLUMN):
        assert payments[column].null_count() == 0, column
    batch_ids = {d.batch_id for d in list_drops(paths.landing, "payments")}
    assert set(payments["_batch_id"].unique()) <= batch_ids
    # Rows as delivered: every data column stays text.
    assert payments.schema["amount"] == pl.String


def test_rerunning_a_range_does_not_duplicate(ingested_copy, instance):
    paths = ingested_copy
    before = {d: table(paths, f"bronze.{d}").height for d in DOMAINS}
    result = materialize_bronze(paths, WORLD_START, LAST, instance)
    assert result.success
    assert {d: table(paths, f"bronze.{d}").height for d in DOMAINS} == before


def test_redrop_replaces_only_its_day(ingested_copy, instance):
    paths = ingested_copy
    day = WORLD_START + timedelta(days=2)
    before = table(paths, "bronze.payments")
    header = next(d for d in list_drops(paths.landing, "payments") if d.day == day)
    first_file = header.file_paths()[0]
    head = first_file.read_bytes().split(b"\n")[0]
    row = b",".join(b"x" for _ in head.split(b","))
    smaller = {first_file.name: head + b"\n" + row + b"\n"}
    write_drop(paths.landing, "payments", day, smaller)

    # Fewer records than bronze holds for the day: refused unless the marker says it shrank.
    refused = materialize_bronze(paths, day, day, instance)
    assert not refused.success
    assert table(paths, "bronze.payments").equals(before)
    write_drop(paths.landing, "payments", day, smaller, source_shrank=True)
    assert materialize_bronze(paths, day, day, instance).success
    after = table(paths, "bronze.payments")
    assert after.filter(pl.col(PARTITION_COLUMN) == day).height == 1
    others = pl.col(PARTITION_COLUMN) != day
    assert after.filter(others).height == before.filter(others).height


def test_new_column_appears_mid_history(ingested):
    paths, _, _ = ingested
    payments = table(paths, "bronze.payments")
    (late,) = LATE_COLUMNS["payments"]
    assert late in payments.columns
    days_with = payments.filter(pl.col(late).is_not_null())[PARTITION_COLUMN]
    days_without = payments.filter(pl.col(late).is_null())[PARTITION_COLUMN]
    assert days_with.min() > days_without.min()


def test_no_pii_in_run_metadata_or_logs(ingested):
    paths, _, logs = ingested
    customers = table(paths, "bronze.customers")
    emails = [e for e in customers["email"].drop_nulls().unique().to_list() if "@" in e][:50]
    assert emails
    logged = "\n".join(
        str(record.dagster_event or "") + (record.user_message or "")
        for record in logs
    )
    assert not [e for e in emails if e in logged]


def test_absent_domains_are_empty_tables_not_errors(tmp_path, instance):
    paths = Paths(tmp_path / "home")
    day = date(2026, 2, 1)
    write_drop(paths.landing, "payments", day, {
        "payments.csv": b"transaction_id,customer_id,amount,created_at\nt1,c1,1.5,2026-02-01T09:00:00Z\n"
    })
    result = materialize_bronze(paths, day, day, instance)
    assert result.success
    assert table(paths, "bronze.payments").height == 1
    for domain in ("customers", "events", "tickets", "marketing"):
        assert table(paths, f"bronze.{domain}").height == 0


def test_partial_drop_is_not_ingested(tmp_path, instance):
    paths = Paths(tmp_path / "home")
    day = date(2026, 2, 1)
    folder = paths.landing / "payments" / day.isoformat()
    folder.mkdir(parents=True)
    (folder / "payments.csv").write_bytes(b"transaction_id,customer_id\nt1,c1\n")
    result = materialize_bronze(paths, day, day, instance)
    assert result.success
    assert table(paths, "bronze.payments").height == 0


def test_commit_runs_are_consecutive_days_bounded_by_count_and_size():
    days = [date(2026, 1, d) for d in (1, 2, 3, 5, 6, 7, 8)]
    assert contiguous_runs(days, max_days=3) == [
        (date(2026, 1, 1), date(2026, 1, 4)),
        (date(2026, 1, 5), date(2026, 1, 8)),
        (date(2026, 1, 8), date(2026, 1, 9)),
    ]
    size = dict.fromkeys(days, 10) | {date(2026, 1, 2): 100}
    assert contiguous_runs(days, max_days=31, size=size, max_size=50) == [
        (date(2026, 1, 1), date(2026, 1, 2)),
        (date(2026, 1, 2), date(2026, 1, 3)),  # a day bigger than the bound still gets a run
        (date(2026, 1, 3), date(2026, 1, 4)),
        (date(2026, 1, 5), date(2026, 1, 9)),
    ]
