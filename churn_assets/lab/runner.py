"""Materialize the whole graph over a range of days, in chunks, against a persistent instance.

This is what ``churn-assets run`` and ``make run`` do; the runs it makes are ordinary Dagster runs
of the ``churn_daily`` job, visible in the UI afterwards.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

import churn_assets
from churn_assets.automation import DAILY_JOB, RANGE_END_TAG, RANGE_START_TAG
from churn_assets.ingest.landing import DropError, list_drops, scan_drops, verify_drop
from churn_assets.resources.event_log import instance_yaml
from churn_assets.settings import Paths

# A digest of everything a run's tables are computed from (see ``fingerprint``): a later run of
# the same job and days with the same digest has nothing new to compute and is skipped.
INPUTS_TAG = "churn/inputs"


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
    error: str | None = None  # why the run failed (only when not stopping on failure)
    skipped: bool = False  # unchanged inputs: an earlier successful run computed the same


@dataclass
class RunPlan:
    """The days a ``run`` covers: contiguous ranges of good days, and what it leaves out and why."""

    ranges: list[tuple[date, date]]  # inclusive
    skipped: list[tuple[date, date, str]] = field(default_factory=list)  # inclusive, reason

    @property
    def skipped_days(self) -> set[date]:
        return {
            start + timedelta(days=i)
            for start, end, _ in self.skipped for i in range((end - start).days + 1)
        }


def _folder_day(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.name)
    except ValueError:
        return None




def fingerprint(*parts: object) -> str:
    """A short digest of JSON-able parts (drop fingerprints, settings, code version)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def code_version(package: Path | None = None) -> str:
    """A digest of the package's source (all of ``churn_assets``): changed code recomputes
    everything."""
    digest = hashlib.sha256()
    package = Path(churn_assets.__file__).resolve().parent if package is None else package
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def unchanged_run(instance: dg.DagsterInstance, job_name: str, inputs: str,
                  tags: dict[str, str] | None = None) -> str | None:
    """The id of an earlier successful run of ``job_name`` with these inputs (and tags), if any."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS],
                              tags={**(tags or {}), INPUTS_TAG: inputs}),
        limit=1,
    )
    return runs[0].run_id if runs else None


class RunInputs:
    """What each job's days are computed from, as digests for ``run_range(inputs=…)``.

    A day's tables depend on the drops up to it (silver dedupes against earlier days, gold
    continues from yesterday's state), on the settings sections a job reads, on the PII key and
    on the code. So a change of ``[labels] horizon_days`` alone changes only the labels' (and
    the models') digests: bronze to gold is skipped. The lake is assumed to hold what earlier
    runs wrote; without it (deleted), nothing is skipped (``skip``).
    """

    def __init__(self, paths: Paths, settings, env: str):
        self.drops = sorted((d.day, d.domain, d.fingerprint) for d in list_drops(paths.landing))
        self.skip = paths.lake.exists()
        self.settings = settings
        pii = os.environ.get("CHURN_PII_KEY", "")
        self.base = (code_version(), env, hashlib.sha256(pii.encode()).hexdigest()[:12],
                     settings.partitions.first_day, settings.checks.model_dump())

    def _drops_through(self, day: date) -> list:
        return [d for d in self.drops if d[0] <= day]

    def _digest(self, *parts) -> str:
        return fingerprint(*self.base, *parts)

    def daily(self, start: date, end: date) -> str:
        return self._digest("daily", self._drops_through(end))

    def labels(self, start: date, end: date) -> str:
        horizon = self.settings.labels.horizon_days
        return self._digest("labels", horizon,
                            self._drops_through(end + timedelta(days=horizon)))

    def training(self) -> str:
        return self._digest("training", self.drops, self.settings.labels.model_dump(),
                            self.settings.model.model_dump())

    def scoring(self, champion: str | None) -> Callable[[date, date], str]:
        return lambda start, end: self._digest(
            "scoring", champion, self._drops_through(end), self.settings.scoring.model_dump(),
            self.settings.decisions.model_dump(), self.settings.labels.model_dump(),
            self.settings.reports.model_dump())  # the brief's link is in the scoring job

    def outcomes(self, champion: str | None) -> Callable[[date, date], str]:
        window = self.settings.scoring.outcome_window_days
        return lambda start, end: self._digest(
            "outcomes", champion, self._drops_through(end + timedelta(days=window)),
            self.settings.scoring.model_dump(), self.settings.decisions.model_dump())


def landing_range(paths: Paths) -> tuple[date, date]:
    """First and last day that has any complete drop (a broken marker counts: it is reported)."""
    drops, broken = scan_drops(paths.landing)
    days = [drop.day for drop in drops] + [
        day for error in broken if (day := _folder_day(error.path)) is not None
    ]
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


def plan_run(
    paths: Paths, partitions_def: dg.PartitionsDefinition, first: date, last: date
) -> RunPlan:
    """Split ``[first, last]`` into the ranges of days worth running and the days to skip.

    Days outside the daily partitions are skipped (with the setting to change, or a hint that the
    dates are in the future), and so is every day with a drop that breaks its marker's contract:
    one bad drop stops only its own day, and the summary says which drop and what differs.
    """
    if last < first:
        raise RunError(f"--through {last} is before --from {first}")
    start = date.fromisoformat(partitions_def.get_first_partition_key())
    end = date.fromisoformat(partitions_def.get_last_partition_key())
    skipped: list[tuple[date, date, str]] = []
    if first < start:
        skipped.append((first, min(last, start - timedelta(days=1)),
                        f"before the first daily partition {start}; set [partitions] start in "
                        f"{paths.settings_file} to cover older data"))
    if last > end:
        skipped.append((max(first, end + timedelta(days=1)), last,
                        f"after the last daily partition {end} (today): dates in the future are "
                        "a clock or export error; fix the dates and import again"))
    low, high = max(first, start), min(last, end)
    bad: dict[date, list[str]] = {}
    drops, broken = scan_drops(paths.landing)
    for error in broken:
        day = _folder_day(error.path)
        if day is not None and low <= day <= high:
            bad.setdefault(day, []).append(str(error))
    for drop in drops:
        if low <= drop.day <= high:
            try:
                verify_drop(drop)
            except DropError as error:
                bad.setdefault(drop.day, []).append(str(error))
    skipped += [(day, day, "; ".join(reasons)) for day, reasons in sorted(bad.items())]
    ranges: list[tuple[date, date]] = []
    day = low
    while day <= high:
        if day not in bad:
            if ranges and ranges[-1][1] == day - timedelta(days=1):
                ranges[-1] = (ranges[-1][0], day)
            else:
                ranges.append((day, day))
        day += timedelta(days=1)
    return RunPlan(ranges, sorted(skipped))


# Runs started by `churn-assets run` carry the process that executes them, so a later `run` can
# tell a run whose process died (kill -9, a lost laptop lid) from one still going.
PID_TAG = "churn_assets/pid"
HOST_TAG = "churn_assets/host"


def process_tags() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


@contextmanager
def persistent_instance() -> Iterator[dg.DagsterInstance]:
    """$DAGSTER_HOME if set; else the repository's dagster.yaml (storage in .dagster/) when run
    from the repository root; else a Dagster home under the data root.

    Creating the SQLite storages is not safe from two processes at once (both create the schema
    and one dies on an existing ``alembic_version`` table), so the first use is serialized by a
    file lock; runs whose process died since are marked failed.
    """
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        with _setup_lock(home):
            instance = dg.DagsterInstance.get()
            _touch_storages(instance)
        with instance:
            fail_dead_runs(instance)
            yield instance
        return
    cwd = Path.cwd()
    if (cwd / "dagster.yaml").exists():
        # The repository's dagster.yaml puts every store under .dagster/ (relative to here).
        home, lock_dir = cwd, cwd / ".dagster"
    else:
        home = lock_dir = Paths.from_env().home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    with _setup_lock(lock_dir):
        if not (home / "dagster.yaml").exists():
            (home / "dagster.yaml").write_text(instance_yaml(home))
        instance = dg.DagsterInstance.from_config(str(home))
        _touch_storages(instance)
    with instance:
        fail_dead_runs(instance)
        yield instance


@contextmanager
def _setup_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".churn-assets-setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _touch_storages(instance: dg.DagsterInstance) -> None:
    """Create (or migrate) every storage now, under the lock, not lazily during a run."""
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    instance.fetch_materializations(dg.AssetKey("churn_assets_setup"), limit=1)


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs this tool started on this machine whose process is gone.

    Runs launched by the UI or the daemon are Dagster's run monitoring's to judge; ours run
    in-process, so the process id in their tags says whether anyone is still executing them.
    """
    host = socket.gethostname()
    active = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.NOT_STARTED]
    failed = []
    for run in instance.get_runs(dg.RunsFilter(statuses=active, tags={HOST_TAG: host})):
        pid = run.tags.get(PID_TAG)
        if pid is None or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, message=f"the process {pid} that executed this run is gone (killed or crashed); "
            "marked failed by the next `churn-assets run`")
        failed.append(run.run_id)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    stop_on_failure: bool = True,
    inputs: Callable[[date, date], str] | None = None,
    skip_unchanged: bool = True,
) -> list[ChunkResult]:
    """Run a job (``churn_daily`` by default) over ``[first, last]``, one single-run backfill per
    chunk of days. A failed chunk raises ``RunError``, or with ``stop_on_failure=False`` is
    recorded in its ``ChunkResult.error`` and the next chunk runs. With ``inputs`` (a chunk's
    digest of what it is computed from), a chunk an earlier successful run computed from the
    same inputs is skipped."""
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
        tags = {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}
        if inputs is not None:
            digest = inputs(start, end)
            earlier = (unchanged_run(instance, job_name, digest, tags)
                       if skip_unchanged and not selection else None)
            if earlier:
                results.append(ChunkResult(start, end, earlier, 0.0, skipped=True))
                if on_chunk:
                    on_chunk(index, len(chunks), results[-1])
                continue
            tags[INPUTS_TAG] = digest
        result = job.execute_in_process(
            instance=instance,
            # Progress is ours to print; the full event log is in the instance (and the UI).
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            tags={**tags, **process_tags()},
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
        if not result.success:
            failure = result.get_run_failure_event()
            steps = ", ".join(result.get_failed_step_keys()) or "?"
            chunk.error = (
                f"run {result.run_id} for {start}..{end} failed in step(s) {steps}: "
                f"{_failure_reason(failure)}. Open the run in the UI (`make ui`) for the full logs."
            )
        results.append(chunk)
        if on_chunk:
            on_chunk(index, len(chunks), chunk)
        if chunk.error and stop_on_failure:
            raise RunError(chunk.error)
    return results


def _failure_reason(failure: dg.DagsterEvent | None) -> str:
    """The run failure's own error (e.g. which blocking check failed where), else its message."""
    if failure is None:
        return "see the run in the UI"
    error = getattr(failure.event_specific_data, "error", None)
    if error is not None and error.message:
        return error.message.strip().removeprefix("dagster._core.definitions.events.Failure: ")
    return failure.message or "see the run in the UI"


def run_once(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance,
             log_level: str = "WARNING", inputs: str | None = None, skip_unchanged: bool = True,
             ) -> dg.ExecuteInProcessResult | None:
    """Run an unpartitioned job (training) once; raise ``RunError`` with the failure if it fails.
    With ``inputs``, return ``None`` instead when a successful run had the same inputs."""
    if inputs is not None and skip_unchanged and unchanged_run(instance, job_name, inputs):
        return None
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={**process_tags(), **({INPUTS_TAG: inputs} if inputs else {})},
        raise_on_error=False,
    )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = failure.step_failure_data.error if failure else None
        message = (error.message.strip() if error else "") or "see the run in the UI"
        raise RunError(f"run {result.run_id} of {job_name} failed: {message}")
    return result

