"""The population the drift check and the brief compare with the champion's training
reference, read through the table store: at-risk feature rows of scored days with their churn
probability, and the reference binned once (``DriftReference``)."""

from __future__ import annotations

import polars as pl

from churn_assets import catalog
from churn_assets.decisions.drift import DriftReference
from churn_assets.ml.dataset import only_at_risk
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import Settings
from churn_assets.steps.reads import to_polars

SNAPSHOT = catalog.SNAPSHOT_DATE
SCORES, FEATURES = catalog.SCORES.full_name, catalog.CUSTOMER_FEATURES.full_name
REFERENCE = catalog.TRAINING_REFERENCE.full_name


def scored_population(store: TableStore, settings: Settings, window: DateWindow,
                      scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """The at-risk feature rows of ``window``'s scored days with their churn probability
    (empty when nothing is scored). ``scores``: the scores already read, any superset of the
    window's days."""
    if scores is None:
        if not store.exists(SCORES):
            return pl.DataFrame()
        scores = to_polars(store.read(SCORES, window, SNAPSHOT,
                                      columns=["customer_id", SNAPSHOT, "churn_probability"]))
    if scores.is_empty() or not store.exists(FEATURES):
        return pl.DataFrame()
    probability = scores.select("customer_id", SNAPSHOT, "churn_probability")
    features = to_polars(only_at_risk(store.read(FEATURES, window, SNAPSHOT),
                                      settings.labels.horizon_days))
    return features.join(probability, on=["customer_id", SNAPSHOT], how="left")


def drift_reference(store: TableStore, settings: Settings, population: pl.DataFrame
                    ) -> DriftReference | None:
    """The champion's validation rows binned on the columns ``population`` shares with them,
    or ``None`` without a reference or a population."""
    if population.is_empty() or not store.exists(REFERENCE):
        return None
    reference = to_polars(store.read(REFERENCE))
    columns = [c for c in reference.columns if c in population.columns
               and c not in ("customer_id", SNAPSHOT)]
    drift = settings.decisions.drift
    return DriftReference(reference.select(columns), columns, bins=drift.bins, warn=drift.warn,
                          error=drift.error)
