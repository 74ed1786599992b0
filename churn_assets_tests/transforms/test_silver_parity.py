"""Silver parity: the same bronze through ``clean`` on Polars and on PySpark gives the same rows,
rejects and duplicates; and each engine helper in ``transforms/engine.py`` agrees across engines.

One Spark session for the module (start-up dominates the run time).
"""

from __future__ import annotations

import hashlib
from datetime import date

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.settings import DOMAINS
from churn_assets.transforms import engine
from churn_assets.transforms.contracts import NATURAL_KEYS
from churn_assets.transforms.silver import clean
from churn_assets_tests.spark import spark_session
from churn_assets_tests.transforms.test_silver import KEY, bronze, customer, tiny_world_bronze

pytest.importorskip("pyspark")

LINEAGE_ORDER = ["arrival_date", "_source_file", "_row_number"]


@pytest.fixture(scope="module")
def spark():
    session = spark_session()
    session.sparkContext.setLogLevel("ERROR")
    return session


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, pl.DataFrame]:
    return tiny_world_bronze(tmp_path_factory.mktemp("parity_world"))


def to_spark(spark, frame: pl.DataFrame):
    return spark.createDataFrame(frame.to_arrow())


def to_polars(frame) -> pl.DataFrame:
    """Any narwhals frame as an eager Polars frame (Spark timestamps arrive in UTC)."""
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect(backend="polars")
    return frame.to_native()


def assert_same(spark_frame, polars_frame) -> None:
    left, right = to_polars(spark_frame), to_polars(polars_frame)
    assert left.columns == right.columns
    # Each bronze row appears once, so its lineage orders both sides the same way.
    assert_frame_equal(left.sort(LINEAGE_ORDER), right.sort(LINEAGE_ORDER), rel_tol=1e-9)


def both(spark, domain: str, frame: pl.DataFrame):
    return clean(domain, to_spark(spark, frame), None, KEY), clean(domain, frame, None, KEY)


# Prior keys reach ``clean`` as a Spark frame, or as a Polars frame it brings to Spark itself.
PRIOR_ON_SPARK = {"customers": True, "payments": False, "events": True, "tickets": False,
                  "marketing": True}


@pytest.mark.parametrize("domain", DOMAINS)
def test_clean_gives_the_same_result_on_both_engines(spark, world, domain):
    """Typing, rejects, within-window and cross-day dedupe (a few keys already in silver; a
    timestamp among them for customers and tickets) on the tiny dirty world."""
    frame = world[domain]
    prior = to_polars(clean(domain, frame, None, KEY).rows).select(NATURAL_KEYS[domain]).head(10)
    on_polars = clean(domain, frame, prior, KEY)
    # Every prior key is recognized (a key delivered twice in the window is flagged twice).
    earlier = to_polars(on_polars.duplicates).filter(pl.col("duplicate_of") == "earlier_day")
    assert earlier["natural_key"].n_unique() == prior.height
    spark_prior = to_spark(spark, prior) if PRIOR_ON_SPARK[domain] else prior
    on_spark = clean(domain, to_spark(spark, frame), spark_prior, KEY)
    assert engine.backend(on_spark.rows) == "spark"
    for name in ("rows", "rejects", "duplicates"):
        assert_same(getattr(on_spark, name), getattr(on_polars, name))


def test_hand_written_edge_cases_agree(spark):
    """Offsets, placeholders, number shapes and hashing of non-ASCII text on both engines."""
    rows = [
        customer(customer_id=f"C{i}", updated_at=stamp, email=email, signup_at=signup)
        for i, (stamp, email, signup) in enumerate([
            ("2026-01-22T14:20:25+05:30", "Zoë.Müller@Example.de", "2025-01-01T00:00:00.5Z"),
            ("2026-01-22T08:50:25Z", " n/a ", "2025-01-01 00:00:00"),
            ("2026-01-22T03:50:25-0500", "x@y.z", "2025-02-30T00:00:00Z"),
            ("2026-01-22T23:59:59.999999-08:00", None, "0000-00-00 00:00:00"),
        ])
    ]
    on_spark, on_polars = both(spark, "customers", bronze("customers", *rows))
    for name in ("rows", "rejects", "duplicates"):
        assert_same(getattr(on_spark, name), getattr(on_polars, name))
    hashed = to_polars(on_spark.rows).sort("customer_id")["email_hash"][0]
    assert hashed == hashlib.sha256(f"{KEY}:zoë.müller@example.de".encode()).hexdigest()


def test_numbers_parse_alike(spark):
    texts = ["1e3", "+5", "-0", "12.", ".5", "007", "99999999999999999999", None]
    frame = pl.DataFrame({"t": texts})
    results = []
    for native in (frame, to_spark(spark, frame)):
        lazy = nw.from_native(native).lazy()
        parsed = engine.parse_numbers(lazy, {"f": "t"}, "float")
        parsed = engine.parse_numbers(parsed, {"i": "t"}, "int")
        results.append(to_polars(parsed).select("f", "i"))
    assert_frame_equal(results[0], results[1], check_dtypes=False)
    assert results[0]["f"].to_list()[:5] == [1000.0, 5.0, 0.0, 12.0, 0.5]


def test_utc_date_does_not_depend_on_the_session_time_zone(spark):
    """Spark's own ``to_date`` would use the session zone; the helper must not."""
    frame = pl.DataFrame({"t": ["2026-01-22T23:30:00+00:00", "2026-01-23T00:30:00+00:00"]})
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        lazy = engine.parse_utc_timestamps(nw.from_native(to_spark(spark, frame)), {"ts": "t"})
        days = engine.utc_date(lazy, "ts", "day").select("day").collect(backend="polars")
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert days["day"].to_list() == [date(2026, 1, 22), date(2026, 1, 23)]
