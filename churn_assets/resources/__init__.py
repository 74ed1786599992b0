"""The one place that names the engine: resources per environment (``CHURN_ENV``).

- ``local`` (default): Polars over Delta tables under ``$CHURN_HOME/lake``.
- ``spark``: the same graph on a local PySpark session (``local[2]``), tables as Hive-partitioned
  Parquet under ``$CHURN_HOME/lake/spark`` (Delta on local Spark needs Maven jars these machines
  cannot reach). Needs the ``spark`` extra and Java 17.
- ``databricks``: Databricks Connect to a workspace, Unity Catalog Delta tables, MLflow on the
  workspace with the Unity Catalog model registry. Needs the ``databricks`` extra (instead of
  ``spark``) and the variables in ``docs/databricks.md``; see ``databricks.py`` for why Connect
  rather than Pipes.

Building resources never starts Spark or connects to a workspace: sessions are made when a run
first needs one. Assets only ever see the ``TableStore`` interface.
"""

from __future__ import annotations

import os

from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.landing import LandingZone, SparkLandingZone
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.pii import PiiKey
from churn_assets.resources.spark import (
    LOCAL_SPARK_CONFIG,
    SparkTableStore,
    use_this_python_for_workers,
)
from churn_assets.settings import Paths, Settings

ENVIRONMENTS = ("local", "spark", "databricks")
ENV_VARIABLE = "CHURN_ENV"


def environment(env: str | None = None) -> str:
    """The environment to run in: ``env`` if given, else ``$CHURN_ENV``, else ``local``."""
    env = env or os.environ.get(ENV_VARIABLE) or "local"
    if env not in ENVIRONMENTS:
        raise ValueError(
            f"{ENV_VARIABLE}={env!r} is not a known environment; choose one of: "
            f"{', '.join(ENVIRONMENTS)}"
        )
    return env


def build_resources(env: str, paths: Paths, settings: Settings | None = None) -> dict[str, object]:
    """Resources for an environment. Assets only ever see the ``TableStore`` interface."""
    settings = settings or Settings()
    if env == "local":
        return {
            "store": DeltaTableStore(root=str(paths.lake)),
            "landing": LandingZone(root=str(paths.landing)),
            "pii": PiiKey.from_env(),
            "mlflow": MlflowResource(tracking_root=str(paths.mlflow)),
        }
    if env == "spark":
        try:
            from dagster_pyspark import PySparkResource
        except ImportError as error:
            raise ImportError(
                "CHURN_ENV=spark needs pyspark and dagster-pyspark: install the `spark` extra"
            ) from error
        use_this_python_for_workers()
        # The session starts when a run initializes this resource, not here. The store is given
        # the same instance, so in a run both are one resource ("spark") and one session.
        spark = PySparkResource(spark_config=dict(LOCAL_SPARK_CONFIG))
        return {
            "spark": spark,
            "store": SparkTableStore(format="parquet", root=str(paths.lake / "spark"), spark=spark),
            "landing": SparkLandingZone(root=str(paths.landing), spark=spark),
            "pii": PiiKey.from_env(),
            "mlflow": MlflowResource(tracking_root=str(paths.mlflow)),
        }
    if env == "databricks":
        from churn_assets.resources.databricks import databricks_resources

        return databricks_resources(paths, settings)
    raise ValueError(
        f"CHURN_ENV={env!r} is not a known environment; choose one of: {', '.join(ENVIRONMENTS)}"
    )

