"""``lab/evaluate.py`` on a small sparse-retail world: the report the README's table comes from,
with oracles from the simulator's truth that know more than any model of the data."""

from __future__ import annotations

import pytest

from churn_assets.lab.evaluate import world_report
from churn_assets.simulator.sparse import sparse_retail_config


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    config = sparse_retail_config(customers=1500)
    return world_report(tmp_path_factory.mktemp("sparse_eval"), config, sparse=True,
                        training_days=365, snapshot_every_days=14)


def test_churn_report_against_baseline_recency_and_truth(report):
    churn = report["churn"]
    auc = churn["roc_auc"]
    assert {"model", "baseline", "recency_alone", "label_oracle",
            "expected_orders_alone"} <= auc.keys()
    # The truth (who is still buying, at what rate and rhythm) ranks better than the data can.
    assert auc["label_oracle"] > max(auc["model"], auc["baseline"]) + 0.05
    assert 0.0 < churn["alive_share"] < 1.0
    by_orders = churn["roc_auc_by_orders"]
    assert "3+" in by_orders
    assert sum(v["rows"] for v in by_orders.values()) <= churn["split"]["validation_rows"]
    assert churn["scorer"] in ("lightgbm", "logistic_baseline")


def test_cltv_report_and_its_oracle(report):
    cltv = report["cltv"]
    assert set(cltv["models"]) == {"bgnbd_gamma_gamma", "lightgbm_tweedie"}
    assert cltv["chosen"] in cltv["models"]
    oracle = cltv["oracle"]
    # The true expected revenue ranks the revenue that came better than either model.
    assert oracle["spearman"] > max(v["spearman"] for v in cltv["models"].values())
    assert oracle["total_actual"] == pytest.approx(
        cltv["models"]["bgnbd_gamma_gamma"]["total_actual"])
