"""Delta upkeep over the table store: compact and vacuum every stored table of the catalogue.

A year of daily commits leaves each table with a file per day and write, and every replaced
window's old files on disk (Delta only marks them removed). Compaction bin-packs the small files
of each partition into larger ones without changing a row; vacuum deletes the files no version
within the retention still reads. Both are the store's to do (``TableStore.upkeep``); this step
only walks the catalogue and totals what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from churn_assets import catalog
from churn_assets.resources.store import FileHealth, TableStore, Upkeep
from churn_assets.settings import MaintenanceSettings

MB = 1024 * 1024


@dataclass(frozen=True)
class UpkeepReport:
    tables: tuple[Upkeep, ...]

    @property
    def done(self) -> tuple[Upkeep, ...]:
        return tuple(t for t in self.tables if t.skipped is None)

    @property
    def skipped(self) -> tuple[Upkeep, ...]:
        return tuple(t for t in self.tables if t.skipped is not None)

    def totals(self) -> dict[str, int]:
        done = self.done
        return {
            "tables_maintained": len(done),
            "tables_skipped": len(self.skipped),
            "files_before": sum(t.before.files for t in done if t.before),
            "files_after": sum(t.after.files for t in done if t.after),
            "files_on_disk_before": sum(t.before.files_on_disk or 0 for t in done if t.before),
            "files_on_disk_after": sum(t.after.files_on_disk or 0 for t in done if t.after),
            "files_compacted": sum(t.files_compacted for t in done),
            "files_vacuumed": sum(t.files_vacuumed for t in done),
        }


def stored_tables() -> list[str]:
    """Every table of the catalogue that lives in the table store."""
    return [t.full_name for t in catalog.TABLES if t.stored]


def upkeep_tables(store: TableStore, settings: MaintenanceSettings,
                  tables: Iterable[str] | None = None) -> UpkeepReport:
    small = int(settings.small_file_mb * MB)
    return UpkeepReport(tuple(
        store.upkeep(table, settings.vacuum_retention_hours, small)
        for table in (stored_tables() if tables is None else tables)))


def health_metadata(upkeep: Upkeep) -> dict[str, object]:
    """Before/after file counts, small-file ratio and size of one table, for its observation."""
    if upkeep.skipped is not None:
        return {"skipped": upkeep.skipped}
    meta: dict[str, object] = {"files_compacted": upkeep.files_compacted,
                               "files_written": upkeep.files_written,
                               "files_vacuumed": upkeep.files_vacuumed}
    for when, health in (("before", upkeep.before), ("after", upkeep.after)):
        meta |= _health(when, health)
    return meta


def _health(when: str, health: FileHealth | None) -> dict[str, object]:
    if health is None:
        return {}
    meta: dict[str, object] = {f"files_{when}": health.files,
                               f"mb_{when}": round(health.bytes / MB, 3)}
    if health.files_on_disk is not None:
        meta[f"files_on_disk_{when}"] = health.files_on_disk
    if health.small_file_ratio is not None:
        meta[f"small_file_ratio_{when}"] = round(health.small_file_ratio, 4)
    return meta
