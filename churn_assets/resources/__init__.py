"""The one place that names the engine: resources per environment (``CHURN_ENV``)."""

from __future__ import annotations

from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.landing import LandingZone
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.pii import PiiKey
from churn_assets.settings import Paths, Settings

ENVIRONMENTS = ("local",)


def build_resources(env: str, paths: Paths, settings: Settings | None = None) -> dict[str, object]:
    """Resources for an environment. Assets only ever see the ``TableStore`` interface."""
    settings = settings or Settings()
    if env == "local":
        return {
            "store": DeltaTableStore(root=str(paths.lake)),
            "landing": LandingZone(root=str(paths.landing)),
            "pii": PiiKey.from_env(),
            "mlflow": MlflowResource(
                tracking_root=str(paths.mlflow),
                auc_floor=settings.model.auc_floor,
                max_auc_drop=settings.model.max_auc_drop,
            ),
        }
    raise ValueError(
        f"CHURN_ENV={env!r} is not a known environment; this version supports: "
        f"{', '.join(ENVIRONMENTS)} (Spark and Databricks come with the engine-swap issue)."
    )
