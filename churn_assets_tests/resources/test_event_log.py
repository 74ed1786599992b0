"""The repository's Dagster instance keeps its event-log connections open: the events a run
stores are the same rows Dagster's own SQLite storage reads, and a wipe leaves no connection to a
deleted file."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from churn_assets.resources.event_log import (
    OPEN_DATABASES,
    PooledSqliteEventLogStorage,
    instance_yaml,
)

REPOSITORY = Path(__file__).resolve().parents[2]
DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=DAYS)
def counted(context) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"day": context.partition_key})


def _materializations(storage) -> list[str]:
    records = storage.fetch_materializations(dg.AssetKey("counted"), limit=100).records
    return sorted(r.asset_materialization.metadata["day"].value for r in records)


def test_runs_store_events_that_dagsters_own_storage_reads(tmp_path, monkeypatch):
    shutil.copy(REPOSITORY / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)  # the repository's paths are relative to where Dagster runs
    days = [f"2026-01-{d:02d}" for d in range(1, OPEN_DATABASES + 4)]
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        # More runs (one database each) than connections kept open.
        for day in days:
            assert dg.materialize([counted], instance=instance, partition_key=day).success
        assert _materializations(instance.event_log_storage) == days
        assert len(instance.event_log_storage._engines) <= OPEN_DATABASES
        plain = SqliteEventLogStorage(str(tmp_path / ".dagster/storage/history/runs"))
        assert _materializations(plain) == days
        assert len(instance.get_runs()) == len(days)

        instance.wipe()
        assert _materializations(instance.event_log_storage) == []
        assert dg.materialize([counted], instance=instance, partition_key=days[0]).success
        assert _materializations(instance.event_log_storage) == days[:1]


def test_a_dagster_home_without_configuration_gets_the_pooled_log_in_dagsters_directories(
        tmp_path):
    # A run before this configuration existed: Dagster's default storage under the home.
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert dg.materialize([counted], instance=instance, partition_key="2026-01-01").success
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert dg.materialize([counted], instance=instance, partition_key="2026-01-02").success
        assert _materializations(instance.event_log_storage) == ["2026-01-01", "2026-01-02"]
        assert len(instance.get_runs()) == 2
