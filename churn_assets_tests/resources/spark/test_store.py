"""The table-store contract on ``SparkTableStore(format="parquet")`` and a local Spark session.

The cases every store keeps are in ``resources/test_store_contract.py`` (run on this store too);
these are the Spark store's own: its Parquet directories and metadata file. The Databricks
layout (``format="delta"``) cannot run here; its Spark-free pieces (names, the ``replaceWhere``
predicate, writer options) are tested at the bottom.

No ``from __future__ import annotations``: Dagster resolves the asset's annotations at import.
"""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.resources.spark import (
    META_FILE,
    SparkTableStore,
    delta_write_options,
    partition_directory_name,
    unity_catalog_name,
    window_predicate,
)
from churn_assets.resources.store import DateWindow, SchemaMismatch, TableStore

# The same table, rows and windows as the contract tests that run on every store.
from churn_assets_tests.resources.test_store_contract import (
    DAY,
    SCHEMA,
    TABLE,
    days,
    jan,
    payment_rows,
    rows_per_day,
    spark_session_or_skip,
)


def to_polars(frame) -> pl.DataFrame:
    """A Spark frame as Polars, through Arrow (the session is UTC, so timestamps arrive UTC)."""
    return pl.from_arrow(frame.toArrow())


def sorted_rows(frame) -> pl.DataFrame:
    return to_polars(frame).sort("payment_id")


@pytest.fixture(scope="module")
def spark():
    return spark_session_or_skip()


@pytest.fixture
def store(spark, tmp_path) -> SparkTableStore:
    # No `spark` resource: the store takes the process's session (the shared test session).
    return SparkTableStore(format="parquet", root=str(tmp_path / "lake"))


# ── Windows ──────────────────────────────────────────────────────────────────────────────────────


def test_rerunning_a_window_is_idempotent_and_a_polars_frame_reads_back_equal(store):
    frame = payment_rows(days(1, 3))
    first = store.replace_window(TABLE, frame, days(1, 3), DAY)
    second = store.replace_window(TABLE, frame.lazy(), days(1, 3), DAY)

    assert (first.rows_written, second.rows_written) == (6, 6)
    back = store.read(TABLE)
    assert to_polars(back).columns == list(SCHEMA)
    assert_frame_equal(sorted_rows(back), frame.sort("payment_id"))


def test_writing_one_window_never_overwrites_another(store):
    store.replace_window(TABLE, payment_rows(days(1, 1), per_day=3), days(1, 1), DAY)
    store.replace_window(TABLE, payment_rows(days(2, 3), per_day=1), days(2, 3), DAY)
    store.replace_window(TABLE, payment_rows(days(1, 1), per_day=4), days(1, 1), DAY)

    assert rows_per_day(store) == {jan(1): 4, jan(2): 1, jan(3): 1}


def test_an_empty_frame_clears_its_window_and_only_its_window(store):
    store.replace_window(TABLE, payment_rows(days(1, 4)), days(1, 4), DAY)
    location = store.location(TABLE)

    written = store.replace_window(TABLE, payment_rows(days(2, 3)).clear(), days(2, 3), DAY)

    assert written.rows_written == 0
    assert rows_per_day(store) == {jan(1): 2, jan(4): 2}
    assert not (Path(location) / partition_directory_name(DAY, jan(2))).exists()


def test_a_window_with_fewer_days_than_before_clears_the_missing_days(store):
    store.replace_window(TABLE, payment_rows(days(1, 3)), days(1, 3), DAY)

    store.replace_window(TABLE, payment_rows(days(2, 2)), days(1, 3), DAY)

    assert rows_per_day(store) == {jan(2): 2}


def test_an_empty_frame_creates_an_empty_table(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)).clear(), days(1, 1), DAY)

    assert store.exists(TABLE)
    assert store.count_rows(TABLE) == 0
    assert to_polars(store.read(TABLE)).schema == pl.Schema(SCHEMA)


def test_read_and_count_a_window(store):
    store.replace_window(TABLE, payment_rows(days(1, 5)), days(1, 5), DAY)

    window = to_polars(store.read(TABLE, days(2, 3), DAY, columns=["payment_id"]))

    assert window.columns == ["payment_id"]
    assert sorted(window["payment_id"].str.slice(0, 10).unique()) == ["2024-01-02", "2024-01-03"]
    assert store.count_rows(TABLE, days(2, 4), DAY) == 6
    assert store.count_rows(TABLE) == 10


# ── Schemas ──────────────────────────────────────────────────────────────────────────────────────


def test_new_columns_need_permission_and_missing_ones_are_null(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)
    with_channel = payment_rows(days(2, 2)).with_columns(channel=pl.lit("web")).drop("amount")

    with pytest.raises(SchemaMismatch, match=r"no columns \['channel'\].*allow_new_columns=True"):
        store.replace_window(TABLE, with_channel, days(2, 2), DAY)
    assert rows_per_day(store) == {jan(1): 2}

    written = store.replace_window(TABLE, with_channel, days(2, 2), DAY, allow_new_columns=True)

    assert written.new_columns == ("channel",)
    back = to_polars(store.read(TABLE)).group_by(DAY).agg(
        pl.col("channel").first(), pl.col("amount").null_count()
    )
    assert sorted(back.iter_rows()) == [(jan(1), None, 0), (jan(2), "web", 2)]


def test_a_type_change_is_refused(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)
    as_text = payment_rows(days(2, 2)).with_columns(pl.col("amount").cast(pl.String))

    with pytest.raises(SchemaMismatch, match="'amount' is double in the table but string"):
        store.replace_window(TABLE, as_text, days(2, 2), DAY)


def test_timestamps_round_trip_as_utc(store, spark):
    naive_noon = datetime(2024, 1, 1, 12)
    frame = pl.DataFrame(
        {
            DAY: [jan(1)],
            "naive": [naive_noon],  # taken as UTC
            "berlin": pl.Series([naive_noon]).dt.replace_time_zone("Europe/Berlin"),
            "nanos": pl.Series([naive_noon]).dt.replace_time_zone("UTC").dt.cast_time_unit("ns"),
            "visits": pl.Series([3], dtype=pl.UInt32),
            "channel": pl.Series(["web"], dtype=pl.Categorical),
        }
    )
    store.replace_window("bronze.events", frame, days(1, 1), DAY)
    # The same Polars types again are not a "type change"; nor is a Spark frame of the same rows.
    store.replace_window("bronze.events", nw.from_native(frame), days(1, 1), DAY)
    store.replace_window("bronze.events", store.read("bronze.events"), days(1, 1), DAY)

    back = to_polars(store.read("bronze.events"))
    utc = pl.Datetime("us", "UTC")
    assert dict(back.schema) == {
        DAY: pl.Date, "naive": utc, "berlin": utc, "nanos": utc, "visits": pl.Int64,
        "channel": pl.String,
    }
    assert back.row(0, named=True)["naive"] == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert back.row(0, named=True)["berlin"] == datetime(2024, 1, 1, 11, tzinfo=UTC)
    # A naive Spark timestamp (TIMESTAMP_NTZ) is taken as UTC too.
    ntz = spark.sql(
        "SELECT DATE'2024-01-02' AS payment_date, TIMESTAMP_NTZ'2024-01-02 12:00:00' AS naive"
    )
    store.replace_window("bronze.events", ntz, days(2, 2), DAY)
    second = to_polars(store.read("bronze.events", days(2, 2), DAY))
    assert second["naive"].to_list() == [datetime(2024, 1, 2, 12, tzinfo=UTC)]


def test_append_and_overwrite(store):
    store.append("gold.scores", pl.DataFrame({"customer_id": ["a"], "score": [0.1]}))
    store.append("gold.scores", pl.DataFrame({"customer_id": ["b"], "score": [0.2]}))
    assert store.count_rows("gold.scores") == 2

    result = store.overwrite("gold.scores", pl.DataFrame({"customer_id": ["c"], "band": ["high"]}))

    assert result.rows_written == 1
    assert to_polars(store.read("gold.scores")).to_dicts() == [{"customer_id": "c", "band": "high"}]


def test_the_table_keeps_its_schema_beside_the_data(store, tmp_path):
    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)

    table = tmp_path / "lake" / "bronze" / "payments"
    assert store.location(TABLE) == str(table)
    visible = sorted(p.name for p in table.iterdir() if not p.name.startswith("."))
    assert visible == [META_FILE, partition_directory_name(DAY, jan(1))]


# ── In a Dagster run, with the `spark` environment's resources ───────────────────────────────────

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-08")


@dg.asset(key_prefix="bronze", partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def payments(context: dg.AssetExecutionContext, store: TableStore) -> dg.MaterializeResult:
    window = DateWindow.from_time_window(context.partition_time_window)
    written = store.replace_window(TABLE, payment_rows(window), window, DAY)
    return dg.MaterializeResult(metadata={"rows": written.rows_written})


@dg.asset(deps=[payments])
def payments_overview(store: TableStore) -> dg.MaterializeResult:
    """Unpartitioned, downstream of a daily table: sees every partition, through narwhals."""
    frame = nw.from_native(store.read(TABLE))
    counted = frame.select(nw.len().alias("rows"), nw.col(DAY).n_unique().alias("days"))
    return dg.MaterializeResult(metadata=counted.collect(backend="polars").rows(named=True)[0])


def test_a_backfill_and_its_downstream_through_the_spark_environment(spark, tmp_path):
    from churn_assets.resources import build_resources
    from churn_assets.settings import Paths

    resources = build_resources("spark", Paths(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        backfill = dg.materialize(
            [payments, payments_overview],
            selection=[payments],
            tags={
                "dagster/asset_partition_range_start": "2024-01-01",
                "dagster/asset_partition_range_end": "2024-01-03",
            },
            resources=resources,
            instance=instance,
        )
        overview = dg.materialize(
            [payments, payments_overview], selection=[payments_overview],
            resources=resources, instance=instance,
        )
    assert backfill.success and overview.success
    [event] = overview.asset_materializations_for_node("payments_overview")
    assert {k: v.value for k, v in event.metadata.items()} == {"rows": 6, "days": 3}
    assert (tmp_path / "home" / "lake" / "spark" / "bronze" / "payments" / META_FILE).exists()


# ── The Databricks layout's Spark-free pieces ────────────────────────────────────────────────────


def test_unity_catalog_names():
    assert unity_catalog_name("main", "", TABLE) == "`main`.`bronze`.`payments`"
    assert unity_catalog_name("prod-eu", "churn_", "gold.customer_features") == (
        "`prod-eu`.`churn_gold`.`customer_features`"
    )
    store = SparkTableStore(format="delta", catalog="main", schema_prefix="dev_")
    assert store.location("scores.daily") == "`main`.`dev_scores`.`daily`"
    for catalog, prefix, table in [("a`b", "", TABLE), ("main", "x.", TABLE), ("main", "", "Bad")]:
        with pytest.raises(ValueError):
            unity_catalog_name(catalog, prefix, table)


def test_replace_where_covers_the_whole_window():
    predicate = window_predicate(DAY, days(1, 3))

    assert predicate == (
        "`payment_date` >= DATE'2024-01-01' AND `payment_date` < DATE'2024-01-04'"
    )
    with pytest.raises(ValueError, match="plain identifier"):
        window_predicate("day; DROP TABLE x", days(1, 1))


def test_delta_writer_options():
    assert delta_write_options(days(1, 1), DAY) == {
        "replaceWhere": "`payment_date` >= DATE'2024-01-01' AND `payment_date` < DATE'2024-01-02'"
    }
    assert delta_write_options(days(1, 1), DAY, allow_new_columns=True)["mergeSchema"] == "true"
    assert delta_write_options(allow_new_columns=True) == {"mergeSchema": "true"}
    assert delta_write_options(replace_schema=True) == {"overwriteSchema": "true"}
    assert delta_write_options() == {}


def test_upkeep_says_plain_parquet_has_nothing_to_compact_or_vacuum(store):
    store.replace_window(TABLE, payment_rows(days(1, 3)), days(1, 3), DAY)
    before = sorted_rows(store.read(TABLE))
    upkeep = store.upkeep(TABLE, retention_hours=0, small_file_bytes=1024)
    assert upkeep.skipped is not None and "plain Parquet" in upkeep.skipped
    assert upkeep.before is None and upkeep.files_vacuumed == 0
    assert_frame_equal(sorted_rows(store.read(TABLE)), before)
