"""Population stability: has today's population (features, score) moved from the training window?

``population_stability(reference, current)`` computes, per column,
``PSI = sum over bins of (current_share - reference_share) x ln(current_share / reference_share)``:

- numeric columns: bins cut at the reference's quantiles ``1/bins .. (bins-1)/bins`` (finite
  values; repeated cut points collapse, so ties and constant columns give fewer, honest bins: a
  constant column has the bins ``(-inf, c]`` and ``(c, inf)``); bins are right-closed and the
  outer ones open-ended, so current values outside the reference range land in them;
- categorical columns (strings, categoricals, booleans): one bin per category seen on either side;
- nulls (and NaN) are a bin of their own, ``"<null>"``, shown when either side has any;
- shares are floored at ``epsilon`` before the logarithm, so a bin empty on one side adds a large
  but finite term.

Status: ``"error"`` from ``error`` (0.25), ``"warn"`` from ``warn`` (0.1), else ``"ok"`` (the
usual reading: < 0.1 no shift, 0.1-0.25 a moderate shift, > 0.25 a major one). The histogram
table (``HISTOGRAM_SCHEMA``) is small (<= bins + 1 rows per numeric column) for UI metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

NULL_BIN = "<null>"
DEFAULT_EXCLUDE = ("customer_id", "snapshot_date")

DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(), "kind": pl.String(), "psi": pl.Float64(), "status": pl.String(),
    "bins": pl.Int64(), "reference_rows": pl.Int64(), "current_rows": pl.Int64(),
}
HISTOGRAM_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(), "bin_index": pl.Int64(), "bin": pl.String(),
    "reference_share": pl.Float64(), "current_share": pl.Float64(),
}


class DriftReport(NamedTuple):
    summary: pl.DataFrame  # DRIFT_SCHEMA, one row per feature, largest PSI first
    histogram: pl.DataFrame  # HISTOGRAM_SCHEMA


def psi(reference_share: np.ndarray, current_share: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins."""
    r = np.maximum(np.asarray(reference_share, dtype=np.float64), epsilon)
    c = np.maximum(np.asarray(current_share, dtype=np.float64), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def drift_status(value: float, warn: float = 0.1, error: float = 0.25) -> str:
    return "error" if value >= error else "warn" if value >= warn else "ok"


def population_stability(reference: pl.DataFrame | pl.LazyFrame,
                         current: pl.DataFrame | pl.LazyFrame,
                         features: Sequence[str] | None = None, bins: int = 10,
                         warn: float = 0.1, error: float = 0.25, epsilon: float = 1e-4,
                         exclude: Sequence[str] = DEFAULT_EXCLUDE) -> DriftReport:
    """PSI of each feature (default: every numeric, string or boolean column both frames share,
    except ``exclude``) of ``current`` against ``reference``."""
    cur = current.collect() if isinstance(current, pl.LazyFrame) else current
    if features is None:
        schema = reference.collect_schema()
        features = [c for c in schema if c in cur.columns and c not in exclude
                    and _kind(schema[c]) is not None]
    return DriftReference(reference, features, bins, warn, error, epsilon).compare(cur)


class DriftReference:
    """The reference side of ``population_stability``, binned once: comparing many days (a
    backfill's briefs) against one training reference cuts its quantiles once, not per day."""

    def __init__(self, reference: pl.DataFrame | pl.LazyFrame, features: Sequence[str],
                 bins: int = 10, warn: float = 0.1, error: float = 0.25,
                 epsilon: float = 1e-4) -> None:
        if bins < 2:
            raise ValueError(f"drift needs at least 2 bins; got {bins}")
        if warn > error:
            raise ValueError(f"drift thresholds need warn <= error; got warn={warn}, "
                             f"error={error}")
        ref = reference.collect() if isinstance(reference, pl.LazyFrame) else reference
        if missing := [c for c in features if c not in ref.columns]:
            raise ValueError(f"drift features {missing} are missing from the reference")
        if ref.height == 0:
            raise ValueError("drift needs rows on both sides; the reference has 0")
        self.features, self.rows = list(features), ref.height
        self.warn, self.error, self.epsilon = warn, error, epsilon
        # Per numeric feature its cut points and shares; per categorical one its shares.
        self._numeric: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._categorical: dict[str, pl.DataFrame] = {}
        for name in self.features:
            kind = _kind(ref.schema[name])
            if kind is None:
                raise ValueError(f"drift cannot bin column {name!r} of type {ref.schema[name]}; "
                                 "expected a numeric, string, categorical or boolean column")
            if kind == "numeric":
                self._numeric[name] = _numeric_edges(ref[name], bins)
            else:
                self._categorical[name] = _category_shares(ref[name])

    def compare(self, current: pl.DataFrame) -> DriftReport:
        if missing := [c for c in self.features if c not in current.columns]:
            raise ValueError(f"drift features {missing} are missing from the reference or the "
                             f"current frame")
        if current.height == 0:
            raise ValueError(f"drift needs rows on both sides; the reference has {self.rows} and "
                             f"the current frame 0")
        rows, histograms = [], []
        for name in self.features:
            if name in self._numeric:
                kind, (labels, r, c) = "numeric", _numeric_bins(*self._numeric[name],
                                                                current[name])
            else:
                kind, (labels, r, c) = "categorical", _category_bins(self._categorical[name],
                                                                     current[name])
            value = psi(r, c, self.epsilon)
            rows.append({"feature": name, "kind": kind, "psi": value,
                         "status": drift_status(value, self.warn, self.error),
                         "bins": len(labels), "reference_rows": self.rows,
                         "current_rows": current.height})
            histograms.append(pl.DataFrame({
                "feature": [name] * len(labels), "bin_index": np.arange(len(labels)),
                "bin": labels, "reference_share": r, "current_share": c,
            }, schema=HISTOGRAM_SCHEMA))
        summary = pl.DataFrame(rows, schema=DRIFT_SCHEMA).sort(
            ["psi", "feature"], descending=[True, False])
        histogram = (pl.concat(histograms) if histograms
                     else pl.DataFrame(schema=HISTOGRAM_SCHEMA))
        return DriftReport(summary, histogram)


def _kind(dtype: pl.DataType) -> str | None:
    if dtype.is_numeric():
        return "numeric"
    if dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    return None


def _float_values(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Float64).fill_null(np.nan).to_numpy()


def _numeric_shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    index = np.where(np.isnan(values), edges.size + 1,
                     np.searchsorted(edges, values, side="left"))
    return np.bincount(index, minlength=edges.size + 2) / values.size


def _numeric_edges(ref: pl.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's cut points and its shares over them (the null bin last)."""
    r = _float_values(ref)
    finite = r[np.isfinite(r)]
    edges = (np.unique(np.quantile(finite, np.arange(1, bins) / bins)) if finite.size
             else np.zeros(0))
    return edges, _numeric_shares(edges, r)


def _numeric_bins(edges: np.ndarray, r_share: np.ndarray, cur: pl.Series):
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    labels = [f"({lo}, {hi}]" for lo, hi in zip(bounds[:-2], bounds[1:-1], strict=True)]
    labels.append(f"({bounds[-2]}, inf)")
    c_share = _numeric_shares(edges, _float_values(cur))
    if r_share[-1] == 0 and c_share[-1] == 0:
        return labels, r_share[:-1], c_share[:-1]
    return [*labels, NULL_BIN], r_share, c_share


def _category_shares(values: pl.Series) -> pl.DataFrame:
    return (values.cast(pl.String).fill_null(NULL_BIN).alias("bin").value_counts(name="n")
            .with_columns(share=pl.col("n") / values.len()).drop("n"))


def _category_bins(reference: pl.DataFrame, cur: pl.Series):
    table = reference.join(_category_shares(cur), on="bin", how="full", coalesce=True,
                           suffix="_current").fill_null(0.0)
    table = table.sort(pl.col("bin") == NULL_BIN, "bin")  # the null bin last
    return (table["bin"].to_list(), table["share"].to_numpy(),
            table["share_current"].to_numpy())
