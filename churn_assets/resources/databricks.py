"""The ``databricks`` environment: the same asset graph, with Spark on a Databricks workspace.

**Databricks Connect, not Dagster Pipes.** With Connect the asset code runs where Dagster runs
(a laptop, a Dagster deployment) and every Spark DataFrame it builds executes on a Databricks
cluster or serverless compute. Our transforms are narwhals over Spark DataFrames, which Connect
supports (it *is* Spark Connect), and the store writes Unity Catalog Delta tables through the same
session -- so nothing about the assets changes between environments; only resources do. Pipes
(``dagster-databricks`` ``PipesDatabricksClient``) would submit each step as a Databricks job:
the whole package, its settings and its dependencies shipped to the workspace, a job per asset,
and results reported back through Pipes messages -- a second deployment to keep in step with this
one, for no gain while the heavy work is already Spark's. Pipes is the better tool when a step
must run *inside* Databricks (e.g. GPU training on a cluster library); revisit it then.

What still runs on the Dagster side: listing the landing zone's drops (their files are read
and parsed by the cluster), model training on one node (the at-risk training rows are collected
to it), the budget decisions of a day, and MLflow client calls. Scoring runs on the cluster.

Constructing these resources never connects: the session is built the first time a store call
needs it (``DatabricksConnect.spark_session``). ``databricks-connect`` replaces ``pyspark``
(install the ``databricks`` extra *instead of* ``spark``), so it is imported only then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from churn_assets.resources.landing import SparkLandingZone
from churn_assets.resources.mlflow import MlflowResource
from churn_assets.resources.pii import PII_KEY_ENV, PiiKey
from churn_assets.resources.spark import SparkTableStore
from churn_assets.settings import Paths, Settings

HOST_ENV = "DATABRICKS_HOST"
TOKEN_ENV = "DATABRICKS_TOKEN"
CLUSTER_ENV = "DATABRICKS_CLUSTER_ID"
SERVERLESS_ENV = "DATABRICKS_SERVERLESS_COMPUTE_ID"
CATALOG_ENV = "CHURN_CATALOG"
SCHEMA_PREFIX_ENV = "CHURN_SCHEMA_PREFIX"
LANDING_ENV = "CHURN_LANDING_ROOT"
EXPERIMENT_ENV = "CHURN_MLFLOW_EXPERIMENT"

DEFAULT_CATALOG = "churn"
DEFAULT_EXPERIMENT = "/Shared/churn-assets"


class DatabricksConnect(dg.ConfigurableResource):
    """A Databricks Connect Spark session, created on first use of ``spark_session``.

    Authentication is the Databricks SDK's unified auth: ``token`` when given (a personal access
    token), else whatever the SDK finds (``DATABRICKS_CLIENT_ID``/``DATABRICKS_CLIENT_SECRET`` for
    a service principal, a ``~/.databrickscfg`` profile, Azure CLI...).
    """

    host: str = Field(description="Workspace URL, e.g. https://adb-123.4.azuredatabricks.net")
    token: str | None = Field(None, description="Personal access token (via dg.EnvVar)")
    cluster_id: str | None = Field(None, description="A classic cluster to run on")
    serverless_compute_id: str | None = Field(
        None, description="'auto' for serverless compute (instead of cluster_id)"
    )
    _session: Any = PrivateAttr(default=None)

    @property
    def spark_session(self) -> Any:
        if self._session is None:
            self._session = self._connect()
        return self._session

    def _connect(self) -> Any:
        try:
            from databricks.connect import DatabricksSession
            from databricks.sdk.core import Config
        except ImportError as error:
            raise ImportError(
                "CHURN_ENV=databricks needs databricks-connect: install the `databricks` extra "
                "(pip install -e '.[databricks]') in an environment without pyspark"
            ) from error
        serverless = _value(self.serverless_compute_id)
        config = Config(
            host=_value(self.host),
            token=_value(self.token),
            cluster_id=None if serverless else _value(self.cluster_id),
            serverless_compute_id=serverless,
        )
        builder = DatabricksSession.builder.sdkConfig(config)
        if serverless:
            builder = builder.serverless(True)
        session = builder.getOrCreate()
        # Timestamps are instants: Arrow conversion on this side uses the session time zone.
        session.conf.set("spark.sql.session.timeZone", "UTC")
        return session


def _value(value: Any) -> Any:
    # Used outside a Dagster run, an EnvVar field is still the variable's name: resolve it.
    return value.get_value() if isinstance(value, dg.EnvVar) else value


@dataclass(frozen=True)
class DatabricksTarget:
    """Where the graph lives in a workspace (not secret: read when the resources are built)."""

    catalog: str
    schema_prefix: str
    landing_root: str
    experiment: str

    @property
    def model_name(self) -> str:
        # Unity Catalog registered models have three-part names.
        return f"{self.catalog}.{self.schema_prefix}ml.churn_model"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatabricksTarget:
        environ = os.environ if environ is None else environ
        catalog = environ.get(CATALOG_ENV) or DEFAULT_CATALOG
        prefix = environ.get(SCHEMA_PREFIX_ENV, "")
        return cls(
            catalog=catalog,
            schema_prefix=prefix,
            # Raw drops sit in a Unity Catalog Volume beside bronze.
            landing_root=environ.get(LANDING_ENV) or f"/Volumes/{catalog}/{prefix}bronze/landing",
            experiment=environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT,
        )


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse to build the Databricks resources without the variables they cannot do without."""
    environ = os.environ if environ is None else environ
    problems = [
        f"{name} ({why})"
        for name, why in (
            (HOST_ENV, "the workspace URL"),
            (PII_KEY_ENV, "the secret that keys the PII hashes; no default outside local"),
        )
        if not environ.get(name)
    ]
    cluster, serverless = environ.get(CLUSTER_ENV), environ.get(SERVERLESS_ENV)
    if not cluster and not serverless:
        problems.append(
            f"{CLUSTER_ENV} (a classic cluster) or {SERVERLESS_ENV}=auto (serverless compute)"
        )
    elif cluster and serverless:
        problems.append(f"only one of {CLUSTER_ENV} and {SERVERLESS_ENV}: both are set")
    elif serverless and serverless != "auto":
        problems.append(f"{SERVERLESS_ENV}=auto (got {serverless!r})")
    if problems:
        raise ValueError(
            "CHURN_ENV=databricks needs: " + "; ".join(problems)
            + ". Set them in the environment (see docs/databricks.md); never in files in the repo."
        )


def databricks_resources(paths: Paths, settings: Settings) -> dict[str, object]:
    """The resources of ``CHURN_ENV=databricks``. Secrets stay ``dg.EnvVar`` (out of the UI)."""
    check_environment()
    target = DatabricksTarget.from_env()
    spark = DatabricksConnect(
        host=dg.EnvVar(HOST_ENV),
        token=dg.EnvVar(TOKEN_ENV) if os.environ.get(TOKEN_ENV) else None,
        cluster_id=dg.EnvVar(CLUSTER_ENV) if os.environ.get(CLUSTER_ENV) else None,
        serverless_compute_id="auto" if os.environ.get(SERVERLESS_ENV) else None,
    )
    return {
        "spark": spark,
        "store": SparkTableStore(
            format="delta",
            catalog=target.catalog,
            schema_prefix=target.schema_prefix,
            spark=spark,
        ),
        # Drops are found by listing the root from this process, so it must see the Volume
        # (Databricks compute mounts /Volumes); their files are read and parsed by the cluster.
        "landing": SparkLandingZone(root=target.landing_root, spark=spark),
        "pii": PiiKey.from_env(required=True),
        # MLflow on the workspace (reads DATABRICKS_HOST/TOKEN itself), models in Unity Catalog.
        "mlflow": MlflowResource(
            tracking_uri="databricks",
            registry_uri="databricks-uc",
            experiment=target.experiment,
            model_name=target.model_name,
        ),
    }
