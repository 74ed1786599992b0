"""Resources per environment: ``local``, ``spark`` and ``databricks`` build without starting Spark
or reaching a workspace, name their tables as each engine expects, and refuse what is missing.

Nothing here starts a JVM or opens a connection: session builders are replaced by ones that fail.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import dagster as dg
import pytest

import churn_assets
from churn_assets import catalog
from churn_assets.resources import ENVIRONMENTS, build_resources
from churn_assets.resources.databricks import DatabricksConnect, DatabricksTarget
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.landing import SparkLandingZone
from churn_assets.resources.spark import LOCAL_SPARK_CONFIG, SparkTableStore
from churn_assets.settings import DOMAINS, Paths, Settings

WORKSPACE = {
    "DATABRICKS_HOST": "https://dbc-fake.cloud.databricks.com",
    "DATABRICKS_TOKEN": "dapi-not-a-real-token",
    "DATABRICKS_CLUSTER_ID": "0101-000000-fake",
    "CHURN_PII_KEY": "a-test-key",
    "CHURN_CATALOG": "analytics",
    "CHURN_SCHEMA_PREFIX": "churn_",
}
UNSET = (
    "DATABRICKS_SERVERLESS_COMPUTE_ID", "CHURN_LANDING_ROOT", "CHURN_MLFLOW_EXPERIMENT",
)


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "home")


@pytest.fixture
def no_sessions(monkeypatch):
    """Any attempt to start Spark or connect to Databricks fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("building resources must not start a session")

    pyspark_sql = pytest.importorskip("pyspark.sql")
    monkeypatch.setattr(pyspark_sql.SparkSession.Builder, "getOrCreate", refuse)
    monkeypatch.setattr(DatabricksConnect, "_connect", refuse)


@pytest.fixture
def workspace(monkeypatch):
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    return WORKSPACE


def table_names() -> set[str]:
    """Every table the package names: the catalogue's, literal "<layer>.<table>" strings, and
    per-domain tables."""
    layers = "bronze|silver|gold|ml|scores|decisions"
    literal = re.compile(rf"[\"']((?:{layers})\.[a-z_]+)[\"']")
    package = Path(churn_assets.__file__).parent
    names = {m for f in package.rglob("*.py") for m in literal.findall(f.read_text())}
    for domain in DOMAINS:
        names |= {f"bronze.{domain}", f"bronze.{domain}_quarantine", f"silver.{domain}"}
    return names | {table.full_name for table in catalog.TABLES}


# ── spark ────────────────────────────────────────────────────────────────────────────────────────


def test_spark_environment_builds_without_starting_spark(paths, no_sessions):
    resources = build_resources("spark", paths)

    spark, store = resources["spark"], resources["store"]
    assert isinstance(store, SparkTableStore) and store.format == "parquet"
    assert store.root == str(paths.lake / "spark")
    assert store.spark is spark  # one resource, one session in a run
    assert store.location("bronze.payments") == str(paths.lake / "spark" / "bronze" / "payments")
    assert spark.spark_session is None  # PySparkResource starts in setup_for_execution only
    assert set(resources) == {"spark", "store", "landing", "pii", "mlflow"}
    assert resources["landing"].root == str(paths.landing)
    # Spark reads the landing files, through the same session.
    assert isinstance(resources["landing"], SparkLandingZone) and resources["landing"].spark is spark
    assert resources["mlflow"].tracking_uri is None  # local SQLite, as in `local`


def test_spark_environment_session_settings(paths, no_sessions):
    config = build_resources("spark", paths)["spark"].spark_config

    assert {
        "spark.master": "local[2]",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
    }.items() <= config.items()
    assert config == LOCAL_SPARK_CONFIG and config is not LOCAL_SPARK_CONFIG


# ── databricks ───────────────────────────────────────────────────────────────────────────────────


def test_databricks_environment_builds_without_connecting(paths, workspace, no_sessions):
    resources = build_resources("databricks", paths, Settings())

    spark, store = resources["spark"], resources["store"]
    assert isinstance(spark, DatabricksConnect)
    assert isinstance(store, SparkTableStore) and store.format == "delta"
    assert (store.catalog, store.schema_prefix, store.spark) == ("analytics", "churn_", spark)
    # Secrets stay environment variables (the UI shows names, not values).
    assert isinstance(spark.host, dg.EnvVar) and isinstance(spark.token, dg.EnvVar)
    assert isinstance(resources["pii"].key, dg.EnvVar)
    assert resources["landing"].root == "/Volumes/analytics/churn_bronze/landing"
    assert isinstance(resources["landing"], SparkLandingZone) and resources["landing"].spark is spark
    mlflow = resources["mlflow"]
    assert (mlflow.tracking_uri, mlflow.registry_uri) == ("databricks", "databricks-uc")
    assert mlflow.model_name == "analytics.churn_ml.churn_model"
    assert mlflow.experiment == "/Shared/churn-assets"


def test_every_table_resolves_to_catalog_schema_table(paths, workspace, no_sessions):
    store = build_resources("databricks", paths)["store"]
    names = table_names()

    assert {"bronze.payments", "silver.customers", "gold.customer_features", "scores.daily",
            "ml.training_reference", "decisions.actions"} <= names
    for table in names:
        layer, name = table.split(".")
        assert store.location(table) == f"`analytics`.`churn_{layer}`.`{name}`"


def test_databricks_settings_from_the_environment(paths, workspace, monkeypatch, no_sessions):
    monkeypatch.delenv("DATABRICKS_CLUSTER_ID")
    monkeypatch.delenv("CHURN_SCHEMA_PREFIX")
    monkeypatch.setenv("DATABRICKS_SERVERLESS_COMPUTE_ID", "auto")
    monkeypatch.setenv("CHURN_LANDING_ROOT", "/Volumes/analytics/raw/drops")
    monkeypatch.setenv("CHURN_MLFLOW_EXPERIMENT", "/Users/me@example.com/churn")

    resources = build_resources("databricks", paths)

    assert resources["spark"].serverless_compute_id == "auto"
    assert resources["spark"].cluster_id is None
    assert resources["store"].location("gold.churn_labels") == "`analytics`.`gold`.`churn_labels`"
    assert resources["landing"].root == "/Volumes/analytics/raw/drops"
    assert resources["mlflow"].experiment == "/Users/me@example.com/churn"
    assert DatabricksTarget.from_env({}).catalog == "churn"


@pytest.mark.parametrize("missing", ["CHURN_PII_KEY", "DATABRICKS_HOST", "DATABRICKS_CLUSTER_ID"])
def test_databricks_refuses_missing_variables_by_name(paths, workspace, monkeypatch, missing):
    monkeypatch.delenv(missing)

    with pytest.raises(ValueError, match=rf"CHURN_ENV=databricks needs: .*{missing}"):
        build_resources("databricks", paths)


def test_databricks_refuses_ambiguous_compute(paths, workspace, monkeypatch):
    monkeypatch.setenv("DATABRICKS_SERVERLESS_COMPUTE_ID", "auto")
    with pytest.raises(ValueError, match="only one of DATABRICKS_CLUSTER_ID and"):
        build_resources("databricks", paths)
    monkeypatch.delenv("DATABRICKS_CLUSTER_ID")
    monkeypatch.setenv("DATABRICKS_SERVERLESS_COMPUTE_ID", "yes")
    with pytest.raises(ValueError, match="DATABRICKS_SERVERLESS_COMPUTE_ID=auto"):
        build_resources("databricks", paths)


@pytest.mark.parametrize("serverless", [False, True], ids=["cluster", "serverless"])
def test_the_session_is_made_on_first_use_with_the_environment(monkeypatch, serverless):
    """DatabricksConnect against a fake databricks.connect: what it would ask of the real one."""
    calls: list[tuple] = []

    class Builder:
        def sdkConfig(self, config):
            calls.append(("sdkConfig", config))
            return self

        def serverless(self, enabled):
            calls.append(("serverless", enabled))
            return self

        def getOrCreate(self):
            calls.append(("getOrCreate",))
            return types.SimpleNamespace(
                conf=types.SimpleNamespace(set=lambda k, v: calls.append(("conf", k, v)))
            )

    fake_connect = types.ModuleType("databricks.connect")
    fake_connect.DatabricksSession = types.SimpleNamespace(builder=Builder())
    monkeypatch.setitem(sys.modules, "databricks.connect", fake_connect)
    fake_core = types.ModuleType("databricks.sdk.core")
    fake_core.Config = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "databricks.sdk.core", fake_core)
    monkeypatch.setenv("FAKE_HOST", "https://dbc-fake.cloud.databricks.com")

    resource = DatabricksConnect(
        host=dg.EnvVar("FAKE_HOST"),
        token="t",
        cluster_id=None if serverless else "c-1",
        serverless_compute_id="auto" if serverless else None,
    )
    assert calls == []  # nothing until a session is asked for
    session = resource.spark_session

    assert resource.spark_session is session and calls.count(("getOrCreate",)) == 1
    config = calls[0][1]
    assert config["host"] == "https://dbc-fake.cloud.databricks.com"  # the EnvVar, resolved
    assert (config["cluster_id"], config["serverless_compute_id"]) == (
        (None, "auto") if serverless else ("c-1", None)
    )
    assert (("serverless", True) in calls) is serverless
    assert ("conf", "spark.sql.session.timeZone", "UTC") in calls


# ── all ──────────────────────────────────────────────────────────────────────────────────────────


def test_an_unknown_environment_is_refused_listing_the_three(paths):
    with pytest.raises(ValueError, match="CHURN_ENV='prod' .* local, spark, databricks"):
        build_resources("prod", paths)
    assert ENVIRONMENTS == ("local", "spark", "databricks")


def test_local_is_unchanged(paths):
    resources = build_resources("local", paths)
    assert isinstance(resources["store"], DeltaTableStore)
    assert resources["store"].root == str(paths.lake)


@pytest.mark.parametrize("env", ["spark", "databricks"])
def test_the_same_graph_loads_in_every_environment(paths, workspace, no_sessions, env):
    from churn_assets.definitions import build_definitions

    defs = build_definitions(paths, Settings(), env=env)

    dg.Definitions.validate_loadable(defs)
    assert isinstance(defs.resources["store"], SparkTableStore)
