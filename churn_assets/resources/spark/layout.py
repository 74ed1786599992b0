"""Pure pieces of the Spark store's two layouts (no Spark): Unity Catalog names, Parquet
locations, the window predicate and the writer options. Each has its own test."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from churn_assets.resources.delta import _split
from churn_assets.resources.store import DateWindow

META_FILE = "_churn_table.json"  # leading underscore: Spark's file index skips it
# Unity Catalog names are quoted with backticks, so they may hold hyphens but never backticks.
_UC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SCHEMA_PREFIX = re.compile(r"[A-Za-z0-9_]*")
# Partition columns go into a SQL predicate and directory names: plain identifiers only.
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")


def unity_catalog_name(catalog: str, schema_prefix: str, table: str) -> str:
    """``"bronze.payments"`` → ``<catalog>.<schema_prefix>bronze.payments``, each part in backticks."""
    layer, name = _split(table)
    schema = f"{schema_prefix}{layer}"
    if not _UC_NAME.fullmatch(catalog or ""):
        raise ValueError(f"catalog {catalog!r} must be letters, digits, '_' or '-'")
    if not _SCHEMA_PREFIX.fullmatch(schema_prefix):
        raise ValueError(f"schema prefix {schema_prefix!r} must be letters, digits or '_'")
    return f"`{catalog}`.`{schema}`.`{name}`"


def parquet_location(root: str, table: str) -> str:
    """``"bronze.payments"`` → ``<root>/bronze/payments`` (a resolved path, or under a URI)."""
    layer, name = _split(table)
    if URI.match(root):
        return f"{root.rstrip('/')}/{layer}/{name}"
    return str(Path(root).expanduser().resolve() / layer / name)


def window_predicate(partition_column: str, window: DateWindow) -> str:
    """The SQL predicate selecting ``window``: the whole window, both ends, as date literals."""
    check_column(partition_column)
    column = f"`{partition_column}`"
    return (
        f"{column} >= DATE'{window.start.isoformat()}' "
        f"AND {column} < DATE'{window.end.isoformat()}'"
    )


def delta_write_options(
    window: DateWindow | None = None,
    partition_column: str = "partition_date",
    allow_new_columns: bool = False,
    replace_schema: bool = False,
) -> dict[str, str]:
    """The Delta writer options of a write: ``replaceWhere`` for a window, and schema options.

    ``mergeSchema`` is the only way Delta lets a write add columns, and it also lets it widen
    types, so the store passes it only when new columns were allowed *and* checked.
    """
    options: dict[str, str] = {}
    if window is not None:
        options["replaceWhere"] = window_predicate(partition_column, window)
    if allow_new_columns:
        options["mergeSchema"] = "true"
    if replace_schema:
        options["overwriteSchema"] = "true"
    return options


def parquet_write_options() -> dict[str, str]:
    """Overwrite only the partitions present in the frame (per write, whatever the session says)."""
    return {"partitionOverwriteMode": "dynamic"}


def partition_directory_name(partition_column: str, day: date) -> str:
    """The Hive-style directory Spark writes a day's rows to: ``payment_date=2024-01-01``."""
    return f"{partition_column}={day.isoformat()}"


def check_column(partition_column: str) -> None:
    if not _COLUMN_NAME.fullmatch(partition_column):
        raise ValueError(f"partition column {partition_column!r} must be a plain identifier")

