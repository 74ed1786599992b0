"""How good a churn score is: ranking, calibration and the top of the list, overall and by
segment, for the model and for its baseline on the same rows.

Expected calibration error uses **equal-frequency** bins (each bin holds the same number of
rows, ranked by predicted probability): churn scores pile up near 0, so equal-width bins would
leave most bins nearly empty and one bin holding most rows. ECE is the row-weighted mean of
``|mean predicted - observed churn rate|`` over the bins.

Top-k metrics rank by probability (ties broken by row order, stably) and take the first
``ceil(k * n)`` rows: precision there, the share of all churners caught (recall), and lift
(precision over the base rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

TOP_SHARES = (0.05, 0.10, 0.20)
ECE_BINS = 10


def classification_metrics(churned: np.ndarray, probability: np.ndarray,
                           top_shares: Sequence[float] = TOP_SHARES,
                           bins: int = ECE_BINS) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, ECE and precision / recall / lift at each top share."""
    y, p = _check(churned, probability)
    out = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, bins),
        "base_rate": float(y.mean()),
        "rows": float(y.size),
    }
    order = np.argsort(-p, kind="stable")
    for share in top_shares:
        top = y[order[: max(1, math.ceil(share * y.size))]]
        name = f"{round(share * 100)}pct"
        precision = float(top.mean())
        out[f"precision_at_{name}"] = precision
        out[f"recall_at_{name}"] = float(top.sum() / y.sum())
        out[f"lift_at_{name}"] = precision / float(y.mean())
    return out


def expected_calibration_error(churned: np.ndarray, probability: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Row-weighted mean gap between predicted and observed rate over equal-frequency bins."""
    table = calibration_table(churned, probability, bins)
    gaps = (table["mean_predicted"] - table["observed_rate"]).abs() * table["rows"]
    return float(gaps.sum() / table["rows"].sum())


def calibration_table(churned: np.ndarray, probability: np.ndarray,
                      bins: int = ECE_BINS) -> pl.DataFrame:
    """Per equal-frequency bin: rows, mean predicted probability, observed churn rate."""
    y, p = _check(churned, probability, need_both=False)
    order = np.argsort(p, kind="stable")
    bin_of = np.empty(y.size, dtype=np.int64)
    bin_of[order] = np.arange(y.size) * min(bins, y.size) // y.size
    # numpy, not a parallel group-by: the same inputs give the same bits on every run.
    rows = np.bincount(bin_of)
    return pl.DataFrame({
        "bin": np.arange(rows.size), "rows": rows,
        "mean_predicted": np.bincount(bin_of, weights=p) / rows,
        "observed_rate": np.bincount(bin_of, weights=y.astype(np.float64)) / rows,
    })


def auc_by_segment(churned: np.ndarray, probability: np.ndarray,
                   segment: Sequence[str | None]) -> pl.DataFrame:
    """ROC-AUC per segment (null segment: ``"unknown"``); null AUC where a segment holds only
    one class."""
    y, p = _check(churned, probability, need_both=False)
    frame = pl.DataFrame({"segment": pl.Series(segment, dtype=pl.String).fill_null("unknown"),
                          "y": y, "p": p})
    rows = []
    for (name,), part in frame.group_by("segment", maintain_order=True):
        ys = part["y"].to_numpy()
        both = 0 < ys.sum() < ys.size
        rows.append({"segment": name, "rows": part.height, "churned": int(ys.sum()),
                     "roc_auc": float(roc_auc_score(ys, part["p"].to_numpy())) if both else None})
    return pl.DataFrame(rows, schema={"segment": pl.String, "rows": pl.Int64,
                                      "churned": pl.Int64, "roc_auc": pl.Float64}).sort("segment")


def roc_table(churned: np.ndarray, probability: np.ndarray, points: int = 200) -> pl.DataFrame:
    """The ROC curve, thinned to about ``points`` rows (for a plot or a logged table)."""
    y, p = _check(churned, probability)
    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, fpr.size - 1, min(points, fpr.size)).astype(int))
    return pl.DataFrame({"false_positive_rate": fpr[keep], "true_positive_rate": tpr[keep]})


def against_baseline(model: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Model minus baseline for every shared metric (``brier``/``ece``: lower is better)."""
    return {f"{k}_vs_baseline": model[k] - baseline[k] for k in model
            if k in baseline and k not in ("rows", "base_rate")}


def _check(churned, probability, need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(churned).astype(np.int64)
    p = np.asarray(probability, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(f"need equal-length 1-d labels and probabilities, got {y.shape} "
                         f"and {p.shape}")
    if np.isnan(p).any():
        raise ValueError("probabilities contain NaN")
    if need_both and not 0 < y.sum() < y.size:
        raise ValueError("the metric needs both churned and retained rows")
    return y, p
