"""Per-customer uplift of each retention action, learned from the pipeline's own randomized
decisions: an X-learner on LightGBM, weighted by the logged propensities, judged by Qini.

Training rows are ``decisions/outcomes`` rows whose arm was drawn at random (``randomized``,
with a ``propensity``): exploration rows and the policy's treated/control split. A row's *arm*
is the action it received, or ``no_action`` (control and explored-untreated rows). Rows without
propensities (decisions written before the experiment columns) are not randomized for this
purpose and are left out, counted. Features are the gold ``customer_features`` of the decision
day: the same point-in-time rows the scores were computed from.

**The learner (X-learner, Künzel et al. 2019)**, per action ``a`` against ``no_action`` and per
outcome (retained in the window; revenue in the window, winsorized at its 99th percentile so a
handful of large orders cannot dominate a small arm):

1. outcome models ``m_a`` on the ``a`` rows and ``m_0`` on the untreated rows;
2. imputed effects ``D_1 = y - m_0(x)`` on the treated and ``D_0 = m_a(x) - y`` on the untreated,
   each regressed on ``x`` (``t_1``, ``t_0``);
3. ``tau(x) = g t_0(x) + (1 - g) t_1(x)`` with ``g`` the treated share of the (weighted) rows:
   the better-populated arm's imputation gets the weight, which is why the X-learner suits our
   lopsided arms (a 10 % control group, a small voucher arm).

Every fit weights a row by ``1 / propensity``, so each stratum's rows stand for the population
they were drawn from. LightGBM is kept small (shallow trees, large leaves, L2) because arms are
hundreds of rows, not millions. Why not EconML or CausalML: see README ("Uplift model").

**Qini coefficient** (``qini_coefficient``): rank held-out rows by a score; the Qini curve at the
top ``k`` is ``Y_t(k) - Y_c(k) W_t(k) / W_c(k)`` (weighted retained treated minus control,
scaled to the treated count); the coefficient is the mean gap between that curve and the
straight line of random targeting, per treated customer. Random targeting scores 0 in
expectation; a ranking that puts the customers the action moves first scores above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from churn_assets.decisions.experiment import NO_ACTION
from churn_assets.ml.dataset import FeatureSpec

OUTCOMES = ("retained", "revenue")
PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(), "action": pl.String(), "retention_uplift": pl.Float64(),
    "revenue_uplift": pl.Float64(),
}
EVALUATION_SCHEMA: dict[str, pl.DataType] = {
    "action": pl.String(), "treated_n": pl.Int64(), "control_n": pl.Int64(),
    "counted": pl.Boolean(), "qini_model": pl.Float64(), "qini_risk": pl.Float64(),
    "measured_uplift": pl.Float64(), "mean_predicted_uplift": pl.Float64(),
}


@dataclass(frozen=True)
class UpliftTrainingConfig:
    min_arm_rows: int = 200
    min_holdout_arm: int = 30
    holdout_share: float = 0.3
    num_boost_round: int = 150
    seed: int = 0
    lgbm_params: dict[str, Any] = field(default_factory=lambda: {
        "objective": "regression", "learning_rate": 0.05, "num_leaves": 7, "max_depth": 3,
        "min_data_in_leaf": 30, "lambda_l2": 5.0, "feature_fraction": 0.8,
        "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1, "num_threads": 1,
        "deterministic": True, "force_col_wise": True,
    })


@dataclass(frozen=True)
class PreparedRows:
    rows: pl.DataFrame  # randomized rows with features, ``arm`` and ``weight``
    not_randomized: int  # rows left out: no propensity (written before the experiment)
    without_features: int  # rows left out: no gold features on their decision day


def prepare_rows(measured: pl.DataFrame, features: pl.DataFrame) -> PreparedRows:
    """Randomized measured rows joined to their decision day's features, with their ``arm``
    and inverse-propensity ``weight``."""
    frame = measured
    if "randomized" not in frame.columns:
        frame = frame.with_columns(randomized=pl.lit(False))
    if "propensity" not in frame.columns:
        frame = frame.with_columns(propensity=pl.lit(None, dtype=pl.Float64))
    usable = (pl.col("randomized").fill_null(False) & pl.col("propensity").is_not_null()
              & (pl.col("propensity") > 0))
    randomized = frame.filter(usable)
    with_arm = randomized.with_columns(
        arm=pl.when(pl.col("control")).then(pl.lit(NO_ACTION)).otherwise(pl.col("action")),
        weight=1.0 / pl.col("propensity"),
        retained=pl.col("retained").cast(pl.Float64),
    )
    keep = [c for c in with_arm.columns if c not in features.columns
            or c in ("customer_id", "snapshot_date")]
    joined = with_arm.select(keep).join(features, on=["customer_id", "snapshot_date"],
                                        how="inner")
    return PreparedRows(joined.sort("snapshot_date", "customer_id"),
                        frame.height - randomized.height, randomized.height - joined.height)


def outcomes_needed(rows: pl.DataFrame, actions: list[str], min_arm_rows: int) -> dict[str, int]:
    """Per arm (each action and ``no_action``), how many more randomized outcomes it needs."""
    counts = dict(rows.group_by("arm").len().iter_rows()) if rows.height else {}
    return {arm: max(0, min_arm_rows - int(counts.get(arm, 0)))
            for arm in [*actions, NO_ACTION]}


@dataclass
class ArmModel:
    """One action's X-learner for one outcome."""

    treated_effect: lgb.Booster  # t_1
    control_effect: lgb.Booster  # t_0
    treated_share: float  # g

    def predict(self, x: np.ndarray) -> np.ndarray:
        g = self.treated_share
        return g * self.control_effect.predict(x) + (1 - g) * self.treated_effect.predict(x)


@dataclass
class UpliftModel:
    """Per-customer, per-action predicted uplift on retention and revenue in the window."""

    spec: FeatureSpec
    actions: tuple[str, ...]
    arms: dict[tuple[str, str], ArmModel]  # (action, outcome) -> model
    window_days: int
    trained_through: date | None = None

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        """``PREDICTION_SCHEMA`` rows: one per customer of ``features`` and action."""
        if features.is_empty():
            return pl.DataFrame(schema=PREDICTION_SCHEMA)
        x = self.spec.matrix(features)
        ids = features["customer_id"].cast(pl.String)
        parts = [pl.DataFrame({
            "customer_id": ids, "action": [a] * ids.len(),
            "retention_uplift": self.arms[(a, "retained")].predict(x),
            "revenue_uplift": self.arms[(a, "revenue")].predict(x),
        }) for a in self.actions]
        return pl.concat(parts).select(pl.col(c).cast(t) for c, t in PREDICTION_SCHEMA.items())


def fit_uplift(rows: pl.DataFrame, actions: list[str], config: UpliftTrainingConfig | None = None,
               window_days: int = 30) -> UpliftModel:
    """The X-learner for every action with rows in both its arm and ``no_action``."""
    config = config or UpliftTrainingConfig()
    spec = FeatureSpec.fit(rows)
    x_all = spec.matrix(rows)
    arm = rows["arm"].to_numpy()
    weight = rows["weight"].to_numpy().astype(np.float64)
    control = arm == NO_ACTION
    if not control.any():
        raise ValueError("no untreated randomized rows: every action needs a no-action arm")
    fitted: dict[tuple[str, str], ArmModel] = {}
    kept = []
    for outcome in OUTCOMES:
        y_all = rows[outcome].cast(pl.Float64).to_numpy()
        if outcome == "revenue" and y_all.size:
            y_all = np.minimum(y_all, np.quantile(y_all, 0.99))
        base = _booster(spec, x_all[control], y_all[control], weight[control], config)
        for action in actions:
            treated = arm == action
            if not treated.any():
                continue
            own = _booster(spec, x_all[treated], y_all[treated], weight[treated], config)
            imputed_treated = y_all[treated] - base.predict(x_all[treated])
            imputed_control = own.predict(x_all[control]) - y_all[control]
            w_t, w_c = weight[treated].sum(), weight[control].sum()
            fitted[(action, outcome)] = ArmModel(
                _booster(spec, x_all[treated], imputed_treated, weight[treated], config),
                _booster(spec, x_all[control], imputed_control, weight[control], config),
                float(w_t / (w_t + w_c)))
            if outcome == OUTCOMES[0]:
                kept.append(action)
    last = rows["snapshot_date"].max() if rows.height else None
    return UpliftModel(spec, tuple(kept), fitted, window_days, last)


def _booster(spec: FeatureSpec, x: np.ndarray, y: np.ndarray, w: np.ndarray,
             config: UpliftTrainingConfig) -> lgb.Booster:
    names = list(spec.columns)
    params = {**config.lgbm_params, "seed": config.seed,
              # A leaf needs a few per cent of a small arm, and never fewer than 10 rows.
              "min_data_in_leaf": max(10, min(config.lgbm_params["min_data_in_leaf"],
                                              len(y) // 20))}
    data = lgb.Dataset(x, y, weight=w, feature_name=names,
                       categorical_feature=[names[i] for i in spec.categorical_positions],
                       free_raw_data=False, params={"verbose": -1})
    return lgb.train(params, data, num_boost_round=config.num_boost_round)


# ---------------------------------------------------------------- judging


def qini_coefficient(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray,
                     weight: np.ndarray | None = None) -> float:
    """The Qini coefficient of ranking rows by ``score`` (descending), per treated customer:
    positive when the ranking puts the responders first, 0 in expectation for a random one.
    NaN when an arm is empty."""
    score = np.asarray(score, dtype=np.float64)
    treated = np.asarray(treated, dtype=bool)
    y = np.asarray(outcome, dtype=np.float64)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=np.float64)
    if not treated.any() or treated.all():
        return float("nan")
    # Ties broken by position after a stable sort: equal scores are not an ordering.
    order = np.argsort(-score, kind="stable")
    t, yw, ww = treated[order], (y * w)[order], w[order]
    w_t, w_c = np.cumsum(np.where(t, ww, 0.0)), np.cumsum(np.where(t, 0.0, ww))
    y_t, y_c = np.cumsum(np.where(t, yw, 0.0)), np.cumsum(np.where(t, 0.0, yw))
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = y_t - np.where(w_c > 0, y_c * w_t / w_c, 0.0)
    share = np.arange(1, y.size + 1) / y.size
    return float(np.mean(curve - share * curve[-1]) / w_t[-1])


def evaluate(model: UpliftModel, holdout: pl.DataFrame, min_holdout_arm: int) -> pl.DataFrame:
    """Per action on held-out rows (its arm against no action): the Qini of the model's
    retention uplift and of ranking by churn risk (``EVALUATION_SCHEMA``). An action counts in
    the gate only when both held-out arms reach ``min_holdout_arm``."""
    predicted = model.predict(holdout) if holdout.height else pl.DataFrame(
        schema=PREDICTION_SCHEMA)
    rows = []
    for action in model.actions:
        mask = holdout["arm"].is_in([action, NO_ACTION])
        arm = holdout.filter(mask)
        treated = (arm["arm"] == action).to_numpy()
        n_t, n_c = int(treated.sum()), int((~treated).sum())
        tau = predicted.filter(pl.col("action") == action)["retention_uplift"].to_numpy()[
            mask.to_numpy()] if arm.height else np.zeros(0)
        y, w = arm["retained"].to_numpy(), arm["weight"].to_numpy()
        risk = arm["churn_probability"].fill_null(0.0).to_numpy() \
            if "churn_probability" in arm.columns else np.zeros(arm.height)
        measured = (np.average(y[treated], weights=w[treated])
                    - np.average(y[~treated], weights=w[~treated])) if n_t and n_c else None
        rows.append({
            "action": action, "treated_n": n_t, "control_n": n_c,
            "counted": min(n_t, n_c) >= min_holdout_arm,
            "qini_model": qini_coefficient(tau, treated, y, w) if arm.height else None,
            "qini_risk": qini_coefficient(risk, treated, y, w) if arm.height else None,
            "measured_uplift": measured,
            "mean_predicted_uplift": float(tau.mean()) if tau.size else None,
        })
    return pl.DataFrame(rows, schema=EVALUATION_SCHEMA).with_columns(
        pl.col("qini_model", "qini_risk").fill_nan(None))


@dataclass(frozen=True)
class UpliftGate:
    promote: bool
    reasons: tuple[str, ...]
    qini_model: float | None
    qini_risk: float | None


def gate(evaluation: pl.DataFrame, min_holdout_arm: int = UpliftTrainingConfig.min_holdout_arm
         ) -> UpliftGate:
    """Promote when the model's pooled held-out Qini (actions weighted by their held-out rows,
    only actions whose arms are large enough) beats random targeting (0) and risk ranking."""
    counted = evaluation.filter(pl.col("counted") & pl.col("qini_model").is_not_null()
                                & pl.col("qini_risk").is_not_null())
    if counted.is_empty():
        small = ", ".join(f"{r['action']} ({r['treated_n']}/{r['control_n']})"
                          for r in evaluation.iter_rows(named=True)) or "none"
        return UpliftGate(False, (f"no action has held-out arms large enough to judge "
                                  f"(treated/control: {small}); the Qini needs at least "
                                  f"{min_holdout_arm} held-out customers in both arms of an "
                                  "action",), None, None)
    size = (counted["treated_n"] + counted["control_n"]).cast(pl.Float64).to_numpy()
    model = float(np.average(counted["qini_model"].to_numpy(), weights=size))
    risk = float(np.average(counted["qini_risk"].to_numpy(), weights=size))
    beats_random, beats_risk = model > 0, model > risk
    reasons = (
        f"held-out Qini {model:.4f} {'>' if beats_random else '<='} 0 (random targeting)",
        f"held-out Qini {model:.4f} {'>' if beats_risk else '<='} {risk:.4f} (ranking by churn "
        f"risk), over {', '.join(counted['action'].to_list())}",
    )
    return UpliftGate(beats_random and beats_risk, reasons, model, risk)


@dataclass
class UpliftTraining:
    model: UpliftModel | None
    evaluation: pl.DataFrame
    decision: UpliftGate
    needed: dict[str, int]
    prepared: PreparedRows
    train_days: tuple[date, date] | None = None
    holdout_days: tuple[date, date] | None = None

    @property
    def enough_data(self) -> bool:
        return not any(self.needed.values())


def split_by_day(rows: pl.DataFrame, holdout_share: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Latest ``holdout_share`` of the campaign days held out (at least one, if two exist)."""
    days = rows["snapshot_date"].unique().sort()
    if days.len() < 2:
        return rows, rows.clear()
    held = max(1, round(days.len() * holdout_share))
    first_held = days[days.len() - held]
    return (rows.filter(pl.col("snapshot_date") < first_held),
            rows.filter(pl.col("snapshot_date") >= first_held))


def train_uplift(measured: pl.DataFrame, features: pl.DataFrame, actions: list[str],
                 config: UpliftTrainingConfig | None = None, window_days: int = 30
                 ) -> UpliftTraining:
    """Prepare, check there is enough data, fit on the earlier campaign days, judge on the
    later ones. ``model`` is None when some arm lacks data (the policy keeps save rates)."""
    config = config or UpliftTrainingConfig()
    prepared = prepare_rows(measured, features)
    needed = outcomes_needed(prepared.rows, actions, config.min_arm_rows)
    empty = pl.DataFrame(schema=EVALUATION_SCHEMA)
    if any(needed.values()):
        short = ", ".join(f"{arm} needs {n} more" for arm, n in needed.items() if n)
        return UpliftTraining(None, empty, UpliftGate(False, (
            f"not enough randomized outcomes ({config.min_arm_rows} per arm): {short}",),
            None, None), needed, prepared)
    train, holdout = split_by_day(prepared.rows, config.holdout_share)
    model = fit_uplift(train, actions, config, window_days)
    evaluation = evaluate(model, holdout, config.min_holdout_arm)
    return UpliftTraining(model, evaluation, gate(evaluation, config.min_holdout_arm), needed, prepared, _span(train),
                          _span(holdout))


def _span(rows: pl.DataFrame) -> tuple[date, date] | None:
    return (rows["snapshot_date"].min(), rows["snapshot_date"].max()) if rows.height else None
