"""What the thin assets share: automation, metadata a person can read."""

import warnings
from collections.abc import Sequence

import dagster as dg
import narwhals as nw

from churn_assets.ingest.columns import PII_COLUMNS
from churn_assets.transforms.personal import mask, mask_text, personal_column

# Single-run backfill policies are the point of our partitioned assets; Dagster marks the
# parameter beta and says so in every process that loads them (the UI's code server, each run).
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

# Columns never shown in previews, even hashed: metadata is visible to everyone with UI access.
HIDDEN_COLUMNS = (*PII_COLUMNS, "email_hash", "phone_hash", "_ingested_at")


def on_upstream_change(chain: Sequence[dg.AssetKey] = ()) -> dg.AutomationCondition:
    """Materialize any partition whose upstream partitions changed, once none is missing.

    ``eager()`` alone only looks at the latest day; a re-drop of an older day must flow on too.
    ``chain`` names the asset's own keys when each day depends on the day before (gold's
    state): a missing day before does not hold a day back, or a backlog were asked for one day
    per sensor tick (about a day a minute under ``dagster dev``). Asked for together, the days
    form one run over their range (a single-run backfill policy), which builds them in order.
    """
    condition = dg.AutomationCondition.eager().without(
        dg.AutomationCondition.in_latest_time_window())
    if chain:
        condition = condition.replace("any_deps_missing", dg.AutomationCondition.any_deps_missing()
                                      .ignore(dg.AssetSelection.assets(*chain)))
    return condition


def markdown_preview(frame, rows: int = 5, columns: int = 12) -> str:
    """The first rows of a native frame as a Markdown table, without personal columns."""
    head = nw.from_native(frame).head(rows)
    head = head.lazy().collect() if isinstance(head, nw.LazyFrame) else head
    # Hidden by name (contract PII, and any column named like personal data, say an export's
    # contact_email in bronze), and by value: an e-mail address shifted into another column.
    head = head.drop([c for c in head.columns if c in HIDDEN_COLUMNS or personal_column(c)])
    if head.is_empty():
        return "_no rows_"
    names = head.columns[:columns]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in head.select(names).iter_rows():
        cells = ("" if v is None else mask_text(str(v))[:40] for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outcome_result(asset_key: dg.AssetKey, name: str, outcome,
                   partition_window: str | None = None) -> dg.AssetCheckResult:
    """An ``expectations.Outcome`` as a check result with its description and metadata;
    ``partition_window`` ("first..last" day) names the partitions it judged."""
    metadata = {k: _metadata_value(v) for k, v in outcome.metadata.items()}
    if partition_window is not None:
        metadata["partition_window"] = partition_window
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity[outcome.severity],
        description=mask_text((f"[{partition_window}] " if partition_window else "")
                              + outcome.description) if outcome.description else None,
        metadata=metadata,
    )


def _metadata_value(value):
    value = mask(value)  # example keys and values may hold what a shifted column put there
    if isinstance(value, list | dict | tuple):
        return dg.MetadataValue.json(value if not isinstance(value, tuple) else list(value))
    return value

