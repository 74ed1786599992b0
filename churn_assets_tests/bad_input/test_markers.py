"""The completion marker is a contract: a drop that breaks it is refused on its own, loudly, and
bronze keeps what it held for that day; the other drops are ingested. Row for row, every record
of an accepted drop is in bronze or its quarantine."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from churn_assets.ingest.bronze import PARTITION_COLUMN
from churn_assets.ingest.landing import MARKER, DropError, find_drop, verify_drop, write_drop
from churn_assets.resources.landing import SparkLandingZone
from churn_assets_tests.bad_input.conftest import TINY_LAST, TINY_START, bronze, delta, rows_on

DAY2 = TINY_START + timedelta(days=1)
DAY3 = TINY_START + timedelta(days=2)


def records(drop) -> int:
    """Records in a drop's files, counted without our readers."""
    total = 0
    for path in drop.file_paths():
        if path.suffix == ".parquet":
            total += pq.ParquetFile(path).metadata.num_rows
        else:
            lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
            total += len(lines) - (1 if path.suffix == ".csv" else 0)
    return total


def held(paths, domain, day) -> int:
    rows = delta(paths, f"bronze.{domain}")
    quarantined = delta(paths, f"bronze.{domain}_quarantine")
    return rows_on(rows, PARTITION_COLUMN, day) + rows_on(quarantined, PARTITION_COLUMN, day)


def refusal(result, domain="payments"):
    (check,) = [e for e in result.get_asset_check_evaluations()
                if e.check_name == "drops_match_markers" and e.asset_key.path[-1] == domain]
    return check


def assert_good_days_reconcile(paths, domain, days):
    for day in days:
        assert held(paths, domain, day) == records(find_drop(paths.landing, domain, day)), day


@pytest.fixture
def ingested(tiny_ingested):
    return tiny_ingested


def test_marker_copied_from_another_day_is_refused(ingested, instance):
    paths = ingested
    folder3 = paths.landing / "payments" / DAY3.isoformat()
    before = held(paths, "payments", DAY3)
    shutil.rmtree(folder3)
    shutil.copytree(paths.landing / "payments" / DAY2.isoformat(), folder3)

    result = bronze(paths, instance, TINY_START, TINY_LAST, ["payments"])
    assert not result.success
    check = refusal(result)
    assert not check.passed
    assert f"payments/{DAY3}" in check.description and f"marker is for day {DAY2}" in check.description
    # Neither day lost its rows, nor did day 2's rows land twice.
    assert held(paths, "payments", DAY3) == before
    assert_good_days_reconcile(paths, "payments", [TINY_START, DAY2, TINY_LAST])


def test_marker_listing_no_files_beside_data_is_refused(ingested, instance):
    paths = ingested
    marker_path = paths.landing / "payments" / DAY2.isoformat() / MARKER
    marker = json.loads(marker_path.read_text())
    marker["files"] = {}
    marker_path.write_text(json.dumps(marker))
    before = held(paths, "payments", DAY2)

    result = bronze(paths, instance, TINY_START, TINY_LAST, ["payments"])
    assert not result.success
    assert "lists no files but the folder holds payments-" in refusal(result).description
    assert held(paths, "payments", DAY2) == before > 0


@pytest.mark.parametrize("change", ["same_size", "truncated", "missing"])
def test_file_changed_after_its_marker_is_refused(ingested, instance, change):
    paths = ingested
    drop = find_drop(paths.landing, "payments", DAY2)
    (path,) = drop.file_paths()
    content = path.read_bytes()
    if change == "same_size":
        path.write_bytes(content[:-2] + (b"9" if content[-2:-1] != b"9" else b"8") + content[-1:])
        expected = "SHA-256"
    elif change == "truncated":
        path.write_bytes(content[: len(content) // 2])
        expected = "bytes, the marker says"
    else:
        path.unlink()
        expected = "listed in the marker but missing"
    before = held(paths, "payments", DAY2)

    result = bronze(paths, instance, TINY_START, TINY_LAST, ["payments"])
    assert not result.success
    assert expected in refusal(result).description and path.name in refusal(result).description
    assert held(paths, "payments", DAY2) == before > 0
    assert_good_days_reconcile(paths, "payments", [TINY_START, DAY3, TINY_LAST])


def test_hadoop_style_empty_marker_fails_only_its_drop(tiny_world, instance):
    paths = tiny_world
    folder = paths.landing / "events" / DAY2.isoformat()
    (folder / MARKER).write_bytes(b"")
    with pytest.raises(DropError, match="Hadoop-style"):
        find_drop(paths.landing, "events", DAY2)

    result = bronze(paths, instance, TINY_START, TINY_LAST, ["events", "payments"])
    assert not result.success
    assert "Hadoop-style" in refusal(result, "events").description
    assert held(paths, "events", DAY2) == 0
    assert_good_days_reconcile(paths, "events", [TINY_START, DAY3, TINY_LAST])
    assert_good_days_reconcile(paths, "payments", [TINY_START, DAY2, DAY3, TINY_LAST])
    # The other domains' checks pass: one bad marker is not every run's failure.
    assert refusal(result, "payments").passed


def test_unlisted_files_are_reported_not_ingested(tiny_world, instance):
    paths = tiny_world
    folder = paths.landing / "payments" / DAY2.isoformat()
    (folder / "stray-export.csv").write_text("order_id,amount\nX,1\n")
    result = bronze(paths, instance, DAY2, DAY2, ["payments"])
    assert result.success
    check = refusal(result)
    assert check.passed
    assert check.metadata["unlisted_files"].value == {str(folder): ["stray-export.csv"]}
    assert_good_days_reconcile(paths, "payments", [DAY2])


def test_spark_landing_zone_uses_the_same_validation(tiny_world):
    """Both bronze paths find drops through LandingZone.checked_drop; no Spark session needed."""
    paths = tiny_world
    (paths.landing / "payments" / DAY2.isoformat() / MARKER).write_bytes(b"\n")
    zone = SparkLandingZone(root=str(paths.landing))
    with pytest.raises(DropError, match="Hadoop-style"):
        zone.checked_drop("payments", DAY2)
    drop, unlisted = zone.checked_drop("payments", DAY3)
    assert drop.day == DAY3 and unlisted == []


def test_a_deliberate_shrink_may_empty_a_day(tiny_world):
    paths = tiny_world
    write_drop(paths.landing, "payments", DAY2, {}, source_shrank=True)
    drop = find_drop(paths.landing, "payments", DAY2)
    assert drop.files == () and drop.source_shrank
    assert verify_drop(drop) == []
