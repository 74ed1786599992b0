"""The training set: gold features joined to churn labels, a time-based split, and the fixed
feature encoding a model carries with it.

The split is by time, never random. Validation is the latest ``validation_days`` labelled
snapshot days. A row may train a model only if its label window has closed by the first
validation snapshot: ``label_window_end <= validation_start``. (With a 90-day label, the rows
of the last 90 days before validation are in neither set: their outcomes overlap the
validation period, and training on them would leak it.) The calibration slice is a share of
the *customers* of the training period, held out from the booster: a customer's rows on
neighbouring days share an outcome, so a row-level hold-out would calibrate on near-copies of
training rows.

``FeatureSpec`` is the encoding a model is trained with and keeps: numeric columns as float64
(nulls as NaN, booleans as 0/1) and categorical columns as codes into a *fixed* category list
(unseen or null: NaN), so scoring uses the codes training used. Columns entirely null in
training (a domain the business does not have) are dropped and recorded, not fatal.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta

import narwhals as nw
import numpy as np
import pandas as pd
import polars as pl

from churn_assets.ml.purchase_process import DERIVED, NEEDS, PurchaseProcess
from churn_assets.transforms.gold import FEATURE_SCHEMA

KEY = ["snapshot_date", "customer_id"]
LABEL = "churned"
CATEGORICAL = ("segment", "region", "acquisition_channel", "status", "last_ticket_category")
FEATURES = tuple(c for c in FEATURE_SCHEMA if c not in KEY)


def at_risk(horizon_days: int) -> nw.Expr:
    """The customers a churn model is for on a snapshot day: not cancelled, and either ordered
    within the label horizon or are new enough not to have had the chance.

    The rest have already churned by the label's own definition (no paid order in H days):
    their label is a foregone conclusion, and training or validating on them inflates AUC
    without helping to rank anyone the business can still keep. A narwhals expression, so
    the filter runs in the engine before anything is collected to the driver.
    """
    recent_order = nw.col("days_since_last_order") <= horizon_days
    new_customer = nw.col("days_since_last_order").is_null() & (
        nw.col("tenure_days") <= horizon_days)
    return ~nw.col("is_cancelled").fill_null(False) & (recent_order | new_customer)


def only_at_risk(frame, horizon_days: int):
    """``frame`` (a native Polars or Spark frame) filtered to ``at_risk``, same engine."""
    return nw.from_native(frame).filter(at_risk(horizon_days)).to_native()


def training_frame(features: pl.DataFrame | pl.LazyFrame,
                   labels: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Features with their label: an inner join on (snapshot_date, customer_id), sorted by it.

    Snapshots without labels yet (their window is still open) drop out. Raises when the join
    is empty, naming both date ranges, because that is always a mistake upstream.
    """
    features, labels = features.lazy().collect(), labels.lazy().collect()
    for name, frame, needed in (("features", features, KEY),
                                ("labels", labels, [*KEY, LABEL, "label_window_end"])):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"training_frame: {name} lack columns {missing}")
    joined = features.join(labels.select(*KEY, LABEL, "label_window_end"), on=KEY, how="inner")
    joined = joined.filter(pl.col(LABEL).is_not_null()).sort(KEY)
    if joined.height == 0:
        raise ValueError(
            f"training_frame: no feature row has a label. Features cover "
            f"{_date_range(features)}, labels cover {_date_range(labels)}.")
    return joined


@dataclass(frozen=True)
class TimeSplit:
    """Row positions (into the frame given to ``time_split``) and the dates they span."""

    train: np.ndarray
    calibration: np.ndarray
    validation: np.ndarray
    horizon_days: int
    train_start: date
    train_end: date
    validation_start: date
    validation_end: date
    # The calibration rows the probability map is fitted on: those of the latest
    # ``calibration_days`` trainable snapshot days (all of ``calibration`` when not limited).
    calibration_fit: np.ndarray | None = None

    @property
    def calibration_fit_rows(self) -> np.ndarray:
        return self.calibration if self.calibration_fit is None else self.calibration_fit

    def describe(self) -> dict[str, str | int]:
        """The data window, as MLflow params."""
        return {
            "horizon_days": self.horizon_days,
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "validation_start": self.validation_start.isoformat(),
            "validation_end": self.validation_end.isoformat(),
            "train_rows": int(self.train.size), "calibration_rows": int(self.calibration.size),
            "calibration_fit_rows": int(self.calibration_fit_rows.size),
            "validation_rows": int(self.validation.size),
        }


def time_split(frame: pl.DataFrame, horizon_days: int | None = None, validation_days: int = 14,
               calibration_share: float = 0.2, seed: int = 0,
               calibration_days: int | None = None) -> TimeSplit:
    """Train / calibration / validation rows of a ``training_frame``.

    ``calibration_days`` limits the rows the probability map is fitted on
    (``calibration_fit``) to the held-out customers of the latest that many trainable snapshot
    days: the closed outcomes nearest the validation period. A churn rate that drifts with the
    season or the age of the customer base moves the calibration a year-long window averages.

    ``horizon_days`` is checked against the labels' own ``label_window_end`` (``None``: read
    from them). Raises a ``ValueError`` saying what to change when the labelled days cannot
    hold a validation period plus a label horizon of training days before it.
    """
    if validation_days < 1:
        raise ValueError(f"validation_days must be at least 1, got {validation_days}")
    if not 0.0 < calibration_share < 1.0:
        raise ValueError(f"calibration_share must be in (0, 1), got {calibration_share}")
    horizons = (frame["label_window_end"] - frame["snapshot_date"]).dt.total_days().unique()
    if horizons.len() != 1:
        raise ValueError(f"labels mix horizons {sorted(horizons.to_list())} days; train on one")
    horizon = int(horizons.item())
    if horizon_days is not None and horizon_days != horizon:
        raise ValueError(f"labels have a {horizon}-day horizon, not the {horizon_days} days "
                         f"asked for: rebuild the labels or pass horizon_days={horizon}")

    days = frame["snapshot_date"]
    first, last = days.min(), days.max()
    validation_start = last - timedelta(days=validation_days - 1)
    in_validation = (days >= validation_start).to_numpy()
    may_train = (frame["label_window_end"] <= validation_start).to_numpy()
    if not may_train.any():
        span = (last - first).days + 1
        raise ValueError(
            f"too few labelled days for a time-based split: labels cover {first}..{last} "
            f"({span} snapshot days), but {validation_days} validation days plus a "
            f"{horizon}-day label horizon need more than {validation_days + horizon}. "
            f"Collect (or simulate) a longer history, lower validation_days, or shorten the "
            f"label horizon.")

    customers = frame["customer_id"].to_numpy()
    held_out = _customer_share(customers, calibration_share, seed)
    train = np.flatnonzero(may_train & ~held_out)
    calibration = np.flatnonzero(may_train & held_out)
    validation = np.flatnonzero(in_validation)
    labels = frame[LABEL].to_numpy()
    for name, rows in (("training", train), ("calibration", calibration),
                       ("validation", validation)):
        if rows.size == 0 or labels[rows].min() == labels[rows].max():
            raise ValueError(
                f"the {name} rows ({rows.size}) need both churned and retained customers; "
                f"use more customers or days, or change validation_days/calibration_share")
    trained_days = days.gather(np.flatnonzero(may_train))
    calibration_fit = None
    if calibration_days is not None:
        if calibration_days < 1:
            raise ValueError(f"calibration_days must be at least 1, got {calibration_days}")
        recent = days.gather(calibration) > trained_days.max() - timedelta(days=calibration_days)
        calibration_fit = calibration[recent.to_numpy()]
        fit_labels = labels[calibration_fit]
        if fit_labels.size == 0 or fit_labels.min() == fit_labels.max():
            raise ValueError(
                f"the calibration rows of the latest {calibration_days} trainable days "
                f"({calibration_fit.size}) need both churned and retained customers; raise "
                f"calibration_days or calibration_share")
    return TimeSplit(train, calibration, validation, horizon, trained_days.min(),
                     trained_days.max(), validation_start, last, calibration_fit)


def _customer_share(customers: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A stable pseudo-random ``share`` of customers, the same one whatever else is in the
    frame (a CRC of the id, not a draw), so retraining holds out the same people."""
    unique, inverse = np.unique(customers, return_inverse=True)
    buckets = np.fromiter((zlib.crc32(f"{seed}:{c}".encode()) % 10_000 for c in unique),
                          dtype=np.int64, count=unique.size)
    return (buckets < share * 10_000)[inverse]


@dataclass(frozen=True)
class FeatureSpec:
    """The columns a model reads and how: kept with the model, so scoring encodes as training
    did. ``categories[c]`` fixes the codes of categorical column ``c`` (its position).

    ``process`` (optional) is a fitted ``PurchaseProcess``: the model then also reads its
    ``DERIVED`` columns, computed from the gold columns of each row (``inputs``) on the way in.
    """

    numeric: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]
    dropped: tuple[str, ...]
    process: PurchaseProcess | None = None

    @classmethod
    def fit(cls, frame: pl.DataFrame, process: PurchaseProcess | None = None,
            only: tuple[str, ...] | None = None) -> FeatureSpec:
        """Numeric and categorical columns of ``frame`` that hold any value; categories sorted.
        ``only`` restricts the candidates (a baseline on a few columns)."""
        candidates = only or FEATURES
        missing = [c for c in candidates if c not in frame.columns]
        if missing:
            raise ValueError(f"the feature frame lacks columns {missing} (see FEATURE_SCHEMA)")
        counts = frame.select(pl.col(candidates).count()).row(0, named=True)
        used = [c for c in candidates if counts[c] > 0]
        categories = {
            c: tuple(sorted(frame[c].drop_nulls().cast(pl.String).unique().to_list()))
            for c in used if c in CATEGORICAL
        }
        numeric = tuple(c for c in used if c not in CATEGORICAL)
        return cls(numeric, categories, tuple(c for c in candidates if counts[c] == 0), process)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The gold features a scored frame must hold, in ``FEATURE_SCHEMA`` order: those the
        model reads and those its derived columns are computed from."""
        kept = set(self.numeric) | set(self.categories)
        if self.process is not None:
            kept |= set(NEEDS)
        return tuple(c for c in FEATURES if c in kept)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every feature the model reads: the gold ones, then the derived ones."""
        kept = set(self.numeric) | set(self.categories)
        return tuple(c for c in FEATURES if c in kept) + (
            DERIVED if self.process is not None else ())

    def is_text(self, column: str) -> bool:
        return column in self.categories or column in CATEGORICAL

    @property
    def categorical_positions(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c in self.categories]

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """float64 (rows, columns): numbers as they are, categories as codes, missing as NaN."""
        self._check(frame)
        if self.process is not None and any(c not in frame.columns for c in DERIVED):
            frame = self.process.add(frame)
        encoded = frame.select(
            pl.col(c).replace_strict(list(self.categories[c]), list(range(len(self.categories[c]))),
                                     default=None, return_dtype=pl.Float64)
            if c in self.categories else pl.col(c).cast(pl.Float64)
            for c in self.columns
        )
        return encoded.to_numpy().astype(np.float64, copy=False)

    def model_input(self, frame: pl.DataFrame) -> pd.DataFrame:
        """The pandas frame the registered model takes: ``customer_id`` and the features, with
        numbers as float64 and categories as text (what its MLflow signature describes)."""
        self._check(frame, ["customer_id"])
        return frame.select(
            pl.col("customer_id").cast(pl.String),
            *(pl.col(c).cast(pl.String) if self.is_text(c) else pl.col(c).cast(pl.Float64)
              for c in self.inputs),
        ).to_pandas()

    def _check(self, frame: pl.DataFrame, extra: list[str] | None = None) -> None:
        needed = [*(extra or []), *self.inputs]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"the frame to score lacks columns {missing} the model was "
                             f"trained on; pass gold customer_features rows (FEATURE_SCHEMA)")


def _date_range(frame: pl.DataFrame) -> str:
    if frame.height == 0 or "snapshot_date" not in frame.columns:
        return "nothing"
    return f"{frame['snapshot_date'].min()}..{frame['snapshot_date'].max()}"
