"""Where the Spark session comes from, and the local session's settings.

**Where the session comes from.** The store has a ``spark`` field holding the resource that owns
the session: dagster-pyspark's ``PySparkResource`` locally, ``DatabricksConnect`` (see
``databricks.py``) on Databricks -- anything with a ``spark_session`` attribute. Declared as a
resource-typed field, Dagster initializes it before the store in every run, and when the same
instance is also the top-level ``spark`` resource (as ``build_resources`` does) both share it. Used
outside a run (tests, a notebook), a ``PySparkResource`` has no session yet, so the store builds
one from that resource's ``spark_config``; with no ``spark`` at all it takes the process's active
or default session (``SparkSession.builder.getOrCreate()``). Either way the store makes sure the
session time zone is UTC: timestamps are instants, and Arrow conversion to and from Polars uses
the session time zone.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# The session settings of the local `spark` environment (build_resources uses them).
LOCAL_SPARK_CONFIG: dict[str, str] = {
    "spark.master": "local[2]",
    "spark.app.name": "churn-assets",
    # Timestamps are instants; UTC makes Arrow conversion to and from Polars lossless.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    # The 1g default ran out of heap on the gold steps of a small world under load.
    "spark.driver.memory": "2g",
    # PySpark 4 records the Python call site of every Column function through several JVM round
    # trips; transforms build thousands of expressions, so this triples plan-building time.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
    # The store also sets this on each window write; the session default keeps ad hoc
    # partitioned writes from wiping a whole table.
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # INT96 timestamps are deprecated; micros read back the same in Polars, DuckDB and Spark.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.showConsoleProgress": "false",
}


def use_this_python_for_workers() -> None:
    """Local Spark starts its Python workers (scoring, landing-file parsing) with
    ``PYSPARK_PYTHON``, by default whatever ``python3`` is first on PATH, which need not have
    this package or its dependencies. Read once, when the first session starts."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def session_for(provider: Any) -> SparkSession:
    """The session of a resource that owns one (``PySparkResource``, ``DatabricksConnect``), or
    the process's active or default session for ``None``; always in UTC."""
    return _ensure_utc(_session_of(provider))


def _session_of(provider: Any) -> SparkSession:
    if provider is not None:
        session = getattr(provider, "spark_session", None)
        if session is not None:
            return session
        config = getattr(provider, "spark_config", None)
        if config is None:
            raise TypeError(
                f"the store's spark resource {type(provider).__name__} has no spark_session"
            )
        # A PySparkResource outside a Dagster run (setup_for_execution never ran): same config.
        from pyspark.sql import SparkSession

        builder = SparkSession.builder
        for key, value in config.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()


def _ensure_utc(session: SparkSession) -> SparkSession:
    # The session time zone decides how Arrow timestamps convert both ways and how naive
    # (TIMESTAMP_NTZ) values are read as instants. Both environments configure UTC already; this
    # covers a session the caller made (it is a runtime setting, set on that session only).
    if session.conf.get("spark.sql.session.timeZone") != "UTC":
        session.conf.set("spark.sql.session.timeZone", "UTC")
    return session

