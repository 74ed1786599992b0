"""DeltaTableStore on real Delta tables in a temporary lake.

The Dagster tests replay the four ways dagster-deltalake-polars 0.29.27 loses data (DESIGN.md) with
real runs, and assert that through our store nothing is lost. Each would fail against a store that
filters or overwrites with an equality on the window's start.

No ``from __future__ import annotations``: Dagster resolves the ``DropConfig`` annotation at import.
"""

import threading
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest
from deltalake.exceptions import CommitFailedError
from polars.testing import assert_frame_equal

from churn_assets.resources import delta as delta_module
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.store import DateWindow, SchemaMismatch, TableStore
from churn_assets_tests.resources.test_store_contract import (
    DAY,
    SCHEMA,
    TABLE,
    days,
    jan,
    payment_rows,
    rows_per_day,
)

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-08")  # Jan 1–7


def sorted_rows(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.lazy().collect().sort("payment_id")


@pytest.fixture
def store(tmp_path) -> DeltaTableStore:
    return DeltaTableStore(root=str(tmp_path / "lake"))


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


# ── A tiny Dagster graph over the store ──────────────────────────────────────────────────────────


class DropConfig(dg.Config):
    per_day: int = 2


@dg.asset(key_prefix="bronze", partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def payments(
    context: dg.AssetExecutionContext, config: DropConfig, store: TableStore
) -> dg.MaterializeResult:
    # One replace_window over the run's whole window: one day, or a whole single-run backfill.
    window = DateWindow.from_time_window(context.partition_time_window)
    written = store.replace_window(TABLE, payment_rows(window, config.per_day), window, DAY)
    return dg.MaterializeResult(metadata={"rows": written.rows_written})


@dg.asset(deps=[payments])
def payments_overview(store: TableStore) -> dg.MaterializeResult:
    """Unpartitioned, downstream of a daily table: must see every partition."""
    frame = store.read(TABLE).collect()
    return dg.MaterializeResult(metadata={"rows": frame.height, "days": frame[DAY].n_unique()})


@dg.asset(
    partitions_def=DAILY,
    ins={
        "payments": dg.AssetIn(
            key=payments.key,
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2),
            dagster_type=dg.Nothing,
        )
    },
)
def payments_last_3_days(
    context: dg.AssetExecutionContext, store: TableStore
) -> dg.MaterializeResult:
    window = DateWindow.from_time_window(context.asset_partitions_time_window_for_input("payments"))
    frame = store.read(TABLE, window, DAY).collect()
    return dg.MaterializeResult(
        metadata={"rows": frame.height, "days": frame[DAY].n_unique(), "window": str(window)}
    )


def materialize(store, instance, asset, *, partition_key=None, tags=None, per_day=2):
    result = dg.materialize(
        [payments, payments_overview, payments_last_3_days],
        selection=[asset],
        partition_key=partition_key,
        tags=tags,
        run_config={"ops": {"bronze__payments": {"config": {"per_day": per_day}}}}
        if asset is payments
        else None,
        resources={"store": store},
        instance=instance,
    )
    assert result.success
    return result


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    [event] = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in event.metadata.items()}


# ── The four data-loss cases of dagster-deltalake-polars ─────────────────────────────────────────


def test_unpartitioned_downstream_sees_every_partition(store, instance):
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        materialize(store, instance, payments, partition_key=day)

    result = materialize(store, instance, payments_overview)

    assert metadata(result, "payments_overview") == {"rows": 6, "days": 3}


def test_rolling_window_input_sees_all_three_days(store, instance):
    for day in ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"):
        materialize(store, instance, payments, partition_key=day)

    result = materialize(store, instance, payments_last_3_days, partition_key="2024-01-03")

    # Jan 1–3, and not Jan 4: the window's end is exclusive.
    assert metadata(result, "payments_last_3_days") == {
        "rows": 6,
        "days": 3,
        "window": "[2024-01-01, 2024-01-04)",
    }


def test_single_run_backfill_writes_every_day_and_a_rerun_replaces_only_its_day(store, instance):
    backfill = materialize(
        store,
        instance,
        payments,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-07",
        },
    )
    assert {e.partition for e in backfill.asset_materializations_for_node("bronze__payments")} == {
        f"2024-01-0{d}" for d in range(1, 8)
    }
    assert rows_per_day(store) == {jan(d): 2 for d in range(1, 8)}

    materialize(store, instance, payments, partition_key="2024-01-03", per_day=5)

    assert rows_per_day(store) == {jan(d): 5 if d == 3 else 2 for d in range(1, 8)}


def test_writing_one_partition_never_overwrites_another(store, instance):
    materialize(store, instance, payments, partition_key="2024-01-01", per_day=3)
    materialize(store, instance, payments, partition_key="2024-01-02", per_day=1)
    materialize(store, instance, payments, partition_key="2024-01-01", per_day=4)

    assert rows_per_day(store) == {jan(1): 4, jan(2): 1}


# ── Windows ──────────────────────────────────────────────────────────────────────────────────────


def test_rerunning_a_window_is_idempotent(store):
    frame = payment_rows(days(1, 3))
    first = store.replace_window(TABLE, frame, days(1, 3), DAY)
    second = store.replace_window(TABLE, frame.lazy(), days(1, 3), DAY)

    assert (first.rows_written, first.version, second.version) == (6, 0, 1)
    assert_frame_equal(sorted_rows(store.read(TABLE)), sorted_rows(frame))


def test_an_empty_frame_clears_its_window(store):
    store.replace_window(TABLE, payment_rows(days(1, 3)), days(1, 3), DAY)

    written = store.replace_window(TABLE, payment_rows(days(2, 2)).clear(), days(2, 2), DAY)

    assert written.rows_written == 0
    assert rows_per_day(store) == {jan(1): 2, jan(3): 2}


def test_an_empty_frame_creates_an_empty_table(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)).clear(), days(1, 1), DAY)

    assert store.count_rows(TABLE) == 0
    assert store.read(TABLE).collect_schema() == pl.Schema(SCHEMA)


def test_read_and_count_a_window(store):
    store.replace_window(TABLE, payment_rows(days(1, 5)), days(1, 5), DAY)

    window = store.read(TABLE, days(2, 3), DAY, columns=["payment_id"]).collect()

    assert window.columns == ["payment_id"]
    assert sorted(window["payment_id"].str.slice(0, 10).unique()) == ["2024-01-02", "2024-01-03"]
    assert store.count_rows(TABLE, days(2, 4), DAY) == 6
    assert store.count_rows(TABLE) == 10


@pytest.mark.parametrize(
    "name", ["payments", "Bronze.payments", "bronze.pay-ments", "../x.y", "a.b.c"]
)
def test_table_names_are_validated(store, name):
    with pytest.raises(ValueError, match="must be '<layer>.<table>'"):
        store.location(name)


def test_location_under_the_root(store, tmp_path):
    assert store.location(TABLE) == str(tmp_path / "lake" / "bronze" / "payments")
    assert (
        DeltaTableStore(root="s3://bucket/lake/").location(TABLE)
        == "s3://bucket/lake/bronze/payments"
    )


# ── Schemas ──────────────────────────────────────────────────────────────────────────────────────


def test_new_columns_need_permission(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)
    with_channel = payment_rows(days(2, 2)).with_columns(channel=pl.lit("web"))

    with pytest.raises(SchemaMismatch, match=r"no columns \['channel'\].*allow_new_columns=True"):
        store.replace_window(TABLE, with_channel, days(2, 2), DAY)
    assert rows_per_day(store) == {jan(1): 2}

    written = store.replace_window(TABLE, with_channel, days(2, 2), DAY, allow_new_columns=True)

    assert written.new_columns == ("channel",)
    channels = store.read(TABLE).group_by(DAY).agg(pl.col("channel").first()).collect()
    assert dict(channels.iter_rows()) == {jan(1): None, jan(2): "web"}


def test_columns_missing_from_the_frame_are_written_as_null(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)

    store.replace_window(TABLE, payment_rows(days(2, 2)).drop("amount"), days(2, 2), DAY)

    amounts = store.read(TABLE, days(2, 2), DAY).select("amount").collect()
    assert amounts.schema["amount"] == pl.Float64
    assert amounts["amount"].null_count() == 2


def test_a_type_change_is_refused(store):
    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)
    as_text = payment_rows(days(2, 2)).with_columns(pl.col("amount").cast(pl.String))

    with pytest.raises(SchemaMismatch, match="'amount' is Float64 in the table but String"):
        store.replace_window(TABLE, as_text, days(2, 2), DAY)


def test_timestamps_are_stored_utc_and_polars_only_types_read_back_equal(store):
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
    # The same Polars types again are not a "type change".
    store.replace_window("bronze.events", frame, days(1, 1), DAY)

    back = store.read("bronze.events").collect()
    utc = pl.Datetime("us", "UTC")
    assert dict(back.schema) == {
        "naive": utc,
        "berlin": utc,
        "nanos": utc,
        "visits": pl.Int64,
        "channel": pl.String,
        DAY: pl.Date,
    }
    assert back.row(0, named=True)["naive"] == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert back.row(0, named=True)["berlin"] == datetime(2024, 1, 1, 11, tzinfo=UTC)


def test_append_and_overwrite(store):
    store.append("gold.scores", pl.DataFrame({"customer_id": ["a"], "score": [0.1]}))
    store.append("gold.scores", pl.DataFrame({"customer_id": ["b"], "score": [0.2]}))
    assert store.count_rows("gold.scores") == 2

    result = store.overwrite("gold.scores", pl.DataFrame({"customer_id": ["c"], "band": ["high"]}))

    assert result.version == 2
    assert store.read("gold.scores").collect().to_dicts() == [{"customer_id": "c", "band": "high"}]


# ── Concurrent runs ──────────────────────────────────────────────────────────────────────────────


def test_concurrent_writers_of_a_new_table_lose_nothing(store):
    # Two runs (as the sensor launches them) write different windows of a table that does not
    # exist yet: both race to create it, and one also adds a column mid-way (a metadata change).
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(first_days: list[int], new_column: bool) -> None:
        try:
            start.wait()
            for day in first_days:
                frame = payment_rows(days(day, day))
                if new_column and day > first_days[0]:
                    frame = frame.with_columns(channel=pl.lit("app"))
                store.replace_window(TABLE, frame, days(day, day), DAY, allow_new_columns=True)
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    writers = [
        threading.Thread(target=run, args=([1, 3, 5], False)),
        threading.Thread(target=run, args=([2, 4, 6], True)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert errors == []
    assert rows_per_day(store) == {jan(d): 2 for d in range(1, 7)}


def test_a_commit_conflict_is_retried_then_given_up(store, monkeypatch):
    real_write, calls = delta_module.write_deltalake, []

    def conflicting_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise CommitFailedError(
                "Failed to commit transaction: Metadata changed since last commit."
            )
        return real_write(*args, **kwargs)

    monkeypatch.setattr(delta_module, "write_deltalake", conflicting_write)
    monkeypatch.setattr(delta_module, "FIRST_BACKOFF_SECONDS", 0)

    store.replace_window(TABLE, payment_rows(days(1, 1)), days(1, 1), DAY)
    assert len(calls) == 2 and rows_per_day(store) == {jan(1): 2}

    def always_conflicting(*args, **kwargs):
        calls.append(1)
        raise CommitFailedError("Failed to commit transaction: Protocol changed since last commit")

    monkeypatch.setattr(delta_module, "write_deltalake", always_conflicting)
    calls.clear()
    with pytest.raises(CommitFailedError):
        store.replace_window(TABLE, payment_rows(days(2, 2)), days(2, 2), DAY)
    assert len(calls) == delta_module.COMMIT_ATTEMPTS


# ── Upkeep ───────────────────────────────────────────────────────────────────────────────────────


def test_upkeep_compacts_many_small_commits_and_vacuums_the_old_files(store):
    """A table appended to on 30 days has 30 small files; upkeep leaves one file that reads the
    same rows, and (retention 0) deletes the 30 from disk. A second upkeep finds nothing."""
    for day in range(30):
        store.append("gold.scores", pl.DataFrame({"customer_id": [f"c{day}", f"d{day}"],
                                                   "score": [day / 30, day / 60]}))
    before = store.read("gold.scores").collect().sort("customer_id")

    upkeep = store.upkeep("gold.scores", retention_hours=0, small_file_bytes=1024 * 1024)

    assert (upkeep.before.files, upkeep.before.files_on_disk) == (30, 30)
    assert upkeep.before.small_file_ratio == 1.0
    assert (upkeep.files_compacted, upkeep.files_written, upkeep.files_vacuumed) == (30, 1, 30)
    assert (upkeep.after.files, upkeep.after.files_on_disk) == (1, 1)
    assert upkeep.after.small_file_ratio == 1.0  # 60 rows are still a small file
    assert upkeep.after.bytes < upkeep.before.bytes
    assert_frame_equal(store.read("gold.scores").collect().sort("customer_id"), before,
                       check_exact=True)
    again = store.upkeep("gold.scores", retention_hours=0, small_file_bytes=1024 * 1024)
    assert (again.files_compacted, again.files_vacuumed, again.after.files) == (0, 0, 1)


def test_upkeep_compacts_within_each_day_partition(store):
    """Two files in each of three days' partitions (our window write, then another writer's
    append): compaction leaves one file per day, never merging days, and the rows stay."""
    from deltalake import write_deltalake

    store.replace_window(TABLE, payment_rows(days(1, 3)), days(1, 3), DAY)
    write_deltalake(store.location(TABLE), payment_rows(days(1, 3), 1, 5.0).to_arrow(),
                    mode="append", partition_by=[DAY])
    before = sorted_rows(store.read(TABLE))
    upkeep = store.upkeep(TABLE, retention_hours=168, small_file_bytes=1024 * 1024)

    assert (upkeep.before.files, upkeep.after.files) == (6, 3)
    # A 7-day retention keeps the compacted-away files for readers of older versions.
    assert upkeep.files_vacuumed == 0 and upkeep.after.files_on_disk == 9
    assert_frame_equal(sorted_rows(store.read(TABLE)), before, check_exact=True)
    assert store.count_rows_by_day(TABLE, days(1, 3), DAY) == {jan(1): 3, jan(2): 3, jan(3): 3}


def test_upkeep_of_a_missing_table_says_so(store):
    upkeep = store.upkeep("gold.nothing", retention_hours=0, small_file_bytes=1)
    assert upkeep.skipped == "the table does not exist yet" and upkeep.after is None
