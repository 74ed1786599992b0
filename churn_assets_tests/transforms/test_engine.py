"""``engine.map_frames``: a row-local Polars function applied where the rows are -- the whole
frame on Polars, each Arrow batch on the executors on Spark (``mapInArrow``), never a collect."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.transforms.engine import map_frames

pytest.importorskip("pyspark")

SCHEMA = {"customer_id": pl.String, "day": pl.Date, "doubled": pl.Float64, "note": pl.String}


def rows(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "customer_id": [f"C{i:04d}" for i in range(n)],
        "day": [date(2026, 1, 1 + i % 5) for i in range(n)],
        "value": [i * 0.5 for i in range(n)],
    })


def double(frame: pl.DataFrame) -> pl.DataFrame:
    # Returns Int-typed nulls for `note` and an extra column: map_frames casts and selects.
    return frame.with_columns(doubled=pl.col("value") * 2, note=pl.lit(None), extra=pl.lit(1))


@pytest.fixture(scope="module")
def spark():
    from churn_assets_tests.spark import spark_session

    return spark_session()


def test_polars_and_spark_give_the_same_typed_rows(spark):
    frame = rows(2_500)
    local = map_frames(frame.lazy(), double, SCHEMA)
    # Several partitions and small Arrow batches, so the function really runs per batch.
    native = spark.createDataFrame(frame.to_arrow()).repartition(3)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "400")
    try:
        mapped = map_frames(native, double, SCHEMA)
        got = pl.from_arrow(mapped.toArrow())
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert local.schema == pl.Schema(SCHEMA)
    assert got.columns == list(SCHEMA)
    assert_frame_equal(got.sort("customer_id"), local.sort("customer_id"), check_dtypes=False)


def test_spark_maps_in_the_plan_instead_of_collecting(spark):
    mapped = map_frames(spark.createDataFrame(rows(10).to_arrow()), double, SCHEMA)
    assert "MapInArrow" in mapped._jdf.queryExecution().optimizedPlan().toString()


def test_an_empty_frame_maps_to_the_empty_schema(spark):
    assert map_frames(rows(0), double, SCHEMA).schema == pl.Schema(SCHEMA)
    assert map_frames(spark.createDataFrame(rows(3).to_arrow()).limit(0), double,
                      SCHEMA).count() == 0


def test_other_frames_are_refused():
    with pytest.raises(TypeError):
        map_frames([1, 2, 3], double, SCHEMA)
