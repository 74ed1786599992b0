"""Spark reading the landing files gives exactly the bronze batch of the Polars path: the same
rows, quarantine, record counts and reasons, for CSV, JSON lines and Parquet with bad records."""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import date, datetime

import polars as pl
import pytest

from churn_assets.ingest.bronze import QUARANTINE_SCHEMA, empty_bronze, ingest_drops
from churn_assets.ingest.landing import list_drops, write_drop
from churn_assets.ingest.readers import LandingFileError
from churn_assets.resources.spark.landing import ingest_drops_spark
from churn_assets.settings import DOMAINS, Paths
from churn_assets_tests.spark import spark_session

pytest.importorskip("pyspark")

INGESTED_AT = datetime(2026, 2, 1, 12, 30, 15, 123456)  # naive: both paths take it as UTC
DAY = date(2026, 1, 5)


@pytest.fixture(scope="module")
def spark():
    return spark_session()


def to_polars(frame) -> pl.DataFrame:
    return pl.from_arrow(frame.toArrow())


def assert_same_batch(spark, domain, drops, landing):
    expected = ingest_drops(domain, drops, INGESTED_AT, landing_root=landing)
    batch = ingest_drops_spark(spark, domain, drops, INGESTED_AT, landing_root=landing)
    rows, quarantine = to_polars(batch.rows), to_polars(batch.quarantine)

    assert dict(rows.schema) == dict(expected.rows.schema)  # column order aside
    key = ["_source_file", "_row_number"]
    assert rows.select(expected.rows.columns).sort(key).equals(expected.rows.sort(key))
    assert dict(quarantine.schema) == QUARANTINE_SCHEMA
    assert quarantine.sort(key).equals(expected.quarantine.sort(key))
    assert batch.records_in_files == expected.records_in_files
    assert batch.quarantine_reasons == expected.quarantine_reasons
    assert rows.height + quarantine.height == batch.records_in_files
    return batch, rows, quarantine


@pytest.mark.parametrize("domain", DOMAINS)
def test_dirty_world_matches_the_polars_path(spark, dirty_world_template, domain):
    landing = Paths(dirty_world_template).landing
    _, rows, _ = assert_same_batch(spark, domain, list_drops(landing, domain), landing)
    assert rows.height > 0


def test_hand_written_drops_with_every_kind_of_bad_record(spark, tmp_path):
    # Glob characters and a space in the path: Spark must read these files, not a pattern.
    landing = tmp_path / "land [1] {x}"
    csv = (
        b"interaction_id,customer_id,note\n"
        b'm1,c1,""\n'  # empty string, not null
        b"m2,c2\n"  # too few fields
        b"m3,c3,x,y\n"  # too many fields
        b'm4,"c4,"x"\n'  # stray quote
        b"\n"
        b'm5,"c,5","say ""hi"""\n'
    )
    rejected_only = b"interaction_id,campaign_id,only_here\nbad\n"  # no rows, one more column
    marketing = [
        write_drop(landing, "marketing", DAY, {"a.csv": csv, "b.csv": rejected_only}),
        write_drop(landing, "marketing", date(2026, 1, 6), {"c.csv": b"interaction_id\nm9\n"}),
    ]
    jsonl = (
        b'{"event_id": "e1", "customer_id": null, "device": ""}\n'  # null vs ""
        b'{"event_id": "e2", "extra": 3.50}\n'  # missing keys, a number kept as written
        b'{"event_id": "e3", "nested": {"a": 1}}\n'
        b"{not json}\n"
        b"[1, 2]\n"
        b"{}\n"
    )
    # Spark's file scan skips a zero-byte file: it must still count, as no records.
    files = {"e.jsonl": jsonl, "f.ndjson": b"{}\n", "g.jsonl": b"", "h.csv": b""}
    events = [write_drop(landing, "events", DAY, files)]
    parquet = io.BytesIO()
    pl.DataFrame(
        {
            "customer_id": ["c1", None],
            "signup_at": [datetime(2026, 1, 1, 8), None],
            "score": [1.5, 2.0],
            "tags": [["a"], []],
        }
    ).write_parquet(parquet)
    customers = [write_drop(landing, "customers", DAY, {"p.parquet": parquet.getvalue()})]

    _, rows, quarantine = assert_same_batch(spark, "marketing", marketing, landing)
    assert sorted(rows["interaction_id"]) == ["m1", "m5", "m9"] and quarantine.height == 4
    assert {"note", "only_here"} <= set(rows.columns)
    assert rows.filter(pl.col("interaction_id") == "m1")["note"].to_list() == [""]
    assert set(rows["_source_file"]) == {f"marketing/{DAY}/a.csv", "marketing/2026-01-06/c.csv"}
    _, rows, quarantine = assert_same_batch(spark, "events", events, landing)
    assert rows.height == 4 and quarantine.height == 3
    e1 = rows.filter(pl.col("event_id") == "e1")
    assert e1["customer_id"].to_list() == [None] and e1["device"].to_list() == [""]
    assert_same_batch(spark, "customers", customers, landing)


def test_no_drops_gives_empty_frames_with_the_bronze_schema(spark):
    batch = ingest_drops_spark(spark, "payments", [], INGESTED_AT)
    assert to_polars(batch.rows).equals(empty_bronze("payments"))
    assert dict(to_polars(batch.quarantine).schema) == QUARANTINE_SCHEMA
    assert batch.records_in_files == 0 and batch.quarantine_reasons == Counter()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("dup.csv", b"id,id\n1,2\n", "duplicate column name 'id'"),
        ("sheet.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("empty.parquet", b"", "cannot read Parquet"),  # never reaches the executors
    ],
)
def test_an_unusable_file_is_a_landing_file_error_naming_it(
    spark, tmp_path, name, content, message
):
    good = {"good.csv": b"id\n1\n"}
    drop = write_drop(tmp_path / "landing", "payments", DAY, {**good, name: content})
    with pytest.raises(LandingFileError, match=re.escape(message)) as caught:
        ingest_drops_spark(spark, "payments", [drop], INGESTED_AT)
    assert str(drop.path / name) in str(caught.value)
