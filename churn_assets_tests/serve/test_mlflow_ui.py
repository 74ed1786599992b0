"""`churn-assets mlflow` serves the MLflow UI on the project's own store, and Dagster's metadata
links the model's run and version to that UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from churn_assets.resources.mlflow import DEFAULT_UI_URL
from churn_assets_tests.conftest import free_port, wait_until_served


def test_model_metadata_links_to_the_mlflow_ui(scored_world):
    _, meta = scored_world
    model = meta["ml/churn_model"]
    assert model["mlflow_run"].startswith(f"{DEFAULT_UI_URL}/#/experiments/")
    assert model["mlflow_run"].endswith(f"/runs/{model['mlflow_run_id']}")
    assert model["mlflow_model_version"] == (
        f"{DEFAULT_UI_URL}/#/models/churn_model/versions/{model['model_version']}")
    cltv = meta["ml/cltv_model"]
    assert cltv["mlflow_run"].endswith(f"/runs/{cltv['mlflow_run_id']}")


def test_churn_assets_mlflow_serves_the_project_store(scored_world):
    paths, _ = scored_world
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "churn_assets.cli", "mlflow", "--port", str(port)],
        env={**os.environ, "CHURN_HOME": str(paths.home), "CHURN_ENV": "local"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_served(f"{base}/health", server, "the MLflow UI")
        model = httpx.get(f"{base}/api/2.0/mlflow/registered-models/get",
                          params={"name": "churn_model"}).json()["registered_model"]
        assert {a["alias"] for a in model["aliases"]} >= {"champion"}
        assert httpx.get(base).status_code == 200  # the UI itself
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the group this test started
        server.wait(timeout=30)
