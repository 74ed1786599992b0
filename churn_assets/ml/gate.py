"""The promotion gate: when the challenger may become champion, and why (or why not).

A challenger is promoted when all hold:

1. its validation ROC-AUC is at least ``auc_floor``,
2. it is not worse than the current champion's ROC-AUC *on the same validation rows* by more
   than ``max_auc_drop``. Without a champion, rule 2 passes;
3. it ranks better than recency alone (days since the last order) on those rows: a model that
   cannot beat the simplest rule has learnt nothing worth deploying.

Which model is the challenger was decided at training: LightGBM, or the logistic baseline when
LightGBM did not beat it (``churn_model.choose_scorer``); both comparisons are in the reasons.

The thresholds are ``[model]`` settings (``settings.ModelSettings``, where their defaults are).

Both AUCs are computed here, by the registered models, on the challenger's validation window:
a champion's AUC from its own training run was measured on another window and is not
comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from churn_assets.settings import ModelSettings

METRIC = "roc_auc"


@dataclass(frozen=True)
class GatePolicy:
    """The gate's thresholds: ``[model] auc_floor`` and ``max_auc_drop``."""

    auc_floor: float
    max_auc_drop: float
    # Rule 3; off only where a test isolates the other two.
    beat_recency: bool = True

    @classmethod
    def from_settings(cls, model: ModelSettings | None = None) -> GatePolicy:
        """The thresholds of ``model`` (the ``[model]`` section; its defaults when ``None``)."""
        model = model or ModelSettings()
        return cls(auc_floor=model.auc_floor, max_auc_drop=model.max_auc_drop,
                   beat_recency=model.beat_recency)

    def __post_init__(self) -> None:
        if not 0.0 <= self.auc_floor <= 1.0:
            raise ValueError(f"auc_floor must be in [0, 1], got {self.auc_floor}")
        if not 0.0 <= self.max_auc_drop <= 1.0:
            raise ValueError(f"max_auc_drop must be in [0, 1], got {self.max_auc_drop}")


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, with a reason per rule, in words a reviewer can act on."""

    promote: bool
    reasons: tuple[str, ...]
    challenger_auc: float
    champion_auc: float | None
    policy: GatePolicy
    challenger_version: str | None = None
    champion_version: str | None = None
    recency_auc: float | None = None

    def tags(self) -> dict[str, str]:
        """MLflow tags for the challenger's run and model version."""
        return {
            "gate.decision": "promoted" if self.promote else "refused",
            "gate.reasons": " | ".join(self.reasons),
            "gate.metric": METRIC,
            "gate.challenger_auc": f"{self.challenger_auc:.6f}",
            "gate.champion_auc": "none" if self.champion_auc is None
            else f"{self.champion_auc:.6f}",
            "gate.champion_version": self.champion_version or "none",
            "gate.auc_floor": str(self.policy.auc_floor),
            "gate.max_auc_drop": str(self.policy.max_auc_drop),
            "gate.recency_auc": "none" if self.recency_auc is None
            else f"{self.recency_auc:.6f}",
        }


def decide(challenger_auc: float, champion_auc: float | None,
           policy: GatePolicy | None = None, *, challenger_version: str | None = None,
           champion_version: str | None = None, recency_auc: float | None = None,
           choice: str | None = None) -> GateDecision:
    """Apply the rules; every rule contributes a reason, passed or not. ``choice`` (why this
    model is the challenger) is kept as the first reason."""
    policy = policy or GatePolicy.from_settings()
    floor_ok = challenger_auc >= policy.auc_floor
    reasons = [
        f"{METRIC} {challenger_auc:.4f} {'>=' if floor_ok else '<'} auc_floor "
        f"{policy.auc_floor:.4f}"
    ]
    if champion_auc is None:
        margin_ok = True
        reasons.append("no current champion to compare with")
    else:
        drop = champion_auc - challenger_auc
        margin_ok = drop <= policy.max_auc_drop
        reasons.append(
            f"{METRIC} {challenger_auc:.4f} vs champion "
            f"{'v' + champion_version + ' ' if champion_version else ''}{champion_auc:.4f} on "
            f"the same validation rows: {'a drop of ' + format(drop, '.4f') if drop > 0 else 'no drop'}"
            f" ({'within' if margin_ok else 'beyond'} max_auc_drop {policy.max_auc_drop:.4f})"
        )
    recency_ok = True
    if recency_auc is not None and policy.beat_recency:
        recency_ok = challenger_auc > recency_auc
        reasons.append(f"{METRIC} {challenger_auc:.4f} {'>' if recency_ok else '<='} recency "
                       f"alone {recency_auc:.4f}")
    if choice:
        reasons.insert(0, choice)
    return GateDecision(floor_ok and margin_ok and recency_ok, tuple(reasons), challenger_auc,
                        champion_auc, policy, challenger_version, champion_version, recency_auc)


class NoChampionError(LookupError):
    """No model version carries the champion alias."""
