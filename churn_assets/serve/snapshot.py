"""What the scoring API answers from: an immutable snapshot of the champion model and every
customer's latest gold features, scored once when the snapshot is built.

A request reads ``holder.current`` once and uses only that object, so swapping in a new
snapshot (one reference assignment) never mixes two models or two feature days within an
answer and never fails a request in flight. Building the next snapshot happens beside the
serving one; if it fails, the old one keeps serving and ``/readyz`` reports the error.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import mlflow.pyfunc as mlflow_pyfunc
import narwhals as nw
import polars as pl

from churn_assets import catalog
from churn_assets.assets.decisions import (
    learned_settings,
    measured_control_retention,
    predicted_uplift,
    recently_selected,
)
from churn_assets.assets.scores import load_cltv
from churn_assets.decisions.feed import crm_feed, decide
from churn_assets.decisions.policy import choose_actions
from churn_assets.ml.cltv_compare import KeptCltv
from churn_assets.ml.dataset import at_risk
from churn_assets.ml.gate import GatePolicy
from churn_assets.ml.registry import score_with
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.reads import column_bound, to_polars

log = logging.getLogger("churn_assets.serve")
FEATURES, ACTIONS = catalog.CUSTOMER_FEATURES.full_name, catalog.ACTIONS.full_name
SNAPSHOT = catalog.SNAPSHOT_DATE
OUTSIDE_POPULATION = ("outside the model's population: cancelled, or no paid order within the "
                      "label horizon (churned by the label's own definition); win-back, not "
                      "retention")


@dataclass(frozen=True)
class Scorer:
    """Champion model + CLTV + decision settings: scores any batch of gold feature rows."""

    model: Any  # the champion pyfunc
    version: str
    cltv: KeptCltv
    settings: Settings

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """One row per input row: customer_id, in_population, churn_probability, risk_band,
        cltv, revenue_at_risk, drivers (list of {feature, impact}); probability and band are
        null outside the model's population, as in ``scores/daily``."""
        horizon = self.settings.labels.horizon_days
        # The same population rule as scores/daily (a narwhals expression, run on Polars).
        population = nw.from_native(features).select(
            "customer_id", in_population=at_risk(horizon).fill_null(False)).to_native()
        value = self.cltv.predict(features, self.settings.model.cltv_horizon_days).select(
            "customer_id", "cltv")
        scored_rows = features.filter(population["in_population"])
        out = population.join(value, on="customer_id", how="left")
        if scored_rows.height:
            predicted = score_with(self.model, scored_rows)
            names = sorted(c for c in predicted.columns
                           if c.startswith("driver_") and c[7:].isdigit())
            drivers = pl.concat_list(
                pl.struct(feature=pl.col(n), impact=pl.col(f"{n}_impact")) for n in names
            ) if names else pl.lit([])
            predicted = predicted.select("customer_id", "churn_probability",
                                         drivers.alias("drivers"))
            out = out.join(predicted, on="customer_id", how="left")
        else:
            out = out.with_columns(churn_probability=pl.lit(None, dtype=pl.Float64),
                                   drivers=pl.lit(None))
        return out.with_columns(
            self.settings.decisions.bands.band("churn_probability"),
            revenue_at_risk=pl.col("churn_probability") * pl.col("cltv"),
        )

    def policy_alone(self, row: dict) -> dict:
        """The configured policy applied to this one customer on its own (no other customer
        competes for the day's budget)."""
        if row.get("churn_probability") is None:
            return {"action": None, "source": "not scored", "reason": OUTSIDE_POPULATION}
        frame = pl.DataFrame([{
            "snapshot_date": row.get("feature_date") or date.today(),
            "customer_id": row["customer_id"], "segment": row.get("segment"),
            "churn_probability": row["churn_probability"], "cltv": row["cltv"],
            "revenue_at_risk": row["revenue_at_risk"], "risk_band": row["risk_band"],
            "model_version": self.version,
        }])
        chosen = choose_actions(frame, self.settings.decisions).decisions
        if chosen.is_empty():
            return {"action": None, "source": "policy on this customer alone",
                    "reason": "no action is worth its cost for this customer"}
        pick = chosen.row(0, named=True)
        return {"action": pick["action"], "cost": pick["cost"],
                "expected_value": pick["expected_value"],
                "source": "policy on this customer alone", "reason": pick["reason"]}


@dataclass(frozen=True)
class Snapshot:
    scorer: Scorer
    feature_date: date
    customers: dict[str, dict]  # customer_id -> scored row (precomputed)
    decided: dict[str, dict]  # customer_id -> the day's feed row
    decision_source: str
    loaded_at: datetime

    @property
    def model_version(self) -> str:
        return self.scorer.version

    def action_for(self, customer_id: str) -> dict:
        row = self.decided.get(customer_id)
        if row is None:
            reason = ("not selected on this day (budget, cooldown, or no action pays for itself)"
                      if self.customers[customer_id]["churn_probability"] is not None
                      else OUTSIDE_POPULATION)
            return {"action": None, "source": self.decision_source, "reason": reason}
        return {**row, "source": self.decision_source}


def load_snapshot(store: TableStore, mlflow: MlflowResource, settings: Settings) -> Snapshot:
    """The champion and the latest gold feature day, every customer scored, and the day's
    actions: the CRM feed when the day is decided, else what the policy decides for it now
    (the same policy, cooldown and control group as ``decisions/actions``)."""
    version = mlflow.champion_version()
    if version is None:
        # Raises NoChampionError saying which floor to change.
        mlflow.load_champion(GatePolicy.from_settings(settings.model))
    # By version, not alias: the alias may move between the two calls.
    mlflow.location().activate()
    model = mlflow_pyfunc.load_model(f"models:/{mlflow.model_name}/{version}")
    day = column_bound(store, FEATURES, SNAPSHOT, "max")
    if day is None:
        raise LookupError("gold/customer_features is empty: run the pipeline first")
    features = to_polars(store.read(FEATURES, DateWindow.day(day), SNAPSHOT))
    learned, _ = learned_settings(store, settings, day)
    scorer = Scorer(model, str(version), load_cltv(store), learned)
    scored = scorer.score(features).join(features.select("customer_id", "segment"),
                                         on="customer_id", how="left")
    customers = {row["customer_id"]: row for row in scored.iter_rows(named=True)}
    feed = (to_polars(store.read(ACTIONS, DateWindow.day(day), SNAPSHOT))
            if store.exists(ACTIONS) else pl.DataFrame())
    if feed.height:
        source = f"decisions/actions {day}"
    else:
        candidates = scored.filter(pl.col("in_population")).select(
            pl.lit(day).alias(SNAPSHOT), "customer_id", "segment", "churn_probability", "cltv",
            "revenue_at_risk", "risk_band", pl.lit(str(version)).alias("model_version"))
        feed = decide_day(store, mlflow, settings, learned, candidates, day)
        source = f"the policy on {day} (not yet in decisions/actions)"
    decided = {r["customer_id"]: {k: r[k] for k in (
        "action", "cost", "expected_value", "control", "reason")}
        for r in feed.iter_rows(named=True)}
    return Snapshot(scorer, day, customers, decided, source, datetime.now(UTC))


def decide_day(store: TableStore, mlflow: MlflowResource, settings: Settings,
               learned: Settings, scores: pl.DataFrame, day: date) -> pl.DataFrame:
    """The CRM feed ``decisions/actions`` would write for ``day`` from these scores, with what
    is known now: the same cooldown, uplift champion, exploration and control groups."""
    policy = settings.decisions.policy
    eligible = scores.join(recently_selected(store, day, policy.cooldown_days),
                           on="customer_id", how="anti")
    champion = mlflow.load_uplift_champion() if policy.kind == "budget" else None
    predicted = predicted_uplift(store, champion[0], eligible, day) if champion else None
    decided = decide(eligible, learned.decisions, uplift=predicted,
                     window_days=settings.scoring.outcome_window_days,
                     retention=measured_control_retention(store, day))
    return crm_feed(decided.decisions)


class SnapshotHolder:
    """The serving snapshot, replaced whole when a new champion or feature day appears."""

    def __init__(self, store: TableStore, mlflow: MlflowResource, settings: Settings):
        self.store, self.mlflow, self.settings = store, mlflow, settings
        self.current: Snapshot | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one rebuild at a time; readers never take it

    def wanted(self) -> tuple[str | None, date | None]:
        """The (champion version, latest feature day) the store holds now: cheap to ask."""
        return (self.mlflow.champion_version(),
                column_bound(self.store, FEATURES, SNAPSHOT, "max"))

    def refresh(self) -> bool:
        """Rebuild and swap when the champion or the latest feature day changed; True when a
        new snapshot went live. Errors keep the old snapshot and are reported."""
        with self._lock:
            try:
                version, day = self.wanted()
                current = self.current
                if current is not None and (current.model_version, current.feature_date) == (
                        version, day):
                    return False
                snapshot = load_snapshot(self.store, self.mlflow, self.settings)
            except Exception as exc:  # keep serving the old snapshot, say why on /readyz
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("snapshot not reloaded: %s", self.last_error)
                return False
            self.current, self.last_error = snapshot, None
            log.info("serving churn_model v%s with features of %s (%d customers)",
                     snapshot.model_version, snapshot.feature_date, len(snapshot.customers))
            return True

    def watch(self, every_seconds: float, stop: threading.Event) -> None:
        while not stop.wait(every_seconds):
            self.refresh()
