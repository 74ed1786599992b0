"""The code location: assets, checks, jobs, sensors and resources for ``CHURN_ENV``."""

from __future__ import annotations

import dagster as dg

from churn_assets import catalog
from churn_assets.assets.bronze import build_bronze_assets
from churn_assets.assets.decisions import build_decision_assets
from churn_assets.assets.gold import build_gold_assets
from churn_assets.assets.model import build_model_assets, build_revenue_forecast_asset
from churn_assets.assets.reports import build_report_asset
from churn_assets.assets.scores import build_scores_asset
from churn_assets.assets.silver import build_silver_assets
from churn_assets.assets.uplift import build_uplift_asset
from churn_assets.automation import (
    build_automation_sensor,
    build_daily_job,
    build_deadline_checks,
    build_deadline_sensor,
    build_forecast_job,
    build_forecast_schedule,
    build_labels_job,
    build_landing_sensor,
    build_maintenance_job,
    build_maintenance_schedule,
    build_outcomes_job,
    build_outcomes_schedule,
    build_scoring_job,
    build_scoring_schedule,
    build_training_job,
    build_training_schedule,
)
from churn_assets.resources import build_resources, environment
from churn_assets.settings import Paths, Settings, load_settings


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Complete days, from the first day of data (``[partitions] start`` when set) through
    yesterday (UTC): a day's drop is ingested once the day is over, so every partition shown
    can be filled."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.partitions.first_day.isoformat(), timezone="UTC")


def build_definitions(
    paths: Paths | None = None, settings: Settings | None = None, env: str | None = None
) -> dg.Definitions:
    paths = paths or Paths.from_env()
    settings = settings or load_settings(paths)
    env = environment(env)
    partitions_def = daily_partitions(settings)
    # Each asset says how its table is computed; the catalogue adds what the table is (group,
    # description, owners, tags, and the kinds of this environment).
    bronze = catalog.label(build_bronze_assets(partitions_def), env, settings)
    silver = catalog.label(build_silver_assets(partitions_def, settings), env, settings)
    gold = catalog.label(build_gold_assets(partitions_def, settings), env, settings)
    models = catalog.label([*build_model_assets(settings), build_uplift_asset(settings),
                            build_revenue_forecast_asset(settings)], env, settings)
    scoring = catalog.label([build_scores_asset(partitions_def, settings),
                             *build_decision_assets(partitions_def, settings),
                             build_report_asset(partitions_def, settings, paths)],
                            env, settings)
    scoring_job = build_scoring_job()
    deadline_checks = build_deadline_checks(settings)
    training = build_training_job()
    outcomes_job = build_outcomes_job()
    forecast_job = build_forecast_job()
    maintenance = build_maintenance_job(settings)
    return dg.Definitions(
        assets=[*bronze, *silver, *gold, *models, *scoring],
        asset_checks=deadline_checks,
        jobs=[build_daily_job(deadline_checks), build_labels_job(), training, scoring_job,
              outcomes_job, forecast_job, maintenance],
        schedules=[build_training_schedule(settings, training),
                   build_scoring_schedule(settings, scoring_job),
                   build_outcomes_schedule(settings, outcomes_job),
                   build_forecast_schedule(settings, forecast_job),
                   build_maintenance_schedule(settings, maintenance)],
        sensors=[
            build_landing_sensor(partitions_def, bronze, settings.sensors.interval_seconds),
            build_deadline_sensor(deadline_checks),
            build_automation_sensor(settings),
        ],
        resources=build_resources(env, paths, settings),
        # Steps share one process: on a 2-core laptop a process per step costs more than it buys.
        executor=dg.in_process_executor,
    )
