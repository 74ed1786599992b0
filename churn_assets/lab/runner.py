"""Materialize the whole graph over a range of days, in chunks, against a persistent instance.

This is what ``churn-assets run`` and ``make run`` do; the runs it makes are ordinary Dagster runs
of the ``churn_daily`` job, visible in the UI afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from churn_assets.automation import DAILY_JOB
from churn_assets.ingest.landing import list_drops
from churn_assets.settings import Paths

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class RunError(RuntimeError):
    pass


@dataclass
class ChunkResult:
    start: date
    end: date  # inclusive
    run_id: str
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)


def landing_range(paths: Paths) -> tuple[date, date]:
    """First and last day that has any complete drop."""
    days = [drop.day for drop in list_drops(paths.landing)]
    if not days:
        raise RunError(
            f"no complete drops under {paths.landing}: run `churn-assets simulate` or "
            "`churn-assets import …` first (or set CHURN_HOME to where your data lives)."
        )
    return min(days), max(days)


def chunk_days(first: date, last: date, days_per_run: int) -> list[tuple[date, date]]:
    chunks, start = [], first
    while start <= last:
        end = min(start + timedelta(days=days_per_run - 1), last)
        chunks.append((start, end))
        start = end + timedelta(days=1)
    return chunks


@contextmanager
def persistent_instance() -> Iterator[dg.DagsterInstance]:
    """$DAGSTER_HOME if set; else the repository's dagster.yaml (storage in .dagster/) when run
    from the repository root; else a Dagster home under the data root."""
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance
        return
    cwd = Path.cwd()
    if (cwd / "dagster.yaml").exists():
        # The repository's dagster.yaml puts every store under .dagster/ (relative to here).
        home = cwd
    else:
        home = Paths.from_env().home / "dagster"
        home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def run_range(
    defs: dg.Definitions,
    partitions_def: dg.PartitionsDefinition,
    first: date,
    last: date,
    instance: dg.DagsterInstance,
    days_per_run: int = 31,
    on_chunk: Callable[[int, int, ChunkResult], None] | None = None,
    log_level: str = "WARNING",
    job_name: str = DAILY_JOB,
    selection: list[dg.AssetKey] | None = None,
) -> list[ChunkResult]:
    """Run a job (``churn_daily`` by default) over ``[first, last]``, one single-run backfill per
    chunk of days."""
    if last < first:
        raise RunError(f"--through {last} is before --from {first}")
    job = defs.resolve_job_def(job_name)
    for day in (first, last):
        if not partitions_def.has_partition_key(day.isoformat()):
            raise RunError(
                f"{day} is not a daily partition (they run from "
                f"{partitions_def.get_first_partition_key()} to "
                f"{partitions_def.get_last_partition_key()}); set [partitions] start in "
                "$CHURN_HOME/settings.toml to cover older data."
            )
    chunks = chunk_days(first, last, days_per_run)
    results = []
    for index, (start, end) in enumerate(chunks, 1):
        began = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            # Progress is ours to print; the full event log is in the instance (and the UI).
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            tags={RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()},
            asset_selection=selection,
            raise_on_error=False,
        )
        chunk = ChunkResult(start, end, result.run_id, time.perf_counter() - began)
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            rows = mat.metadata.get("dagster/row_count")
            if rows is not None:
                chunk.rows[mat.asset_key.to_user_string()] = int(rows.value)
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                chunk.failed_checks.append(
                    f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
                    f"({evaluation.severity.value}: {evaluation.description or 'see the UI'})"
                )
        results.append(chunk)
        if on_chunk:
            on_chunk(index, len(chunks), chunk)
        if not result.success:
            failure = result.get_run_failure_event()
            steps = ", ".join(result.get_failed_step_keys()) or "?"
            raise RunError(
                f"run {result.run_id} for {start}..{end} failed in step(s) {steps}"
                + (f": {failure.message}" if failure else "")
                + ". Open the run in the UI (`make ui`) for the full logs."
            )
    return results


def run_once(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance,
             log_level: str = "WARNING") -> dg.ExecuteInProcessResult:
    """Run an unpartitioned job (training) once; raise ``RunError`` with the failure if it fails."""
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = failure.step_failure_data.error if failure else None
        message = (error.message.strip() if error else "") or "see the run in the UI"
        raise RunError(f"run {result.run_id} of {job_name} failed: {message}")
    return result

