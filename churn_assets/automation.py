"""Jobs, sensors and schedules: what makes the graph run by itself."""


import hashlib
import json
import re
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import narwhals as nw

from churn_assets import catalog
from churn_assets.ingest.bronze import PARTITION_COLUMN
from churn_assets.ingest.landing import Drop, DropError, drop_records
from churn_assets.resources.landing import LandingZone
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.upkeep import health_metadata, upkeep_tables

DAILY_JOB = "churn_daily"
# A first tick over a long history would otherwise queue hundreds of runs at once.
MAX_RUNS_PER_TICK = 25
# A backlog's consecutive days go in one bronze run up to this many (as `churn-assets run`).
MAX_DAYS_PER_RUN = 31
# Dagster's tags for a run over a range of partitions (what a single-run backfill launches).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


LABELS_JOB = "churn_labels"
LABELS_KEY, FEATURES_KEY = catalog.CHURN_LABELS.key, catalog.CUSTOMER_FEATURES.key
SCORES_KEY, OUTCOMES_KEY = catalog.SCORES.key, catalog.OUTCOMES.key
BRIEF_KEY = catalog.DAILY_BRIEF.key


def build_daily_job(deadline_checks=()):
    return dg.define_asset_job(
        DAILY_JOB,
        # Labels for day D need D+horizon's data: they run later, in their own job.
        # Deadline checks judge today's clock, not the days run: their own sensor runs them.
        selection=(dg.AssetSelection.all()
                   - dg.AssetSelection.assets(LABELS_KEY, *MODEL_KEYS, FORECAST_KEY, SCORES_KEY,
                                              *DECISION_KEYS, OUTCOMES_KEY, BRIEF_KEY))
        - dg.AssetSelection.checks(*deadline_checks),
        description="Bronze to gold features for a day or a range of days (what "
        "`churn-assets run` runs first).",
    )


def build_labels_job():
    return dg.define_asset_job(
        LABELS_JOB,
        selection=dg.AssetSelection.assets(LABELS_KEY),
        description="Churn labels for snapshot days whose label window has fully arrived.",
    )


SCORING_JOB, OUTCOMES_JOB = "churn_scoring", "churn_outcomes"
DECISION_KEYS = [t.key for t in catalog.DECISION_TABLES]


def build_scoring_job():
    return dg.define_asset_job(
        SCORING_JOB,
        selection=dg.AssetSelection.assets(SCORES_KEY, *DECISION_KEYS, BRIEF_KEY),
        description="Score a day's customers with the champion model, decide the day's "
        "actions (CRM feed, control group, whale list) and render the day's brief.",
    )


def build_outcomes_job():
    return dg.define_asset_job(
        OUTCOMES_JOB, selection=dg.AssetSelection.assets(OUTCOMES_KEY),
        description="Measure campaigns whose outcome window has passed.")


def build_scoring_schedule(settings: Settings, job) -> dg.ScheduleDefinition:
    """A daily ``M H * * *`` cron is built from the partitioned job: each tick targets the last
    complete day (yesterday), and the UI shows the schedule's partition set and the days it ran.
    Any other cron gets a plain schedule that asks for yesterday's partition."""
    description = "Every morning: yesterday's scores and decisions ([scoring] schedule_cron)."
    daily = re.fullmatch(r"(\d{1,2}) (\d{1,2}) \* \* \*", settings.scoring.schedule_cron.strip())
    if daily:
        return dg.build_schedule_from_partitioned_job(
            job, name="daily_scoring", minute_of_hour=int(daily[1]), hour_of_day=int(daily[2]),
            default_status=dg.DefaultScheduleStatus.RUNNING, description=description)

    @dg.schedule(
        name="daily_scoring",
        cron_schedule=settings.scoring.schedule_cron,
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def daily_scoring(context: dg.ScheduleEvaluationContext):
        yesterday = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
        # One run per day: a re-tick of the same morning is deduplicated by the run key.
        return dg.RunRequest(run_key=f"scores-{yesterday}", partition_key=yesterday)

    return daily_scoring


def build_outcomes_schedule(settings: Settings, job) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_outcomes",
        cron_schedule=settings.scoring.schedule_cron,
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every morning: the campaign day whose outcome window has just arrived, so "
        "the uplift model learns as the loop runs.",
    )
    def daily_outcomes(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time.date() - timedelta(days=1)
               - timedelta(days=settings.scoring.outcome_window_days)).isoformat()
        return dg.RunRequest(run_key=f"outcomes-{day}", partition_key=day)

    return daily_outcomes


def build_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """Runs the assets' automation conditions (silver and gold follow bronze). Dagster's own
    default sensor starts stopped; ours is on, so a landed drop flows through to gold."""
    return dg.AutomationConditionSensorDefinition(
        "automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.sensors.interval_seconds,
        description="Materializes silver and gold partitions whose upstream changed "
        "(the assets' automation conditions).",
    )


TRAINING_JOB = "churn_training"
MODEL_KEYS = [t.key for t in catalog.MODEL_TABLES]


def build_training_job():
    return dg.define_asset_job(
        TRAINING_JOB,
        selection=dg.AssetSelection.assets(*MODEL_KEYS),
        description="Train, evaluate and register the churn model (gated), refit CLTV, and "
        "retrain the uplift model on the measured experiments (gated). Launch it from the UI "
        "for an on-demand retraining.",
    )


def build_training_schedule(settings: Settings, job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_training",
        job=job,
        cron_schedule=settings.model.retrain_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Retrains the models ([model] retrain_cron in settings.toml).",
    )


FORECAST_JOB = "revenue_forecast"
FORECAST_KEY = catalog.REVENUE_FORECAST.key


def build_forecast_job():
    return dg.define_asset_job(
        FORECAST_JOB, selection=dg.AssetSelection.assets(FORECAST_KEY),
        description="Backtest and forecast weekly revenue for the next weeks, overall and per "
        "segment, beside today's revenue at risk.")


def build_forecast_schedule(settings: Settings, job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_forecast",
        job=job,
        cron_schedule=settings.forecast.schedule_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Forecasts weekly revenue ([forecast] schedule_cron in settings.toml).",
    )


MAINTENANCE_JOB = "delta_maintenance"


def build_maintenance_job(settings: Settings) -> dg.JobDefinition:
    """Compact and vacuum every stored table, and record each table's file health before and
    after as an observation of its asset (listed with its events on the asset's page)."""

    @dg.op(name="compact_and_vacuum_tables")
    def compact_and_vacuum_tables(context: dg.OpExecutionContext, store: TableStore):
        report = upkeep_tables(store, settings.maintenance)
        for upkeep in report.tables:
            table = catalog.BY_NAME[upkeep.table]
            context.log_event(dg.AssetObservation(
                asset_key=table.key, metadata=health_metadata(upkeep)))
        if report.skipped:
            reasons = sorted({t.skipped for t in report.skipped})
            context.log.info(f"skipped {len(report.skipped)} table(s): {'; '.join(reasons)}")
        return dg.Output(None, metadata=report.totals())

    @dg.job(name=MAINTENANCE_JOB, description=(
        "Compacts small files and vacuums files older than [maintenance] "
        "vacuum_retention_hours in every Delta table; each table's file count and small-file "
        "ratio before and after are observations of its asset."))
    def delta_maintenance():
        compact_and_vacuum_tables()

    return delta_maintenance


def build_maintenance_schedule(settings: Settings, job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_delta_maintenance",
        job=job,
        cron_schedule=settings.maintenance.schedule_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Compacts and vacuums the tables ([maintenance] schedule_cron).",
    )


def build_deadline_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    """"Yesterday's gold features exist by 06:00 UTC" and "yesterday's scores by 07:00"
    (both times are configurable)."""
    checks = []
    for asset_key, deadline in ((FEATURES_KEY, settings.freshness.gold_deadline),
                                (SCORES_KEY, settings.scoring.deadline)):
        hour, minute = (int(p) for p in deadline.split(":"))
        with warnings.catch_warnings():
            # "Superseded" by FreshnessPolicy, which judges the asset, not yesterday's partition.
            warnings.simplefilter("ignore", dg.SupersessionWarning)
            checks += dg.build_time_partition_freshness_checks(
                assets=[asset_key], deadline_cron=f"{minute} {hour} * * *", timezone="UTC",
                severity=dg.AssetCheckSeverity.WARN,
            )
    return checks


def build_deadline_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, default_status=dg.DefaultSensorStatus.RUNNING)


@dataclass(frozen=True)
class BronzeHoldings:
    """What bronze holds for some drops' (domain, day)s: batch ids, and which days have rows."""

    batches: frozenset[str] = frozenset()
    days: frozenset[tuple[str, date]] = frozenset()


def plan_landing_runs(
    drops: list[Drop],
    cursor: dict[str, str],
    partitions_def: dg.PartitionsDefinition,
    ingested: Callable[[list[Drop]], BronzeHoldings] = lambda drops: BronzeHoldings(),
    max_runs: int = MAX_RUNS_PER_TICK,
    records: Callable[[Drop], int] = drop_records,
    max_days_per_run: int = MAX_DAYS_PER_RUN,
) -> tuple[list[dg.RunRequest], dict[str, str], list[str]]:
    """New or changed complete drops → bronze runs (consecutive days with drops of the same
    domains share one run, up to ``max_days_per_run``), and the cursor after them.

    The cursor maps ``<domain>/<day>`` to the fingerprint of the marker last requested, so a drop
    is requested exactly once and a re-drop (new fingerprint) again. ``ingested`` says what
    bronze already holds for the candidate drops (e.g. after `churn-assets run`): a drop whose
    batch is there, or an empty drop (no records) of a day bronze holds nothing for, is marked
    seen without a run; an empty re-drop of a day with rows still runs, to empty it. Returns the
    requests, the new cursor, and days that are not valid partitions (before the first
    partition, or not over yet).
    """
    candidates = [d for d in drops if cursor.get(_cursor_key(d)) != d.fingerprint]
    cursor = dict(cursor)
    held = ingested(candidates) if candidates else BronzeHoldings()
    pending: dict[date, list[Drop]] = defaultdict(list)
    for drop in candidates:
        if drop.batch_id in held.batches or (
                (drop.domain, drop.day) not in held.days and records(drop) == 0):
            cursor[_cursor_key(drop)] = drop.fingerprint
        else:
            pending[drop.day].append(drop)
    valid, invalid = [], []
    for day in sorted(pending):
        (valid if partitions_def.has_partition_key(day.isoformat()) else invalid).append(day)
    requests = []
    for days in _runs_of_days(valid, pending, max_days_per_run)[:max_runs]:
        drops = [d for day in days for d in sorted(pending[day], key=lambda d: d.domain)]
        requests.append(_bronze_run(days, drops))
        cursor.update({_cursor_key(d): d.fingerprint for d in drops})
    return requests, cursor, [day.isoformat() for day in invalid]


def _runs_of_days(days: list[date], pending: dict[date, list[Drop]],
                  max_days: int) -> list[list[date]]:
    """Consecutive days with drops of the same domains, at most ``max_days`` to a run: a
    backlog of a quarter is three runs, not ninety."""
    runs: list[list[date]] = []
    for day in days:
        previous = runs[-1] if runs else None
        if (previous and len(previous) < max_days and day == previous[-1] + timedelta(days=1)
                and _domains(pending[day]) == _domains(pending[previous[-1]])):
            previous.append(day)
        else:
            runs.append([day])
    return runs


def _domains(drops: list[Drop]) -> list[str]:
    return sorted(d.domain for d in drops)


def _bronze_run(days: list[date], drops: list[Drop]) -> dg.RunRequest:
    """One run for the drops of ``days``: a single partition, or a range (one run over all of
    them, the way the UI's single-run backfills go). The run key names every drop's
    fingerprint, so a re-drop of any day is a new request."""
    fingerprints = ",".join(f"{d.domain}={d.fingerprint}" for d in drops)
    selection = [table.key for domain in sorted({d.domain for d in drops})
                 for table in (catalog.bronze(domain), catalog.bronze_quarantine(domain))]
    tags = {"churn/batches": ",".join(d.batch_id for d in drops)[:200]}
    if len(days) == 1:
        return dg.RunRequest(run_key=f"{days[0]}:{fingerprints}",
                             partition_key=days[0].isoformat(), asset_selection=selection,
                             tags=tags)
    digest = hashlib.sha256(fingerprints.encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"{days[0]}..{days[-1]}:{digest}", asset_selection=selection,
        tags={**tags, RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()})


def build_landing_sensor(
    partitions_def: dg.PartitionsDefinition, bronze_assets: list[dg.AssetsDefinition],
    interval_seconds: int = 30,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        description="Requests bronze runs for complete new or re-dropped landing drops, once each.",
        target=bronze_assets,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone, store: TableStore
    ):
        cursor = json.loads(context.cursor) if context.cursor else {}
        drops, broken = landing.scan()
        requests, new_cursor, invalid = plan_landing_runs(
            drops, cursor, partitions_def, lambda drops: ingested_batches(store, drops)
        )
        refused = _refused_drops(broken)
        if refused:
            context.log.warning(refused)
        if invalid:
            context.log.warning(
                f"{len(invalid)} drop day(s) are outside the daily partitions and wait: "
                f"{invalid[:5]}… A day is ingested once it is over (UTC); an older day needs "
                "[partitions] start in $CHURN_HOME/settings.toml, or a reload of the code "
                "location when the partitions follow the data."
            )
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps(new_cursor, sort_keys=True),
            skip_reason=None if requests else "; ".join(
                filter(None, ["no new or changed complete drops", refused])),
        )

    return landing_sensor


def _refused_drops(broken: list[DropError]) -> str | None:
    """A broken marker never becomes a drop: the sensor says so on every tick, or the folder
    would wait unseen (bronze and ``run`` refuse it too, naming the same problems)."""
    if not broken:
        return None
    shown = " | ".join(str(error) for error in broken[:3]) + (" …" if len(broken) > 3 else "")
    return (f"{len(broken)} drop folder(s) have a marker that breaks the contract and are not "
            f"ingested until it is rewritten: {shown}")


def ingested_batches(store: TableStore, drops: list[Drop]) -> BronzeHoldings:
    """What the bronze tables of ``drops`` hold for their days: batch ids and days with rows."""
    batches: set[str] = set()
    days: set[tuple[str, date]] = set()
    for domain in {d.domain for d in drops}:
        table = catalog.bronze(domain).full_name
        if not store.exists(table):
            continue
        wanted = [d.day for d in drops if d.domain == domain]
        window = DateWindow(min(wanted), max(wanted) + timedelta(days=1))
        held = (
            nw.from_native(store.read(table, window, PARTITION_COLUMN,
                                      columns=["_batch_id", PARTITION_COLUMN]))
            .lazy().unique().collect()
        )
        batches.update(held["_batch_id"].to_list())
        days.update((domain, day) for day in held[PARTITION_COLUMN].to_list())
    return BronzeHoldings(frozenset(batches), frozenset(days))


def _cursor_key(drop: Drop) -> str:
    return f"{drop.domain}/{drop.day.isoformat()}"
