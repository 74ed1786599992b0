"""CLTV on holdout revenue: the MBG/NBD + Gamma-Gamma model against a gradient-boosted
regressor on the same gold features, and which one to keep.

The holdout is the latest fully arrived window ``(cutoff, cutoff + H]``. The probabilistic
model is fitted on the features of ``cutoff`` (the history before it) and predicts H days. The
boosted model needs a label it has seen: it learns "revenue in the next H days" from the
features of ``cutoff - H`` and the revenue of ``(cutoff - H, cutoff]``, then predicts from the
features of ``cutoff``; it reads the gold features plus the MBG/NBD probability alive and
expected orders (fitted on ``cutoff - H`` too, so nothing of the holdout leaks in). LightGBM's
Tweedie objective suits revenue: most customers spend nothing in a window, a few spend a lot.

The better model is the one with the lower mean absolute error per customer on the holdout; the
totals (within ±15 %?), Spearman rank correlation and the top decile's share of actual revenue
are reported for both. That one is what scoring uses (``KeptCltv``). The boosted model only
knows the horizon it was trained on, while scoring asks for another (365 days by default): it
sets each customer's level over its own window, and the probabilistic model's curve carries
that level to the scoring horizon (the boosted revenue times the MBG/NBD ratio of the two
horizons). A season or a fading phase moves both of MBG/NBD's predictions alike, so the ratio
keeps what the curve gets right (how revenue spreads over time) and drops what it gets wrong
(its level).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from churn_assets.ml.cltv import CltvModel, actual_revenue, evaluate_cltv, fit_cltv
from churn_assets.ml.dataset import CATEGORICAL, FEATURES
from churn_assets.ml.purchase_process import DERIVED, PurchaseProcess

TOTAL_TOLERANCE = 0.15
BOOSTED_PARAMS: dict[str, Any] = {
    "objective": "tweedie", "tweedie_variance_power": 1.5, "learning_rate": 0.05,
    "num_leaves": 15, "min_data_in_leaf": 50, "feature_fraction": 0.8, "lambda_l2": 1.0,
    "num_threads": 2, "deterministic": True, "force_row_wise": True, "verbose": -1, "seed": 0,
}
BOOSTED_ROUNDS = 300


@dataclass(frozen=True)
class BoostedCltv:
    """LightGBM revenue over ``horizon_days`` from one snapshot of gold features."""

    booster: lgb.Booster
    columns: tuple[str, ...]
    process: PurchaseProcess | None
    horizon_days: int

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        return pl.DataFrame({"customer_id": features["customer_id"],
                             "cltv": self.booster.predict(_matrix(self, features))})

    def to_row(self) -> dict[str, Any]:
        """The model as table columns (``BOOSTED_COLUMNS``), so it travels like the
        probabilistic model's parameters."""
        return {"boosted_model": self.booster.model_to_string(),
                "boosted_columns": json.dumps(list(self.columns)),
                "boosted_process": json.dumps(asdict(self.process)) if self.process else None,
                "boosted_horizon_days": self.horizon_days}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BoostedCltv | None:
        """The model ``to_row`` wrote, or ``None`` when the row holds none."""
        if not row.get("boosted_model"):
            return None
        process = row.get("boosted_process")
        return cls(lgb.Booster(model_str=row["boosted_model"]),
                   tuple(json.loads(row["boosted_columns"])),
                   PurchaseProcess(**json.loads(process)) if process else None,
                   int(row["boosted_horizon_days"]))


BOOSTED_COLUMNS = {"boosted_model": pl.String, "boosted_columns": pl.String,
                   "boosted_process": pl.String, "boosted_horizon_days": pl.Int64}


@dataclass(frozen=True)
class KeptCltv:
    """The CLTV that scores: the probabilistic model alone, or, when the boosted one won on the
    holdout, the boosted level carried to any horizon by the probabilistic curve."""

    probabilistic: CltvModel
    boosted: BoostedCltv | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KeptCltv:
        """The model the ``ml/cltv_model`` table's row holds (one written before the boosted
        model could be kept is the probabilistic one)."""
        names = {f.name for f in fields(CltvModel)}
        return cls(CltvModel(**{k: v for k, v in row.items() if k in names}),
                   BoostedCltv.from_row(row))

    @property
    def kind(self) -> str:
        return "bgnbd_gamma_gamma" if self.boosted is None else "lightgbm_tweedie"

    def predict(self, features: pl.DataFrame, horizon_days: float) -> pl.DataFrame:
        """The probabilistic model's columns (``CltvModel.predict``), ``cltv`` from the kept
        model: ``boosted x curve(horizon) / curve(boosted horizon)``, 0 where the curve is 0
        (a cancelled customer)."""
        curve = self.probabilistic.predict(features, horizon_days)
        if self.boosted is None:
            return curve
        window = self.probabilistic.predict(features, self.boosted.horizon_days).select(
            "customer_id", window="cltv")
        level = self.boosted.predict(features).select(
            "customer_id", level=pl.col("cltv").clip(lower_bound=0.0))
        joined = curve.join(window, on="customer_id", how="left").join(
            level, on="customer_id", how="left")
        return joined.with_columns(cltv=pl.when(pl.col("window") > 0.0).then(
            pl.col("level") * pl.col("cltv") / pl.col("window")).otherwise(0.0)
        ).drop("window", "level")


def fit_boosted_cltv(features: pl.DataFrame, revenue: pl.DataFrame,
                     horizon_days: int) -> BoostedCltv:
    """Learn the revenue (``customer_id``, ``revenue``; absent = 0) that followed one snapshot
    of gold ``features`` over ``horizon_days``."""
    target = features.select("customer_id").join(revenue, on="customer_id", how="left")[
        "revenue"].fill_null(0.0).clip(lower_bound=0.0).to_numpy()
    counts = features.select(pl.col(FEATURES).count()).row(0, named=True)
    columns = tuple(c for c in FEATURES if counts[c] > 0 and c not in CATEGORICAL
                    and c not in ("snapshot_date", "customer_id"))
    process = PurchaseProcess.fit(features, horizon_days)
    model = BoostedCltv(None, columns, process, horizon_days)  # type: ignore[arg-type]
    data = lgb.Dataset(_matrix(model, features), target, free_raw_data=False)
    booster = lgb.train(BOOSTED_PARAMS, data, num_boost_round=BOOSTED_ROUNDS)
    return BoostedCltv(booster, columns, process, horizon_days)


def _matrix(model: BoostedCltv, features: pl.DataFrame) -> np.ndarray:
    frame = model.process.add(features) if model.process is not None else features
    names = [*model.columns, *(DERIVED if model.process is not None else ())]
    return frame.select(pl.col(c).cast(pl.Float64) for c in names).to_numpy()


def compare_cltv(features_at: dict[date, pl.DataFrame], payments: pl.DataFrame, cutoff: date,
                 horizon_days: int, history_start: date | None = None) -> dict[str, Any]:
    """Both models on the holdout ``(cutoff, cutoff + horizon_days]``.

    ``features_at`` holds one snapshot of gold features (every known customer) for ``cutoff``
    and, for the boosted model, ``cutoff - horizon_days`` (without it only the probabilistic
    model is evaluated). Returns each model's evaluation, its mean absolute error per customer
    and total error, and ``chosen`` with the reason.
    """
    end = cutoff + timedelta(days=horizon_days)
    now = features_at[cutoff]
    actual = actual_revenue(payments, cutoff, end)
    predictions = {
        "bgnbd_gamma_gamma": fit_cltv(now, history_start).predict(now, horizon_days)
        .select("customer_id", "cltv"),
    }
    earlier = cutoff - timedelta(days=horizon_days)
    if earlier in features_at:
        then = features_at[earlier]
        boosted = fit_boosted_cltv(then, actual_revenue(payments, earlier, cutoff), horizon_days)
        predictions["lightgbm_tweedie"] = boosted.predict(now)
    report: dict[str, Any] = {"cutoff": cutoff.isoformat(), "horizon_days": horizon_days,
                              "models": {}}
    for name, predicted in predictions.items():
        evaluation = evaluate_cltv(predicted, actual).as_dict()
        joined = predicted.join(actual, on="customer_id", how="left").with_columns(
            pl.col("revenue").fill_null(0.0))
        evaluation["mae_per_customer"] = float((joined["cltv"] - joined["revenue"]).abs().mean())
        total = evaluation["total_actual"]
        evaluation["total_error"] = (evaluation["total_predicted"] - total) / total if total else None
        evaluation["total_within_15pct"] = (evaluation["total_error"] is not None
                                            and abs(evaluation["total_error"]) <= TOTAL_TOLERANCE)
        report["models"][name] = evaluation
    best = min(report["models"], key=lambda n: report["models"][n]["mae_per_customer"])
    report["chosen"] = best
    report["reason"] = ("lower mean absolute error per customer on the holdout: " + ", ".join(
        f"{n} {v['mae_per_customer']:.3f}" for n, v in report["models"].items()))
    return report
