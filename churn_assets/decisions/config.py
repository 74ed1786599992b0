"""Typed settings of the retention decisions, in the style of ``settings.py``.

``DecisionSettings`` nests everything (actions, policy, risk bands, drift) so it can become one
section of ``Settings``; each part can also be nested on its own. Money is in the shop's currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["discount_voucher", "reengagement_email", "loyalty_reward"]
# The simulator names the same actions (``simulator.vocab.ACTIONS``; a test keeps them equal).
# Not imported from there: settings nest this module, and the simulator imports settings.
ACTIONS: tuple[str, ...] = get_args(Action)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionConfig(_Section):
    """What one retention action costs and what it is expected to save, per customer treated."""

    cost: float = Field(
        ..., ge=0,
        description="Expected cost of the action for one treated customer (for a voucher: the "
                    "expected discount given away, not its face value).",
    )
    save_rate: float = Field(
        ..., ge=0, le=1,
        description="Share of the revenue at risk the action saves: of the customers who would "
                    "churn, the share it keeps. Expected saved revenue = save_rate x "
                    "revenue_at_risk.",
    )


class Actions(_Section):
    """The action catalogue. One field per action of ``vocab.ACTIONS``, so a typo in
    ``settings.toml`` is an error rather than a silently ignored action."""

    # The voucher also forgoes ~25% of the next order; ``cost`` is that expected cost in total.
    discount_voucher: ActionConfig = ActionConfig(cost=10.0, save_rate=0.25)
    reengagement_email: ActionConfig = ActionConfig(cost=0.10, save_rate=0.05)
    loyalty_reward: ActionConfig = ActionConfig(cost=2.0, save_rate=0.08)

    def as_dict(self) -> dict[str, ActionConfig]:
        return {name: getattr(self, name) for name in ACTIONS}


ActionCatalogue = Actions | Mapping[str, ActionConfig]


def catalogue(actions: ActionCatalogue) -> dict[str, ActionConfig]:
    """``{action: ActionConfig}`` from an ``Actions`` model or a plain mapping."""
    out = actions.as_dict() if isinstance(actions, Actions) else dict(actions)
    if not out:
        raise ValueError("the action catalogue is empty: configure at least one action")
    return out


class RiskBands(_Section):
    """Churn-probability bands: low below ``low_below``, high from ``high_from``, else medium."""

    low_below: float = Field(0.3, gt=0, lt=1, description="A probability below this is low risk.")
    high_from: float = Field(0.6, gt=0, lt=1,
                             description="A probability from this on is high risk.")

    @model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if self.low_below > self.high_from:
            raise ValueError(f"risk bands need low_below <= high_from; got low_below="
                             f"{self.low_below} and high_from={self.high_from}")
        return self

    def band(self, probability: str | pl.Expr = "churn_probability") -> pl.Expr:
        """A Polars expression named ``risk_band``: ``"low"``, ``"medium"`` or ``"high"``
        (null for a null probability)."""
        p = pl.col(probability) if isinstance(probability, str) else probability
        return (
            pl.when(p.is_null()).then(pl.lit(None, dtype=pl.String))
            .when(p >= self.high_from).then(pl.lit("high"))
            .when(p < self.low_below).then(pl.lit("low"))
            .otherwise(pl.lit("medium"))
            .alias("risk_band")
        )


class PolicyConfig(_Section):
    """How each day's actions are chosen (see ``policy.py``)."""

    kind: Literal["rules", "budget"] = Field(
        "budget",
        description="'budget': maximize expected saved revenue minus cost under daily_budget; "
                    "'rules': the fixed band rules, spending at most daily_budget.",
    )
    daily_budget: float = Field(
        500.0, ge=0,
        description="Most that may be committed to actions per day. Selection happens under it "
                    "before the control group is drawn, so the treated spend is below it.",
    )
    control_share: float = Field(
        0.1, ge=0, lt=1,
        description="Smallest share of selected customers held out (not treated) to measure "
                    "uplift; the power calculation may raise it up to "
                    "experiment.max_control_share.",
    )
    high_value_quantile: float = Field(
        0.8, gt=0, lt=1,
        description="Rules: high value means cltv >= this quantile of the day's cltv.",
    )
    cooldown_days: int = Field(
        30, ge=0, le=365,
        description="A customer selected (treated or control) is not selected again for this "
                    "many days: no daily spam, and a control customer stays untreated while "
                    "its outcome is measured.",
    )
    whale_quantile: float = Field(
        0.99, gt=0, lt=1,
        description="Whale list: cltv >= this quantile of the day's cltv.",
    )
    rising_risk_delta: float = Field(
        0.1, gt=0, le=1,
        description="Whale list: rising risk means churn_probability up by at least this much ...",
    )
    rising_risk_days: int = Field(
        7, ge=1, le=90, description="... against the same customer's score this many days earlier.",
    )
    rules_high_risk_low_value_action: Action | None = Field(
        "reengagement_email",
        description="Rules: the action for high-risk customers below the high-value cut "
                    "(none: leave them alone).",
    )
    rules_min_revenue_at_risk: float = Field(
        0.0, ge=0,
        description="Rules: customers with less revenue at risk than this get no action.",
    )


class DriftConfig(_Section):
    """Population stability (PSI) of features and score against the training window."""

    bins: int = Field(10, ge=2, le=100, description="Quantile bins taken from the reference.")
    warn: float = Field(0.1, gt=0, description="PSI from which a feature's status is 'warn'.")
    error: float = Field(0.25, gt=0, description="PSI from which a feature's status is 'error'.")

    @model_validator(mode="after")
    def _ordered(self) -> DriftConfig:
        if self.warn > self.error:
            raise ValueError(f"drift thresholds need warn <= error; got {self.warn} > {self.error}")
        return self


class ExperimentConfig(_Section):
    """The randomized evidence every day's decisions keep gathering (see ``experiment.py``)."""

    explore_share: float = Field(
        0.05, ge=0, lt=1,
        description="Share of the eligible customers that get a uniformly random action "
                    "(no action included), whatever the policy would do: unbiased evidence for "
                    "every action, and the rows off-policy evaluation reads.",
    )
    explore_budget_share: float = Field(
        0.25, ge=0, le=1,
        description="Most of the daily budget exploration may use; fewer customers are "
                    "explored when their worst-case cost would exceed it.",
    )
    target_mde: float = Field(
        0.05, gt=0, lt=1,
        description="The retention uplift per action the control hold-out should detect "
                    "(95% confidence, 80% power) over one outcome window; the control share "
                    "grows from policy.control_share towards max_control_share to reach it.",
    )
    max_control_share: float = Field(
        0.25, gt=0, lt=1,
        description="The largest control share the power calculation may choose.",
    )


class UpliftConfig(_Section):
    """The uplift model (``ml/uplift_model``) and how the budget policy values its predictions."""

    min_arm_rows: int = Field(
        200, ge=10,
        description="Randomized rows with a closed outcome window each arm (every action and "
                    "no action) needs before an uplift model is fitted; until then the policy "
                    "uses save rates.",
    )
    min_holdout_arm: int = Field(
        30, ge=5,
        description="An action counts in the gate only when both its held-out arms have at "
                    "least this many rows: tiny campaigns never move the gate.",
    )
    holdout_share: float = Field(
        0.3, gt=0, lt=1,
        description="Share of the latest campaign days held out to judge the model (Qini).",
    )
    training_days: int = Field(
        180, ge=7, description="Latest campaign days with a closed window the model fits on.")
    value: Literal["cltv", "window_revenue"] = Field(
        "cltv",
        description="'cltv': incremental value = predicted retention uplift x CLTV (a kept "
                    "customer keeps their expected value, the scale save rates use); "
                    "'window_revenue': the predicted revenue uplift over the outcome window.",
    )


class DecisionSettings(_Section):
    """Everything the decisions layer reads; meant to be nested as ``Settings.decisions``."""

    actions: Actions = Actions()
    policy: PolicyConfig = PolicyConfig()
    bands: RiskBands = RiskBands()
    drift: DriftConfig = DriftConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    uplift: UpliftConfig = UpliftConfig()
