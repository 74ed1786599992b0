"""The churn model: LightGBM with a logistic-regression baseline on exactly the same split,
both calibrated on the same held-out customers, explained with SHAP values.

- LightGBM reads categories natively (codes fixed by ``FeatureSpec``) and NaN as missing. Early
  stopping watches the calibration slice, not validation: validation stays untouched until the
  final metrics and the promotion gate, so the AUC they compare was never used to pick anything.
- LightGBM also reads the MBG/NBD probability alive and expected orders over the horizon
  (``purchase_process.py``), fitted on the training rows and kept in its ``FeatureSpec``.
- The baseline is a logistic regression on recency, frequency, monetary value and tenure
  (``BASELINE_FEATURES``): median imputation (with missing indicators) + a signed log of the
  heavy-tailed counts and amounts + standard scaling + L2 logistic regression. LightGBM has to
  beat it (by ``min_gain_over_baseline``) to be the model that scores; otherwise the baseline
  scores (``choose_scorer``). Both are reported with the AUC of recency alone.
- Calibration maps raw scores to probabilities on the calibration slice: centred isotonic
  (default) or Platt (a logistic fit on the raw log-odds). Plain isotonic regression is a step
  function: it ties every row of a step, which cost ~0.007 ROC-AUC on a 2,000-row slice here
  (enough to fail a 0.01 promotion margin on noise). Centred isotonic regression (Oron &
  Flournoy 2017) interpolates linearly between the centres of the isotonic steps, so it is
  strictly increasing inside the fitted range and keeps the model's ranking, while calibrating
  like isotonic. The raw LightGBM score ranks; the calibrated one is what "30 % risk" means.
- Explanations are LightGBM's exact tree SHAP values (``pred_contrib=True``) on the raw
  log-odds scale: global importance is their mean absolute value on the validation rows, and a
  customer's drivers are the features that push their risk up the most.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from churn_assets.ml import metrics as m
from churn_assets.ml.contributions import tree_contributions
from churn_assets.ml.dataset import LABEL, FeatureSpec, TimeSplit, time_split, training_frame
from churn_assets.ml.purchase_process import PurchaseProcess
from churn_assets.settings import ModelSettings

DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 100,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "cat_smooth": 10.0, "num_threads": 2, "deterministic": True, "force_row_wise": True,
    "verbose": -1,
}
DRIVERS = 3
# The baseline a boosted model must beat: a plain logistic regression on recency, frequency,
# monetary value and tenure (RFM-T), the yardstick retail analysts use first.
BASELINE_FEATURES = ("days_since_last_order", "orders_total", "revenue_total", "avg_order_value",
                     "tenure_days")


@dataclass(frozen=True)
class ChurnTrainingConfig:
    """How to train. ``horizon_days=None`` takes the labels' horizon."""

    validation_days: int = 14
    calibration_share: float = 0.2
    calibration: Literal["isotonic", "platt"] = "isotonic"
    # Fit the probability map on the held-out customers of the latest this many trainable
    # snapshot days (every day, whatever ``snapshot_every_days``); None: the whole window.
    calibration_days: int | None = 14
    horizon_days: int | None = None
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    seed: int = 0
    lgbm_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LGBM_PARAMS))
    # Train (and calibrate) on every n-th trainable snapshot day, counted back from the newest;
    # validation keeps every day. Neighbouring days repeat the same customers almost unchanged.
    snapshot_every_days: int = 1
    # Weight each training customer's rows to sum to the same total, so a frequent buyer, at
    # risk on every snapshot day, counts as much as a one-time buyer at risk on a few.
    weight_customers: bool = False
    # The boosted model scores only if its validation ROC-AUC beats the baseline's by this much.
    min_gain_over_baseline: float = 0.0
    # Add the MBG/NBD probability alive and expected orders as model inputs.
    purchase_process: bool = True

    @classmethod
    def from_settings(cls, model: ModelSettings, horizon_days: int) -> ChurnTrainingConfig:
        """The ``[model]`` section's training choices for labels of ``horizon_days``."""
        return cls(validation_days=model.validation_days, calibration=model.calibration,
                   calibration_days=model.calibration_days or None, horizon_days=horizon_days,
                   snapshot_every_days=model.snapshot_every_days,
                   weight_customers=model.weight_customers,
                   min_gain_over_baseline=model.min_gain_over_baseline)

    def __post_init__(self) -> None:
        if self.snapshot_every_days < 1:
            raise ValueError(f"snapshot_every_days must be at least 1, got {self.snapshot_every_days}")

    def params(self) -> dict[str, Any]:
        """Flat, loggable parameters."""
        return {"validation_days": self.validation_days,
                "calibration_share": self.calibration_share, "calibration": self.calibration,
                "calibration_days": self.calibration_days,
                "num_boost_round": self.num_boost_round,
                "early_stopping_rounds": self.early_stopping_rounds, "seed": self.seed,
                "snapshot_every_days": self.snapshot_every_days,
                "weight_customers": self.weight_customers,
                "min_gain_over_baseline": self.min_gain_over_baseline,
                "purchase_process": self.purchase_process,
                **{f"lgbm_{k}": v for k, v in self.lgbm_params.items()}}


class Calibrator:
    """Raw score -> probability, fitted on held-out rows (isotonic or Platt)."""

    def __init__(self, method: Literal["isotonic", "platt"]):
        if method not in ("isotonic", "platt"):
            raise ValueError(f"calibration must be 'isotonic' or 'platt', got {method!r}")
        self.method = method

    def fit(self, raw: np.ndarray, churned: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            steps = IsotonicRegression(y_min=0.0, y_max=1.0).fit(raw, churned).predict(raw)
            # Centred: one knot per step, at the mean raw score of the rows it holds.
            self.knots_y, step_of = np.unique(steps, return_inverse=True)
            self.knots_x = np.bincount(step_of, weights=raw) / np.bincount(step_of)
        else:
            self._platt = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], churned)
        return self

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(raw, self.knots_x, self.knots_y)
        return self._platt.predict_proba(_logit(raw)[:, None])[:, 1]


class _Explained(ABC):
    """Drivers and scores from per-feature contributions; shared by both kinds of model. The
    work is done on the encoded feature matrix (``spec.matrix``), built once per batch."""

    spec: FeatureSpec
    calibrator: Calibrator

    @abstractmethod
    def _raw(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated score per row of an encoded matrix."""

    @abstractmethod
    def _contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-row, per-feature log-odds contributions, the bias in the last column."""

    def raw_proba(self, frame: pl.DataFrame) -> np.ndarray:
        return self._raw(self.spec.matrix(frame))

    def predict_proba(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated probability of churning within ``horizon_days``, one per row."""
        return self._calibrated(self.spec.matrix(frame))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Per-row, per-feature log-odds contributions, the bias in the last column."""
        return self._contributions(self.spec.matrix(frame))

    def _calibrated(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.calibrator(self._raw(x)), 0.0, 1.0)

    def drivers(self, frame: pl.DataFrame, k: int = DRIVERS) -> pl.DataFrame:
        """Per row, the ``k`` features that raise the churn risk the most (largest contribution
        first): ``driver_<i>`` (feature name) and ``driver_<i>_impact`` (log-odds). A customer
        with fewer than ``k`` risk-raising features gets the least risk-lowering ones next
        (negative impact)."""
        return self._drivers(self.spec.matrix(frame), k)

    def _drivers(self, x: np.ndarray, k: int) -> pl.DataFrame:
        contrib = self._contributions(x)[:, :-1]
        top = _top_columns(contrib, min(k, contrib.shape[1]))
        names = pl.Series(list(self.spec.columns), dtype=pl.String)
        impact = np.take_along_axis(contrib, top, axis=1)
        return pl.DataFrame({
            col: values for i in range(k) for col, values in (
                (f"driver_{i + 1}", names.gather(top[:, i])),
                (f"driver_{i + 1}_impact", impact[:, i]))
        })

    def score(self, frame: pl.DataFrame, k: int = DRIVERS) -> pl.DataFrame:
        """``customer_id``, ``churn_probability`` and the top-``k`` drivers of every row."""
        x = self.spec.matrix(frame)
        return pl.concat([
            frame.select(pl.col("customer_id").cast(pl.String)),
            pl.DataFrame({"churn_probability": self._calibrated(x)}),
            self._drivers(x, k),
        ], how="horizontal")


@dataclass
class ChurnModel(_Explained):
    """A trained churn model, everything scoring needs: the feature encoding, the booster, the
    calibration and the global importance (mean |SHAP| on validation, highest first)."""

    spec: FeatureSpec
    booster: lgb.Booster
    calibrator: Calibrator
    importance: pl.DataFrame
    horizon_days: int
    kind: str = "lightgbm"

    def _raw(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x)

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        """SHAP values (rows, features + 1 for the bias) on the raw log-odds scale: LightGBM's
        own, computed once per way through each tree on large batches (``contributions.py``)."""
        return tree_contributions(self.booster, x)


@dataclass
class BaselineModel(_Explained):
    """The logistic-regression baseline on recency, frequency, monetary value and tenure,
    calibrated like the model. It can score on its own: when the boosted model does not beat
    it, it is what gets registered. Its drivers are the logistic terms of each feature (a
    feature's standardized, log-scaled value times its coefficient, plus its missing
    indicator's term), on the same log-odds scale as SHAP values."""

    spec: FeatureSpec
    pipeline: Pipeline
    calibrator: Calibrator
    horizon_days: int = 0
    importance: pl.DataFrame = field(default_factory=pl.DataFrame)
    kind: str = "logistic_baseline"

    def _raw(self, x: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(x)[:, 1]

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        encode = self.pipeline.named_steps["encode"]
        design = encode.transform(x)
        design = design.toarray() if hasattr(design, "toarray") else np.asarray(design)
        logistic = self.pipeline.named_steps["logistic"]
        owners = _design_owners(encode)
        out = np.zeros((design.shape[0], len(self.spec.columns) + 1))
        for column, owner in enumerate(owners):
            out[:, owner] += design[:, column] * logistic.coef_[0, column]
        out[:, -1] = logistic.intercept_[0]
        return out


@dataclass
class TrainingResult:
    """A trained model and baseline, the split and every number about them.

    ``metrics[name]`` for ``model``, ``baseline``, ``model_uncalibrated`` and
    ``baseline_uncalibrated`` (validation rows); ``comparison`` is model minus baseline;
    ``segments`` holds AUC by segment for both; ``validation`` the validation rows (features and
    ``churned``), which the promotion gate scores the champion on.
    """

    model: ChurnModel
    baseline: BaselineModel
    config: ChurnTrainingConfig
    split: TimeSplit
    best_iteration: int
    metrics: dict[str, dict[str, float]]
    comparison: dict[str, float]
    segments: pl.DataFrame
    validation: pl.DataFrame
    validation_probability: np.ndarray
    baseline_probability: np.ndarray
    # ROC-AUC of ranking by days since the last order alone, on the validation rows.
    recency_auc: float = float("nan")
    # "lightgbm" or "logistic_baseline": which of the two scores, and why.
    chosen: str = "lightgbm"
    choice: str = ""

    @property
    def scorer(self) -> ChurnModel | BaselineModel:
        """The model that scores: the boosted one unless it did not beat the baseline."""
        return self.model if self.chosen == self.model.kind else self.baseline

    @property
    def scorer_probability(self) -> np.ndarray:
        return (self.validation_probability if self.chosen == self.model.kind
                else self.baseline_probability)


def train_churn_model(features: pl.DataFrame | pl.LazyFrame, labels: pl.DataFrame | pl.LazyFrame,
                      config: ChurnTrainingConfig | None = None) -> TrainingResult:
    """Join, split by time, train LightGBM and the baseline, calibrate both, evaluate both,
    and choose which one scores."""
    config = config or ChurnTrainingConfig()
    frame = training_frame(features, labels)
    split = time_split(frame, config.horizon_days, config.validation_days,
                       config.calibration_share, config.seed, config.calibration_days)
    split = _every_nth_day(frame, split, config.snapshot_every_days)
    train, calib, valid = (frame[split.train], frame[split.calibration],
                           frame[split.validation])
    fit_on = frame[split.calibration_fit_rows]
    process = (PurchaseProcess.fit(train, split.horizon_days) if config.purchase_process
               else None)
    spec = FeatureSpec.fit(train, process)
    y_train, y_calib, y_valid = (part[LABEL].to_numpy().astype(np.int64)
                                 for part in (train, calib, valid))
    x_train, x_calib = spec.matrix(train), spec.matrix(calib)
    weight = _customer_weights(train) if config.weight_customers else None

    booster, best_iteration = _train_booster(spec, x_train, y_train, x_calib, y_calib, config,
                                             weight)
    y_fit = fit_on[LABEL].to_numpy().astype(np.int64)
    model = ChurnModel(spec, booster, Calibrator(config.calibration).fit(
        booster.predict(spec.matrix(fit_on)), y_fit), pl.DataFrame(), split.horizon_days)
    model.importance = global_importance(spec, model.contributions(valid))

    baseline_spec = FeatureSpec.fit(train, only=BASELINE_FEATURES)
    pipeline = _baseline_pipeline(baseline_spec).fit(
        baseline_spec.matrix(train), y_train, logistic__sample_weight=weight)
    baseline_raw_calib = pipeline.predict_proba(baseline_spec.matrix(fit_on))[:, 1]
    baseline = BaselineModel(baseline_spec, pipeline,
                             Calibrator(config.calibration).fit(baseline_raw_calib, y_fit),
                             split.horizon_days)
    baseline.importance = global_importance(baseline_spec, baseline.contributions(valid))

    p_model, p_baseline = model.predict_proba(valid), baseline.predict_proba(valid)
    metrics = {
        "model": m.classification_metrics(y_valid, p_model),
        "baseline": m.classification_metrics(y_valid, p_baseline),
        "model_uncalibrated": m.classification_metrics(y_valid, model.raw_proba(valid)),
        "baseline_uncalibrated": m.classification_metrics(y_valid, baseline.raw_proba(valid)),
    }
    segment = valid["segment"].to_list()
    segments = pl.concat([
        m.auc_by_segment(y_valid, p, segment).with_columns(scorer=pl.lit(name))
        for name, p in (("model", p_model), ("baseline", p_baseline))
    ])
    recency = recency_auc(valid)
    chosen, choice = choose_scorer(metrics["model"]["roc_auc"], metrics["baseline"]["roc_auc"],
                                   recency, config.min_gain_over_baseline)
    return TrainingResult(
        model=model, baseline=baseline, config=config, split=split,
        best_iteration=best_iteration,
        metrics=metrics, comparison=m.against_baseline(metrics["model"], metrics["baseline"]),
        segments=segments, validation=valid, validation_probability=p_model,
        baseline_probability=p_baseline, recency_auc=recency, chosen=chosen, choice=choice,
    )


def recency_auc(rows: pl.DataFrame) -> float:
    """ROC-AUC of "the longer since the last order, the likelier to churn" on labelled rows (a
    customer without orders ranks by tenure): what any model must beat to be worth having."""
    days = rows.select(pl.coalesce("days_since_last_order", "tenure_days").cast(pl.Float64)
                       .fill_null(0.0)).to_series().to_numpy()
    return float(roc_auc_score(rows[LABEL].to_numpy(), days))


def choose_scorer(model_auc: float, baseline_auc: float, recency: float,
                  min_gain: float = 0.0) -> tuple[str, str]:
    """Which model scores, and a sentence saying why, from validation ROC-AUCs."""
    versus = (f"LightGBM ROC-AUC {model_auc:.4f} vs logistic baseline {baseline_auc:.4f} "
              f"(gain {model_auc - baseline_auc:+.4f}, required > {min_gain:.4f}); "
              f"recency alone {recency:.4f}")
    if model_auc - baseline_auc > min_gain:
        return "lightgbm", f"LightGBM scores: {versus}"
    return "logistic_baseline", (f"the logistic baseline scores, because LightGBM does not beat "
                                 f"it: {versus}")


def _top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the ``k`` largest values, largest first; equal values (e.g.
    several zeros) in column order. The same as a stable descending sort cut at ``k``, in ``k``
    passes of ``argmax`` (which takes the first of equal maxima) instead of a full sort."""
    work = np.array(values, dtype=np.float64, order="C")
    rows = np.arange(work.shape[0])
    top = np.empty((work.shape[0], k), dtype=np.int64)
    for i in range(k):
        top[:, i] = work.argmax(axis=1)
        work[rows, top[:, i]] = -np.inf
    return top


def global_importance(spec: FeatureSpec, contributions: np.ndarray) -> pl.DataFrame:
    """``feature``, ``mean_abs_shap``: mean |SHAP value| per feature, highest first."""
    return pl.DataFrame({
        "feature": list(spec.columns),
        "mean_abs_shap": np.abs(contributions[:, :-1]).mean(axis=0),
    }).sort("mean_abs_shap", descending=True)


def _every_nth_day(frame: pl.DataFrame, split: TimeSplit, every: int) -> TimeSplit:
    """Keep the training and calibration rows of every ``every``-th trainable snapshot day,
    counted back from the newest (which is always kept)."""
    if every == 1:
        return split
    days = frame["snapshot_date"]
    newest = days.gather(np.concatenate([split.train, split.calibration])).max()
    # By the calendar, not by position: a frame that holds only some days keeps the same ones.
    keep = ((newest - days).dt.total_days() % every == 0).to_numpy()
    return replace(split, train=split.train[keep[split.train]],
                   calibration=split.calibration[keep[split.calibration]])


def _customer_weights(train: pl.DataFrame) -> np.ndarray:
    """1 / (the customer's rows), scaled to a mean of 1: every customer weighs the same."""
    rows = train.select(pl.len().over("customer_id")).to_series().to_numpy().astype(np.float64)
    weight = 1.0 / rows
    return weight / weight.mean()


def _design_owners(encode: ColumnTransformer) -> list[int]:
    """For each column of the baseline's design matrix, the feature position it comes from."""
    owners: list[int] = []
    for name, steps, positions in encode.transformers_:
        if name == "numbers":
            owners += list(positions)
            indicator = steps.named_steps["simpleimputer"].indicator_
            if indicator is not None:
                owners += [positions[i] for i in indicator.features_]
        elif name == "categories" and len(positions):
            onehot = steps.named_steps["onehotencoder"]
            for position, categories in zip(positions, onehot.categories_, strict=True):
                owners += [position] * len(categories)
    return owners


def _train_booster(spec: FeatureSpec, x_train, y_train, x_calib, y_calib,
                   config: ChurnTrainingConfig, weight: np.ndarray | None = None
                   ) -> tuple[lgb.Booster, int]:
    names = list(spec.columns)
    categorical = [names[i] for i in spec.categorical_positions]
    params = {**config.lgbm_params, "seed": config.seed}
    train = lgb.Dataset(x_train, y_train, weight=weight, feature_name=names,
                        categorical_feature=categorical, free_raw_data=False)
    stop_on = lgb.Dataset(x_calib, y_calib, reference=train)
    booster = lgb.train(
        params, train, num_boost_round=config.num_boost_round, valid_sets=[stop_on],
        valid_names=["calibration"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    # Keep only the trees early stopping chose: every later predict uses exactly those.
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best


def _baseline_pipeline(spec: FeatureSpec) -> Pipeline:
    categorical = spec.categorical_positions
    numeric = [i for i in range(len(spec.columns)) if i not in categorical]
    numbers = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        FunctionTransformer(_signed_log),
        StandardScaler(),
    )
    categories = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=-1.0),
        OneHotEncoder(handle_unknown="ignore"),
    )
    encode = ColumnTransformer([("numbers", numbers, numeric),
                                ("categories", categories, categorical)])
    return Pipeline([("encode", encode), ("logistic", LogisticRegression(C=1.0, max_iter=2000))])


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
