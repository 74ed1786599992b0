"""The Spark engine: where the session comes from (``session``), how tables are named and laid
out (``layout``), the table store (``store``), and landing files parsed on the executors
(``landing``). pyspark is imported lazily: importing this package needs neither pyspark nor Java.
"""

from churn_assets.resources.spark.layout import (
    META_FILE,
    delta_write_options,
    parquet_location,
    parquet_write_options,
    partition_directory_name,
    unity_catalog_name,
    window_predicate,
)
from churn_assets.resources.spark.session import (
    LOCAL_SPARK_CONFIG,
    session_for,
    use_this_python_for_workers,
)
from churn_assets.resources.spark.store import SparkTableStore

__all__ = [
    "LOCAL_SPARK_CONFIG",
    "META_FILE",
    "SparkTableStore",
    "delta_write_options",
    "parquet_location",
    "parquet_write_options",
    "partition_directory_name",
    "session_for",
    "unity_catalog_name",
    "use_this_python_for_workers",
    "window_predicate",
]
