"""One local Spark session per test process, shared by the modules that need Spark.

Start-up takes 5-20 s, so modules call ``spark_session()`` from a module-scoped fixture of
their own; ``functools.cache`` makes every later call free.
"""

from __future__ import annotations

import functools


@functools.cache
def spark_session():
    from pyspark.sql import SparkSession

    from churn_assets.resources.spark import use_this_python_for_workers

    use_this_python_for_workers()
    return (
        SparkSession.builder.master("local[2]")
        .appName("churn-assets-tests")
        # Timestamps are instants; UTC makes Spark's display and Arrow conversion match Polars.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # PySpark 4 records the Python call site of every Column function through several JVM
        # round trips; transforms build thousands of expressions, so this triples plan-building
        # time. Errors still name the failing expression.
        .config("spark.python.sql.dataFrameDebugging.enabled", "false")
        .getOrCreate()
    )
