"""Metric definitions on small hand-checkable inputs."""

from __future__ import annotations

import numpy as np
import pytest

from churn_assets.ml import metrics as m


def test_ece_uses_equal_frequency_bins():
    # Sorted by p, two bins of two rows: (0.1, 0.2 | y 0, 1) and (0.6, 0.9 | y 1, 1).
    y = np.array([1, 0, 1, 1])
    p = np.array([0.2, 0.1, 0.9, 0.6])
    table = m.calibration_table(y, p, bins=2)
    assert table["rows"].to_list() == [2, 2]
    assert table["mean_predicted"].to_list() == pytest.approx([0.15, 0.75])
    assert table["observed_rate"].to_list() == pytest.approx([0.5, 1.0])
    assert m.expected_calibration_error(y, p, bins=2) == pytest.approx((0.35 + 0.25) / 2)


def test_a_calibrated_score_has_small_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = rng.uniform(0, 1, p.size) < p
    assert m.expected_calibration_error(y, p) < 0.01
    assert m.expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.1


def test_top_share_precision_recall_and_lift():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0] * 2)  # base rate 0.3
    p = np.linspace(1, 0, y.size)  # ranks rows in order
    out = m.classification_metrics(y, p, top_shares=(0.10, 0.20))
    assert out["precision_at_10pct"] == 1.0  # rows 0, 1
    assert out["recall_at_10pct"] == pytest.approx(2 / 6)
    assert out["lift_at_10pct"] == pytest.approx(1 / 0.3)
    assert out["precision_at_20pct"] == pytest.approx(0.5)  # rows 0-3
    assert out["base_rate"] == pytest.approx(0.3)


def test_auc_by_segment_and_single_class_segments():
    y = np.array([1, 0, 1, 0, 1, 1])
    p = np.array([0.9, 0.1, 0.4, 0.6, 0.7, 0.8])
    segments = ["a", "a", "b", "b", None, None]
    table = m.auc_by_segment(y, p, segments)
    rows = {r["segment"]: r for r in table.iter_rows(named=True)}
    assert rows["a"]["roc_auc"] == 1.0 and rows["b"]["roc_auc"] == 0.0
    assert rows["unknown"]["roc_auc"] is None and rows["unknown"]["churned"] == 2


def test_metrics_refuse_mismatched_or_nan_inputs():
    with pytest.raises(ValueError, match="equal-length"):
        m.classification_metrics(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="NaN"):
        m.classification_metrics(np.array([0, 1]), np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="both churned and retained"):
        m.classification_metrics(np.array([1, 1]), np.array([0.5, 0.4]))
