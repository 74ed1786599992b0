"""The table-store contract, run on every store: Delta (Polars) and Spark (Parquet layout).

Each test here takes the parametrized ``store`` fixture, so a case written once holds for both
engines; a case that needs one engine's internals (Delta versions and commit retries, Parquet
directories, the Unity Catalog names) lives in that store's own module
(``test_delta.py``, ``spark/test_store.py``), which share this module's table, rows and windows.
The Spark store is skipped where pyspark or Java is missing.
"""

import shutil
from datetime import UTC, date, datetime, timedelta

import narwhals as nw
import polars as pl
import pytest

from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.store import DateWindow, SchemaMismatch, TableNotFound, TableStore
from churn_assets.steps.reads import to_polars

TABLE = "bronze.payments"
DAY = "payment_date"
SCHEMA = {
    DAY: pl.Date,
    "payment_id": pl.String,
    "amount": pl.Float64,
    "paid_at": pl.Datetime("us", "UTC"),
}


def jan(day: int) -> date:
    return date(2024, 1, day)


def days(first: int, last: int) -> DateWindow:
    """January ``first`` to ``last``, both included."""
    return DateWindow(jan(first), jan(last) + timedelta(days=1))


def payment_rows(window: DateWindow, per_day: int = 2, amount: float = 10.0) -> pl.DataFrame:
    rows = [(day, f"{day}-{i}") for day in window.days for i in range(per_day)]
    return pl.DataFrame(
        {
            DAY: [day for day, _ in rows],
            "payment_id": [payment_id for _, payment_id in rows],
            "amount": [amount] * len(rows),
            "paid_at": [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for d, _ in rows],
        },
        schema=SCHEMA,
    )


def rows_per_day(store: TableStore, table: str = TABLE) -> dict[date, int]:
    """Rows per partition day, counted by the store's own engine (the Spark tests share it)."""
    counts = nw.from_native(store.read(table)).group_by(DAY).agg(nw.len())
    return dict(to_polars(counts.to_native()).iter_rows())


def spark_session_or_skip():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java on PATH: local Spark needs Java 17")
    from churn_assets_tests.spark import spark_session

    session = spark_session()
    session.sparkContext.setLogLevel("ERROR")
    return session


@pytest.fixture(params=["delta", "spark"])
def store(request, tmp_path) -> TableStore:
    if request.param == "delta":
        return DeltaTableStore(root=str(tmp_path / "lake"))
    from churn_assets.resources.spark import SparkTableStore

    spark_session_or_skip()
    # No `spark` resource: the store takes the process's session (the shared test session).
    return SparkTableStore(format="parquet", root=str(tmp_path / "lake"))


@pytest.mark.parametrize(
    "as_wrong_type",
    [pl.col(DAY).cast(pl.String), pl.col(DAY).cast(pl.Datetime("us"))],
    ids=["string", "naive-datetime"],
)
def test_a_partition_column_that_is_not_a_date_is_refused(store, as_wrong_type):
    store.replace_window(TABLE, payment_rows(days(1, 2)), days(1, 2), DAY)
    wrong = payment_rows(days(3, 3)).with_columns(as_wrong_type)

    with pytest.raises(SchemaMismatch, match=rf"partition column '{DAY}' is .* must be Date"):
        store.replace_window(TABLE, wrong, days(3, 3), DAY)

    assert rows_per_day(store) == {jan(1): 2, jan(2): 2}


def test_rows_outside_the_window_are_refused(store):
    with pytest.raises(ValueError, match=r"2 of 6 rows .* outside the window .* 2024-01-03"):
        store.replace_window(TABLE, payment_rows(days(1, 3)), days(1, 2), DAY)
    assert not store.exists(TABLE)


def test_a_missing_table_names_itself_and_its_location(store):
    with pytest.raises(
        TableNotFound, match=r"'silver\.payments' does not exist at .*silver/payments"
    ):
        store.read("silver.payments")
    assert not store.exists("silver.payments")
