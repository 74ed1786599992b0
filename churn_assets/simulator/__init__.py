"""The simulated e-commerce business: a seeded, day-by-day generative model.

``simulate(paths, SimConfig(...))`` writes daily drops of five domains into the landing zone
(through ``ingest.landing.write_drop``) and the ground truth (who churned when, daily hazards,
true treatment effects) under ``paths.truth``, which the pipeline never reads.
"""

from churn_assets.simulator.config import DirtConfig, SimConfig
from churn_assets.simulator.run import DIRT_KINDS, SimSummary, simulate
from churn_assets.simulator.state import BusinessState

__all__ = ["DIRT_KINDS", "BusinessState", "DirtConfig", "SimConfig", "SimSummary", "simulate"]
