"""SHAP contributions computed once per way through each tree equal LightGBM's own
``pred_contrib`` row by row: on the churn model, on boosters with every kind of split and
missing-value rule, with values no training row had; and a misread split falls back."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pytest

from churn_assets.ml import contributions as c
from churn_assets.ml.contributions import tree_contributions
from churn_assets_tests.ml.test_churn_model import ml_trained

FALLBACK = "row by row"


def top3(contrib: np.ndarray) -> np.ndarray:
    return np.argsort(-contrib[:, :-1], axis=1, kind="stable")[:, :3]


def assert_same_as_lightgbm(booster: lgb.Booster, x: np.ndarray, caplog) -> np.ndarray:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=c.__name__):
        grouped = tree_contributions(booster, x, min_rows=0)
    exact = booster.predict(x, pred_contrib=True)
    assert FALLBACK not in caplog.text  # the grouped path answered, not the fallback
    np.testing.assert_allclose(grouped, exact, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(top3(grouped), top3(exact))
    return grouped


def odd_rows(x: np.ndarray, rng: np.random.Generator, categorical: list[int]) -> np.ndarray:
    """Rows no training row looked like: missing, zero, negative, huge values, and category
    codes never seen (or negative)."""
    rows = [np.full(x.shape[1], np.nan), np.zeros(x.shape[1]), -np.abs(x[0]) - 1,
            np.abs(x[1]) * 1e6]
    for column in categorical:
        for code in (np.nan, -1.0, 0.0, 40.0, 99.0, 2.7):
            row = x[rng.integers(len(x))].copy()
            row[column] = code
            rows.append(row)
    return np.vstack([x, np.array(rows)])


def test_the_churn_model_s_drivers_are_lightgbm_s(tmp_path_factory, caplog):
    """The model the pipeline trains, on its validation rows plus odd ones."""
    model = ml_trained(tmp_path_factory).model
    x = model.spec.matrix(ml_trained(tmp_path_factory).validation)
    x = odd_rows(x, np.random.default_rng(1), model.spec.categorical_positions)
    assert_same_as_lightgbm(model.booster, x, caplog)
    # Large batches take this path inside the model too: drivers and scores are unchanged.
    contributions = model._contributions(x)
    np.testing.assert_allclose(contributions, model.booster.predict(x, pred_contrib=True),
                               rtol=0, atol=1e-12)


def _synthetic(rng: np.random.Generator, rows: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Two categorical columns (0 and 1) and numbers with NaNs and many exact zeros."""
    x = np.column_stack([
        rng.integers(0, 40, rows).astype(float), rng.integers(0, 5, rows).astype(float),
        rng.normal(size=rows), rng.exponential(size=rows), rng.integers(0, 4, rows).astype(float),
        rng.normal(size=rows)])
    x[rng.random(rows) < 0.15, 2] = np.nan
    x[rng.random(rows) < 0.1, 0] = np.nan
    x[rng.random(rows) < 0.3, 3] = 0.0
    logit = (np.isin(x[:, 0], [3, 7, 11, 30]) * 1.5 + np.nan_to_num(x[:, 2]) - x[:, 3]
             + (x[:, 4] == 0) + 0.5 * x[:, 1] + 0.3 * x[:, 5])
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


@pytest.mark.parametrize(("params", "missing"), [
    ({}, {0, 2}),  # missing values as NaN (numeric and categorical splits with a default way)
    ({"zero_as_missing": True}, {1}),  # zero is the missing value
    ({"use_missing": False}, {0}),  # no missing handling: NaN is read as zero
    ({"max_cat_to_onehot": 64}, {0, 2}),  # one-vs-rest categorical splits
], ids=["nan", "zero", "none", "onehot"])
def test_every_kind_of_split_matches_lightgbm(params, missing, caplog):
    rng = np.random.default_rng(7)
    x, y = _synthetic(rng)
    booster = lgb.train({"objective": "binary", "num_leaves": 31, "min_data_in_leaf": 20,
                         "verbose": -1, "seed": 3, **params},
                        lgb.Dataset(x, y, categorical_feature=[0, 1]), num_boost_round=40)
    trees = c._parse(booster)
    kinds = {(int(d) & 1, (int(d) >> 2) & 3) for t in trees for d in t.decision}
    assert {k for k, _ in kinds} == {0, 1}  # numeric and categorical splits both present
    assert {m for k, m in kinds if k == 0} >= missing  # the missing-value rules under test
    test, _ = _synthetic(np.random.default_rng(8), 3000)
    assert_same_as_lightgbm(booster, odd_rows(test, rng, [0, 1]), caplog)


def test_trees_without_a_split(caplog):
    rng = np.random.default_rng(5)
    x = np.column_stack([np.ones(3000), rng.normal(size=3000)])
    y = (rng.random(3000) < 0.5).astype(int)
    # A constant column and pure noise with a large leaf minimum: single-leaf trees.
    stumps = lgb.train({"objective": "binary", "min_data_in_leaf": 2000, "verbose": -1},
                       lgb.Dataset(x, y), num_boost_round=5)
    assert {t.splits for t in c._parse(stumps)} == {0}
    assert_same_as_lightgbm(stumps, x, caplog)


def test_a_misread_split_falls_back_to_lightgbm_s_own_answer(monkeypatch, caplog):
    rng = np.random.default_rng(9)
    x, y = _synthetic(rng)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y),
                        num_boost_round=10)
    right = c._Tree.goes_left
    monkeypatch.setattr(c._Tree, "goes_left", lambda self, columns, node:
                        ~right(self, columns, node))  # every split read the wrong way round
    with caplog.at_level(logging.WARNING, logger=c.__name__):
        answer = tree_contributions(booster, x, min_rows=0)
    assert FALLBACK in caplog.text
    np.testing.assert_array_equal(answer, booster.predict(x, pred_contrib=True))
