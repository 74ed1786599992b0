"""The bronze load step without Dagster: a window of drops into the tables, reconciled, on the
dirty world, with the typed result the asset reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from churn_assets import catalog
from churn_assets.ingest.bronze import PARTITION_COLUMN
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.landing import LandingZone
from churn_assets.resources.store import DateWindow
from churn_assets.steps.bronze import load_bronze
from churn_assets_tests.conftest import WORLD_DAYS, WORLD_START

WINDOW = DateWindow(WORLD_START, WORLD_START + timedelta(days=WORLD_DAYS))
INGESTED = datetime(2026, 2, 1, tzinfo=UTC)


def test_a_load_reconciles_what_the_tables_hold_and_a_rerun_changes_nothing(dirty_world):
    store = DeltaTableStore(root=str(dirty_world.lake))
    landing = LandingZone(root=str(dirty_world.landing))

    first = load_bronze("payments", WINDOW, store, landing, INGESTED)

    table = catalog.bronze("payments").full_name
    quarantine = catalog.bronze_quarantine("payments").full_name
    assert first.reconciled and first.difference == 0
    assert first.quarantined_rows > 0 and sum(first.quarantine_reasons.values()) > 0
    assert first.bronze_rows == store.count_rows(table, WINDOW, PARTITION_COLUMN)
    assert first.quarantined_rows == store.count_rows(quarantine, WINDOW, PARTITION_COLUMN)
    assert first.records_in_files == first.bronze_rows + first.quarantined_rows
    assert len(first.drops) + first.days_without_drop == WORLD_DAYS

    again = load_bronze("payments", WINDOW, store, landing, INGESTED)
    assert (again.bronze_rows, again.quarantined_rows, again.records_in_files) == (
        first.bronze_rows, first.quarantined_rows, first.records_in_files)


def test_a_drop_still_being_written_is_skipped_and_named(dirty_world):
    store = DeltaTableStore(root=str(dirty_world.lake))
    landing = LandingZone(root=str(dirty_world.landing))
    later = WORLD_START + timedelta(days=WORLD_DAYS)
    (dirty_world.landing / "payments" / later.isoformat()).mkdir(parents=True)
    (dirty_world.landing / "payments" / later.isoformat() / "part.csv").write_text("x\n")
    window = DateWindow(WORLD_START, later + timedelta(days=1))
    warnings = []

    class Log:
        info = staticmethod(lambda message: None)
        warning = staticmethod(warnings.append)

    load = load_bronze("payments", window, store, landing, INGESTED, log=Log)

    assert load.partial_days == [later.isoformat()] and load.reconciled
    assert warnings and later.isoformat() in warnings[0]
    assert store.count_rows(catalog.bronze("payments").full_name, DateWindow.day(later),
                            PARTITION_COLUMN) == 0


def test_a_domain_without_drops_gets_empty_tables(dirty_world):
    store = DeltaTableStore(root=str(dirty_world.lake))
    landing = LandingZone(root=str(dirty_world.landing))
    before = WORLD_START - timedelta(days=3)

    load = load_bronze("tickets", DateWindow(before, WORLD_START), store, landing, INGESTED)

    assert load.drops == [] and load.reconciled and load.days_without_drop == 3
    assert store.exists(catalog.bronze("tickets").full_name)
    assert store.count_rows(catalog.bronze_quarantine("tickets").full_name) == 0
