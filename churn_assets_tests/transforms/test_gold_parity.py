"""The gold transforms give the same answers on PySpark as on Polars.

The hand-built world of ``test_gold_transforms`` runs through the incremental path on both
engines, resumed from the stored state of 03-09 for the two days with the edge cases: on 03-10
late rows arrive and a session dated 03-11 arrives early; on 03-11 that session falls due.
Spark's "store" is a round trip through Arrow, as a table write and read would be. (A whole
chain from an empty state is Polars-only, in ``test_gold_transforms``: each Spark day costs
seconds of JVM round trips and query planning.) Floats are compared within a tolerance: the
engines may sum in a different order.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.transforms.dates import days_since, epoch_day, in_window
from churn_assets.transforms.gold import FEATURE_SCHEMA, CustomerState
from churn_assets.transforms.labels import churn_labels
from churn_assets_tests.transforms.test_gold import (
    Resume,
    S,
    collect,
    resume_after,
    run_chain,
    world,
)

pytest.importorskip("pyspark")


# Tiny frames: compiling whole-stage code and re-planning adaptively cost more than they save.
# Set for this module only (the session is shared), results do not depend on them.
FAST_FOR_TINY_DATA = {"spark.sql.codegen.wholeStage": "false", "spark.sql.adaptive.enabled": "false"}


@pytest.fixture(scope="module")
def spark():
    from churn_assets_tests.spark import spark_session

    session = spark_session()
    before = {key: session.conf.get(key, None) for key in FAST_FOR_TINY_DATA}
    for key, value in FAST_FOR_TINY_DATA.items():
        session.conf.set(key, value)
    yield session
    for key, value in before.items():
        if value is None:
            session.conf.unset(key)
        else:
            session.conf.set(key, value)


def to_spark(spark, frame: Any) -> Any:
    return spark.createDataFrame(collect(frame).to_arrow())


def assert_same(polars_out: Any, spark_out: Any, key: list[str]) -> None:
    expected, actual = collect(polars_out).sort(key), collect(spark_out).sort(key)
    assert_frame_equal(actual, expected, check_exact=False, rel_tol=1e-9)


@pytest.fixture(scope="module")
def worlds(spark) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    local = world()
    return local, {name: to_spark(spark, frame) for name, frame in local.items()}


def test_day_arithmetic_agrees(spark):
    days = [date(1970, 1, 1) + timedelta(days=n) for n in range(0, 60_000, 997)]
    days += [date(2000, 2, 29), date(2100, 3, 1), date(2024, 12, 31), S]
    local = pl.DataFrame({"d": days})

    def compute(frame: Any) -> Any:
        return nw.from_native(frame).lazy().select(
            "d", n=epoch_day("d"), since=days_since("d", S), month=in_window("d", S, 30),
        ).to_native()

    expected = collect(compute(local))
    assert expected["n"].to_list() == [(d - date(1970, 1, 1)).days for d in days]
    assert_same(expected, compute(to_spark(spark, local)), ["d"])


def test_incremental_path_agrees(spark, worlds):
    local, remote = worlds
    days = [S, S + timedelta(days=1)]
    start = resume_after(local, S - timedelta(days=1))
    on_polars = run_chain(local, days, start=start)
    remote_start = Resume(CustomerState(*(to_spark(spark, f) for f in start.state)),
                          to_spark(spark, start.activity), to_spark(spark, start.categories))
    on_spark = run_chain(remote, days, store=lambda frame: to_spark(spark, frame),
                         start=remote_start)
    for day in days:
        assert dict(on_spark[day].schema) == dict(on_polars[day].schema), day
        assert_same(on_polars[day], on_spark[day], ["customer_id"])
    assert on_spark[S].width == len(FEATURE_SCHEMA) and on_spark[S].height == 5


def test_labels_agree(worlds):
    local, remote = worlds
    labels = [churn_labels(frames["payments"], frames["payments"], frames["customers"], S, 7)
              for frames in (local, remote)]
    assert_same(labels[0], labels[1], ["customer_id"])
    assert collect(labels[1])["reason"].to_list().count("cancelled") == 1
