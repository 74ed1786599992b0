"""``reports/daily_brief``: one self-contained HTML page per scored day, for people.

The page is a file under ``$CHURN_HOME/reports/brief/<day>.html``; the materialization links
it at ``[reports] url`` (served by ``churn-assets report --serve``: a browser will not follow a
``file://`` link from the UI) and gives its ``file://`` URL and path too. It runs in the scoring job right after the day's scores and
decisions, and in the UI its (eager) automation condition renders the latest day when its scores
or decisions change.
"""

from datetime import date

import dagster as dg

from churn_assets import catalog
from churn_assets.reports.format import DEFAULT_CURRENCY, money
from churn_assets.reports.inputs import TREND_DAYS, BriefSource, write_page
from churn_assets.reports.server import page_url
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Paths, Settings
from churn_assets.steps.reads import CHUNK_DAYS, chunks, to_polars

BRIEF_KEY = catalog.DAILY_BRIEF.key
SCORES = catalog.SCORES.full_name


class BriefConfig(dg.Config):
    currency: str = DEFAULT_CURRENCY
    trend_days: int = TREND_DAYS


def build_report_asset(partitions_def, settings: Settings, paths: Paths) -> dg.AssetsDefinition:
    @dg.asset(
        key=BRIEF_KEY,
        # The model registry is read too, but a new model version must not re-render every
        # past day: the brief depends on the day's scores and decisions only.
        deps=[catalog.SCORES.key, catalog.ACTIONS.key, catalog.WHALES.key],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.eager(),
    )
    def daily_brief(context: dg.AssetExecutionContext, config: BriefConfig, store: TableStore,
                    mlflow: MlflowResource):
        window = DateWindow.from_time_window(context.partition_time_window)
        scored = _scored_days(store, window)
        if not scored:
            raise dg.Failure(description=f"no scores for {window}: materialize scores/daily "
                             "(the churn_scoring job) for these days first")
        location = mlflow.location()
        pages, latest = 0, None  # only the latest page's inputs are kept: a year is 365 pages
        # A chunk of days at a time: what its pages share is read once, in bounded memory.
        for chunk in chunks(window, CHUNK_DAYS):
            source = None
            for day in chunk.days:
                if day not in scored:
                    context.log.warning(f"{day} has no scores: no brief for it")
                    continue
                source = source or BriefSource(store, location, settings, chunk,
                                               config.trend_days, config.currency,
                                               mlflow.ui_url)
                inputs = source.inputs(day)
                latest = (day, write_page(inputs, paths.reports), inputs)
                pages += 1
        day, path, inputs = latest
        today = inputs.today(inputs.scores)
        return dg.MaterializeResult(metadata={
            "brief": dg.MetadataValue.url(page_url(settings.reports.url, paths.reports, path)),
            "file": dg.MetadataValue.url(path.as_uri()),
            "path": dg.MetadataValue.path(str(path)),
            "pages": pages,
            "latest_day": str(day),
            "customers_scored": today.height,
            "revenue_at_risk": money(float(today["revenue_at_risk"].sum()), config.currency),
            "size_kb": round(path.stat().st_size / 1024, 1),
            "open_with": f"churn-assets report --day {day} --serve --open",
        })

    return daily_brief


def _scored_days(store: TableStore, window: DateWindow) -> set[date]:
    if not store.exists(SCORES):
        return set()
    day = catalog.SNAPSHOT_DATE
    days = to_polars(store.read(SCORES, window, day, columns=[day]))
    return set(days[day].unique().to_list())

