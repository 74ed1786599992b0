"""Where the project writes, and the business settings that steer it.

Everything the project writes lives under one data root, ``$CHURN_HOME`` (default ``./data``).
Business settings are one typed model; ``$CHURN_HOME/settings.toml`` overrides any default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from churn_assets.decisions.config import DecisionSettings

DOMAINS: tuple[str, ...] = ("customers", "payments", "events", "tickets", "marketing")


def churn_home() -> Path:
    """The data root: ``$CHURN_HOME`` if set, else ``./data`` relative to the working directory."""
    return Path(os.environ.get("CHURN_HOME") or "data").expanduser().resolve()


@dataclass(frozen=True)
class Paths:
    """The layout of the data root. Nothing else in the project builds these paths by hand."""

    home: Path

    @property
    def landing(self) -> Path:
        """Raw daily drops: ``landing/<domain>/<YYYY-MM-DD>/…`` plus a completion marker."""
        return self.home / "landing"

    @property
    def lake(self) -> Path:
        """Delta tables, one folder per ``<layer>/<table>``."""
        return self.home / "lake"

    @property
    def truth(self) -> Path:
        """The simulator's ground truth. Never read by the pipeline; only by evaluations."""
        return self.home / "truth"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def settings_file(self) -> Path:
        return self.home / "settings.toml"

    @classmethod
    def from_env(cls) -> Paths:
        return cls(churn_home())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The first partition while no data has landed yet (so a first drop of history is inside them).
NO_DATA_START = date(2024, 1, 1)


class PartitionSettings(_Section):
    start: date | None = Field(
        None,
        description="First day of every daily partition; data before it cannot be ingested. "
        "Unset (default): the first day of data in the landing zone, so the partitions are "
        "the data's days.",
    )
    _first_landed: date | None = PrivateAttr(None)

    @property
    def first_day(self) -> date:
        """The first daily partition: ``start`` if set, else the first landed day (as found by
        ``load_settings``), else ``NO_DATA_START``."""
        return self.start or self._first_landed or NO_DATA_START


class ImportSettings(_Section):
    """What `churn-assets import` accepts as a plausible date (rows outside are rejected)."""

    max_days_after_today: int = Field(
        1, ge=0, le=3650,
        description="Rows dated more than this many days after today are rejected (a clock or "
        "export error, such as 2999-01-01).",
    )
    earliest: date = Field(
        date(1990, 1, 1),
        description="Rows dated before this day are rejected as implausible (such as 0001-01-01).",
    )


class Attribute(_Section):
    """One extra customer column silver keeps (an allow-list: every other column stays in bronze)."""

    name: str = Field(min_length=1, description="The column's name as the export writes it.")
    type: Literal["text", "category", "number", "integer", "timestamp"] = Field(
        "text", description="category: lower-cased labels (a value that looks like an e-mail "
        "or phone number is rejected); number/integer/timestamp: parsed like contract columns.")


class CustomerSettings(_Section):
    attributes: list[Attribute] = Field(
        default_factory=list,
        description="Customer columns beyond the contract that silver keeps, each with its type.",
    )

    @model_validator(mode="after")
    def _not_personal_nor_contract(self) -> CustomerSettings:
        from churn_assets.ingest.columns import COLUMNS
        from churn_assets.transforms.personal import personal_column

        seen: set[str] = set()
        contract = {column.lower() for column in COLUMNS["customers"]}
        for attribute in self.attributes:
            key = attribute.name.lower()
            if key in contract or key.startswith("_"):
                raise ValueError(f"attribute {attribute.name!r} is a contract or metadata "
                                 "column; map it with --map instead")
            if personal_column(attribute.name):
                raise ValueError(f"attribute {attribute.name!r} looks like personal data, "
                                 "which silver never keeps raw; leave it in bronze")
            if key in seen:
                raise ValueError(f"attribute {attribute.name!r} is declared twice")
            seen.add(key)
        return self

    def kinds(self) -> dict[str, str]:
        from churn_assets.transforms.contracts import ATTRIBUTE_KINDS

        return {a.name: ATTRIBUTE_KINDS[a.type] for a in self.attributes}


class LabelSettings(_Section):
    horizon_days: int = Field(
        90, ge=1, le=730,
        description="A customer churned on day D when no paid order follows in (D, D+horizon].",
    )


class CheckSettings(_Section):
    """Thresholds of the data expectations (asset checks) on silver."""

    # A broken export (a changed date or decimal format) rejects most rows; ordinary dirt a few.
    max_reject_share: float = Field(
        0.10, ge=0, le=1,
        description="Share of a window's bronze rows that may be rejected before gold is stopped.",
    )
    # An orphan row still counts for its customer (known from payments, profile unknown), so a
    # few only warn; a large share means ids no longer join across exports, which splits
    # customers in two and poisons features.
    max_orphan_share: float = Field(
        0.10, ge=0, le=1,
        description="Share of a day's customers named by rows but not (yet) in silver.customers "
        "that is tolerated; above it warns, and stops gold when proven (see min_bad_rows).",
    )
    # A share judged on a handful of rows is noise (1 orphan of 6 is 17 %): a share check blocks
    # only when its 95 % interval lies above the tolerance and this many rows are bad.
    min_bad_rows: int = Field(
        10, ge=1,
        description="Fewest bad rows (rejected rows; orphan customers) in a day before a share "
        "check (reject_share, references_known_customers) may stop gold; fewer only warn.",
    )
    max_days_ahead: int = Field(
        1, ge=0, le=7,
        description="How far (days) an event time may lie after the day it arrived (clock skew).",
    )
    volume_tolerance: float = Field(
        0.5, gt=0,
        description="Warn when a day's rows differ from the trailing 7-day mean by more than this.",
    )


class FreshnessSettings(_Section):
    due_hours: int = Field(
        6, ge=1, le=72,
        description="Silver and gold are late this many hours after the day they cover ends.",
    )
    gold_deadline: str = Field(
        "06:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="UTC time by which yesterday's gold partition must exist (HH:MM).",
    )


class SensorSettings(_Section):
    interval_seconds: int = Field(
        30, ge=1, le=3600,
        description="How often the landing and automation sensors look for work in the UI.",
    )


class ModelSettings(_Section):
    """The churn and CLTV models: training window, validation, the champion gate, retraining."""

    training_days: int = Field(
        120, ge=7,
        description="Latest labelled snapshot days the churn model trains and validates on "
        "(few days make a noisy model; the gate still judges it).",
    )
    validation_days: int = Field(
        14, ge=1, description="Latest labelled snapshot days held out for validation.")
    snapshot_every_days: int = Field(
        1, ge=1, le=90,
        description="Train on every n-th labelled snapshot day (validation keeps every day): "
        "a long window for a sparse business without repeating near-identical rows.")
    weight_customers: bool = Field(
        False, description="Weight every training customer equally, however many snapshot "
        "days they are at risk on (frequent buyers otherwise dominate).")
    min_gain_over_baseline: float = Field(
        0.0, ge=0, le=1,
        description="LightGBM scores only if its validation ROC-AUC beats the logistic "
        "RFM-T baseline's by more than this; otherwise the baseline is registered and scores.")
    calibration: Literal["isotonic", "platt"] = Field(
        "isotonic", description="How raw scores become probabilities (on held-out customers).")
    calibration_days: int = Field(
        14, ge=0,
        description="Fit the probabilities on the held-out customers of the latest this many "
        "trainable snapshot days, every day of them: the closed outcomes nearest today, so a "
        "churn rate that drifts with the season or the customers' age is the current one "
        "(0: the whole training window).")
    auc_floor: float = Field(
        0.80, ge=0, le=1, description="A challenger's validation ROC-AUC must reach this.")
    max_auc_drop: float = Field(
        0.01, ge=0, le=1,
        description="...and be at most this much below the champion's on the same rows.")
    beat_recency: bool = Field(
        True, description="...and rank better than recency alone on those rows (off only for "
        "experiments on worlds too small or short for a model to beat it).")
    retrain_cron: str = Field(
        "0 3 * * 1", description="When the training job runs (UTC cron; default Mondays 03:00).")
    cltv_horizon_days: int = Field(
        365, ge=1, le=3650, description="Horizon of the expected revenue (CLTV).")


class ScoringSettings(_Section):
    schedule_cron: str = Field(
        "0 6 * * *",
        description="When yesterday's scores and decisions are made (UTC cron; default 06:00).",
    )
    deadline: str = Field(
        "07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="UTC time by which yesterday's scores must exist (HH:MM).",
    )
    outcome_window_days: int = Field(
        30, ge=1, le=365,
        description="A campaign's outcome (retained, revenue) is measured over this many days.",
    )
    min_n_for_save_rates: int = Field(
        1000, ge=1,
        description="Measured uplift replaces a configured save rate when its 95% interval "
        "excludes zero or both arms have at least this many customers.",
    )


class ForecastSettings(_Section):
    """The weekly revenue forecast (``ml/revenue_forecast``)."""

    horizon_weeks: int = Field(12, ge=1, le=104, description="Weeks forecast ahead.")
    season_weeks: int = Field(
        52, ge=2, le=104, description="The season of weekly revenue; used by the seasonal-naive "
        "baseline and as a lag once every backtest origin has more history than this.")
    backtest_origins: int = Field(
        4, ge=1, le=52, description="Rolling origins of the backtest that picks the model.")
    origin_step_weeks: int = Field(
        4, ge=1, le=52, description="Weeks between backtest origins (the last one is this many "
        "weeks before the end of the history).")
    min_train_weeks: int = Field(
        12, ge=4, le=520, description="Weeks of history before the earliest backtest origin; "
        "with less the asset reports 'not enough history' and forecasts nothing.")
    interval: float = Field(0.8, gt=0, lt=1, description="Nominal coverage of the intervals.")
    schedule_cron: str = Field(
        "30 3 * * 1", description="When the forecast job runs (UTC cron; default Mondays "
        "03:30, after the weekly training).")


class MaintenanceSettings(_Section):
    """Upkeep of the stored tables: compaction of small files, vacuum of old ones, and how many
    days of gold state snapshots are kept."""

    schedule_cron: str = Field(
        "0 4 * * 0",
        description="When the delta_maintenance job compacts and vacuums every table (UTC "
        "cron; default Sundays 04:00).")
    vacuum_retention_hours: int = Field(
        168, ge=0,
        description="Files no table version of the last this many hours reads are deleted. "
        "Readers of an older version (a long run, time travel) fail once its files are gone: "
        "keep it longer than any run (default 7 days, Delta's own default).")
    small_file_mb: float = Field(
        16.0, gt=0,
        description="A data file under this size counts as small in the upkeep report.")
    state_days: int = Field(
        35, ge=0,
        description="Days of gold/customer_state and customer_categories snapshots kept: the "
        "newest this many and each run's last day; older days are deleted as gold writes "
        "(0 keeps every day). Only the day before is read to continue; a rerun of an older "
        "day rebuilds its state from history, to the same rows.")


class ReportSettings(_Section):
    """Where people open the daily briefs."""

    url: str = Field(
        "http://127.0.0.1:8765",
        description="Base URL the briefs are served at (`churn-assets report --serve` serves "
        "$CHURN_HOME/reports there locally); the Dagster metadata links each day's brief to "
        "<url>/brief/<day>.html, which a browser opens from the UI (a file:// link it would "
        "refuse).")


class Settings(_Section):
    """Business settings: every section and key is documented in README.md."""

    partitions: PartitionSettings = PartitionSettings()
    imports: ImportSettings = ImportSettings()
    customers: CustomerSettings = CustomerSettings()
    labels: LabelSettings = LabelSettings()
    checks: CheckSettings = CheckSettings()
    freshness: FreshnessSettings = FreshnessSettings()
    sensors: SensorSettings = SensorSettings()
    model: ModelSettings = ModelSettings()
    scoring: ScoringSettings = ScoringSettings()
    decisions: DecisionSettings = DecisionSettings()
    forecast: ForecastSettings = ForecastSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    reports: ReportSettings = ReportSettings()


class SettingsError(ValueError):
    pass


def load_settings(paths: Paths | None = None) -> Settings:
    """Defaults, overridden by ``$CHURN_HOME/settings.toml`` when that file exists; the first
    partition follows the data under ``paths`` unless the file sets it."""
    paths = paths or Paths.from_env()
    settings = _read_settings(paths)
    settings.partitions._first_landed = first_landed_day(paths.landing)
    return settings


def _read_settings(paths: Paths) -> Settings:
    if not paths.settings_file.exists():
        return Settings()
    try:
        raw = tomllib.loads(paths.settings_file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{paths.settings_file} is not valid TOML: {exc}") from exc
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"{paths.settings_file} has invalid settings:\n{exc}") from exc


def first_landed_day(landing: Path) -> date | None:
    """The first day any domain has a complete drop (``landing/<domain>/<day>/_SUCCESS``).
    Folder names only: this runs whenever the code location loads."""
    first = None
    for domain in DOMAINS:
        try:
            names = os.listdir(landing / domain)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in sorted(names):
            try:
                day = date.fromisoformat(name)
            except ValueError:
                continue
            if len(name) == 10 and (landing / domain / name / "_SUCCESS").exists():
                first = day if first is None else min(first, day)
                break
    return first
