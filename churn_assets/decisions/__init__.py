"""Daily retention decisions: who gets which action under a budget, control groups, the CRM
feed, whales, uplift measurement, drift and SQL questions. Pure Polars/numpy, no Dagster."""

from churn_assets.decisions.config import (
    ActionConfig,
    Actions,
    DecisionSettings,
    DriftConfig,
    PolicyConfig,
    RiskBands,
)
from churn_assets.decisions.control import assign_control, campaign_id, control_draw
from churn_assets.decisions.drift import DriftReport, population_stability
from churn_assets.decisions.feed import crm_feed, decide
from churn_assets.decisions.policy import (
    PolicyResult,
    budget_policy,
    choose_actions,
    rule_policy,
)
from churn_assets.decisions.uplift import (
    measure,
    outcomes_from_activity,
    save_rate_updates,
    uplift,
)
from churn_assets.decisions.whales import whale_list

__all__ = [
    "ActionConfig", "Actions", "DecisionSettings", "DriftConfig", "DriftReport", "PolicyConfig",
    "PolicyResult", "RiskBands", "assign_control", "budget_policy", "campaign_id",
    "choose_actions", "control_draw", "crm_feed", "decide", "measure", "outcomes_from_activity",
    "population_stability", "rule_policy", "save_rate_updates", "uplift", "whale_list",
]
