"""Delta upkeep on a real small world: after daily commits (a backfill, then one run per day as
the schedule does, then a few days again as re-drops do), the `delta_maintenance` job compacts
and vacuums every table, each table reads back exactly as before, and the files on disk drop to
the files the table reads. (That compaction merges files is shown on the store itself, in
``resources/test_delta.py``: each run here replaces whole day partitions, one file each.)"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.automation import MAINTENANCE_JOB
from churn_assets.definitions import build_definitions
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.settings import MaintenanceSettings
from churn_assets.steps.upkeep import stored_tables, upkeep_tables
from churn_assets_tests.conftest import WORLD_DAYS, WORLD_START, materialize_range


def _snapshot(lake) -> dict[str, pl.DataFrame]:
    tables = {}
    for path in sorted(lake.glob("*/*")):
        if (path / "_delta_log").is_dir():
            frame = pl.read_delta(str(path))
            tables[f"{path.parent.name}.{path.name}"] = frame.sort(frame.columns, nulls_last=True)
    return tables


@pytest.fixture
def committed_daily(dirty_world, instance):
    """The dirty world backfilled, its last days run one per run, then three days again."""
    days = [WORLD_START + timedelta(days=i) for i in range(WORLD_DAYS)]
    assert materialize_range(dirty_world, days[0], days[-5], instance).success
    for day in days[-4:]:
        assert materialize_range(dirty_world, day, day, instance).success, day
    assert materialize_range(dirty_world, days[0], days[2], instance).success
    return dirty_world


def test_maintenance_job_compacts_and_vacuums_and_changes_no_row(committed_daily, instance):
    lake = committed_daily.lake
    before = _snapshot(lake)
    assert before, "the world wrote no Delta table"

    # The default retention (7 days) deletes nothing written minutes ago: a reader of the
    # version before the re-run still finds its files.
    store = DeltaTableStore(root=str(lake))
    (kept,) = upkeep_tables(store, MaintenanceSettings(), tables=["silver.payments"]).tables
    assert kept.files_vacuumed == 0
    assert kept.after.files_on_disk == kept.before.files_on_disk > kept.after.files

    committed_daily.settings_file.write_text("[maintenance]\nvacuum_retention_hours = 0\n")

    result = build_definitions(committed_daily).resolve_job_def(
        MAINTENANCE_JOB).execute_in_process(instance=instance)
    assert result.success

    after = _snapshot(lake)
    assert after.keys() == before.keys()
    for table, frame in before.items():
        assert_frame_equal(after[table], frame, check_exact=True)

    observed = {e.asset_observation_data.asset_observation.asset_key.to_user_string():
                {k: v.value for k, v in
                 e.asset_observation_data.asset_observation.metadata.items()}
                for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"}
    maintained = {k: v for k, v in observed.items() if "skipped" not in v}
    assert {t.replace(".", "/") for t in before} == set(maintained)
    for table, meta in maintained.items():
        assert meta["files_after"] == meta["files_before"] - meta["files_compacted"] + meta[
            "files_written"], table
        # Retention 0: every file the current version does not read is gone.
        assert meta["files_on_disk_after"] == meta["files_after"], table
        assert meta["files_on_disk_before"] - meta["files_on_disk_after"] == meta[
            "files_vacuumed"] - meta["files_written"], table
        assert 0.0 <= meta["small_file_ratio_after"] <= 1.0
    # The re-run days left replaced files behind in every table of the daily graph.
    rewritten = ["bronze/payments", "silver/payments", "gold/customer_state",
                 "gold/customer_features"]
    assert all(maintained[t]["files_vacuumed"] >= 3 for t in rewritten), {
        t: maintained[t] for t in rewritten}
    totals = result.output_for_node("compact_and_vacuum_tables")
    assert totals is None  # the totals are the step's metadata, checked below
    summary = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    numbers = {k: v.value for k, v in
               summary.event_specific_data.metadata.items()}
    assert numbers["files_on_disk_after"] < numbers["files_on_disk_before"]
    assert numbers["tables_maintained"] == len(maintained)
    # Tables that do not exist yet (no labels, models or scores in this run) say so.
    assert all(v["skipped"] == "the table does not exist yet"
               for k, v in observed.items() if k not in maintained)
    assert set(observed) == {t.replace(".", "/") for t in stored_tables()}

