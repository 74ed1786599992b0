"""One asset graph, two engines: the same small world through bronze, silver and gold on
CHURN_ENV=local (Polars over Delta) and CHURN_ENV=spark (local PySpark over Parquet) gives
equal tables."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.definitions import build_definitions
from churn_assets.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.settings import DOMAINS, Paths

pytest.importorskip("pyspark")
pytest.importorskip("dagster_pyspark")

START = date(2026, 1, 1)
DAYS = 5
TABLES = [f"silver.{d}" for d in DOMAINS] + [f"silver.{d}_exceptions" for d in DOMAINS] + [
    "gold.daily_activity", "gold.order_categories", "gold.customer_state",
    "gold.customer_categories", "gold.customer_features"]


def run_daily(paths: Paths, env: str) -> None:
    defs = build_definitions(paths, env=env)
    last = START + timedelta(days=DAYS - 1)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("churn_daily").execute_in_process(
            instance=instance, raise_on_error=False,
            tags={RANGE_START_TAG: START.isoformat(), RANGE_END_TAG: last.isoformat()})
    failures = [e.event_specific_data.error.message for e in result.all_events
                if e.is_step_failure]
    assert result.success, failures


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    from churn_assets.simulator import SimConfig, simulate

    home = tmp_path_factory.mktemp("engines") / "home"
    home.mkdir()
    simulate(Paths(home), SimConfig(customers=120, days=DAYS, start=START, seed=8))
    spark_home = home.parent / "spark_home"
    shutil.copytree(home, spark_home)
    local, spark = Paths(home), Paths(spark_home)
    run_daily(local, "local")
    run_daily(spark, "spark")
    return local, spark


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.select(sorted(frame.columns))
    return frame.sort(frame.columns, nulls_last=True)


@pytest.mark.parametrize("table", TABLES)
def test_every_silver_and_gold_table_is_equal_on_both_engines(worlds, table):
    local, spark = worlds
    layer, name = table.split(".")
    expected = canonical(pl.read_delta(str(local.lake / layer / name)))
    # The Spark store's own reader, so partition columns come back typed as written.
    from churn_assets.resources.spark import SparkTableStore
    from churn_assets_tests.spark import spark_session

    store = SparkTableStore(format="parquet", root=str(spark.lake / "spark"))
    spark_session()  # the store uses the active session
    got = pl.from_arrow(store.read(table).toArrow())
    got = canonical(got.select([c for c in expected.columns if c in got.columns]))
    assert got.columns == expected.columns
    assert got.height == expected.height > 0 or table.endswith("_exceptions")
    assert_frame_equal(got, expected, check_dtypes=False, check_exact=False, rel_tol=1e-9)
