"""The UI path end to end: a real webserver and daemon (`dagster dev`) on a free loopback port,
driven through the GraphQL API as the UI drives it, against a tiny world in temporary homes.

After the world is loaded and a model trained (what `make run` does), opening the UI launches
nothing; a 3-day backfill of the daily job succeeds; a new day landing is carried by the landing
sensor and the automation sensor through gold on its own; the scoring job runs for a partition.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from churn_assets.automation import DAILY_JOB, LABELS_JOB, SCORING_JOB, TRAINING_JOB
from churn_assets.definitions import build_definitions
from churn_assets.lab.runner import run_once, run_range
from churn_assets.settings import Paths, load_settings
from churn_assets.simulator import SimConfig, simulate
from churn_assets_tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)
DAYS = 20
START = YESTERDAY - timedelta(days=DAYS - 1)
# A short horizon and training window so a tiny world trains a champion in seconds.
SETTINGS = """\
[labels]
horizon_days = 5
[model]
training_days = 10
validation_days = 3
auc_floor = 0.0
[sensors]
interval_seconds = 2
"""
DAGSTER_YAML = """\
run_queue:
  max_concurrent_runs: 2
sensors:
  use_threads: true
  num_workers: 2
schedules:
  use_threads: true
  num_workers: 2
telemetry:
  enabled: false
"""
LOCATION = {"repositoryLocationName": "churn_assets", "repositoryName": "__repository__"}


class Ui:
    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=30)

    def query(self, text: str, **variables) -> dict:
        response = self.client.post("/graphql", json={"query": text, "variables": variables})
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def runs(self) -> list[dict]:
        data = self.query("""{ runsOrError { ... on Runs { results {
            runId status jobName tags { key value } assetSelection { path } } } } }""")
        return data["runsOrError"]["results"]

    def wait(self, what: str, done, timeout: float = 90, every: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = done()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}; runs: {self.runs()}")


def features_days(paths: Paths) -> set[date]:
    table = paths.lake / "gold" / "customer_features"
    if not (table / "_delta_log").exists():
        return set()
    return set(pl.read_delta(str(table)).get_column("snapshot_date").unique().to_list())


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The world through `make run`'s steps (all but its last day), then `dagster dev`."""
    root = tmp_path_factory.mktemp("ui")
    paths = Paths(root / "data")
    paths.home.mkdir()
    paths.settings_file.write_text(SETTINGS)
    config = SimConfig(customers=200, days=DAYS, start=START, seed=7)
    simulate(paths, config, until=YESTERDAY - timedelta(days=1))
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        defs = build_definitions(paths, load_settings(paths), "local")
        partitions = defs.resolve_job_def(DAILY_JOB).partitions_def
        with dg.DagsterInstance.get() as instance:
            last = YESTERDAY - timedelta(days=1)
            run_range(defs, partitions, START, last, instance)
            run_range(defs, partitions, START, last - timedelta(days=5), instance,
                      job_name=LABELS_JOB)
            run_once(defs, TRAINING_JOB, instance)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        before = {r.run_id for r in instance.get_runs()}
    port = free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_module:\n      module_name: churn_assets\n"
                         f"      working_directory: {REPO}\n")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CHURN_HOME": str(paths.home),
           "CHURN_ENV": "local", "PYTHONPATH": str(REPO)}
    log = (root / "dagster_dev.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p",
         str(port), "-w", str(workspace)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    client = Ui(f"http://127.0.0.1:{port}")
    try:
        def ready():
            try:
                data = client.query("""{ workspaceOrError { ... on Workspace {
                    locationEntries { locationOrLoadError { __typename } } } } }""")
            except (httpx.HTTPError, AssertionError):
                return False
            entries = data["workspaceOrError"]["locationEntries"]
            return entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"

        client.wait("the webserver and code location", ready, timeout=90)
        yield client, paths, root / "dagster_dev.log", before
    finally:
        # The whole process group: webserver, daemon, code server and any run workers.
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        client.client.close()
        log.close()


def test_the_ui_path_backfills_follows_new_drops_and_scores(ui):
    client, paths, log, before = ui
    day_before = YESTERDAY - timedelta(days=1)
    assert max(features_days(paths)) == day_before

    # Opening the UI after `make run` launches nothing but the deadline checks' evaluation:
    # every drop is in bronze already, and no partition is missing or out of date.
    time.sleep(10)  # a few sensor intervals

    def launched_by(run):
        return {t["key"]: t["value"] for t in run["tags"]}.get("dagster/sensor_name")

    new_runs = [r for r in client.runs() if r["runId"] not in before]
    assert [r for r in new_runs if launched_by(r) != "freshness_checks_sensor"] == [], new_runs
    before |= {r["runId"] for r in new_runs}

    # A 3-day backfill of the daily job, as the UI's backfill dialog launches it.
    defs = build_definitions(paths)
    daily = defs.resolve_job_def(DAILY_JOB)
    keys = [{"path": list(k.path)} for k in daily.asset_layer.selected_asset_keys]
    days = [(day_before - timedelta(days=i)).isoformat() for i in (2, 1, 0)]
    launched = client.query("""mutation($params: LaunchBackfillParams!) {
        launchPartitionBackfill(backfillParams: $params) {
          __typename ... on LaunchBackfillSuccess { backfillId }
          ... on PythonError { message } } }""",
                            params={"selector": {"partitionSetName": f"{DAILY_JOB}_partition_set",
                                                 "repositorySelector": LOCATION},
                                    "assetSelection": keys, "partitionNames": days})
    result = launched["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill = result["backfillId"]

    def backfill_done():
        data = client.query("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { status } } }""", id=backfill)
        status = data["partitionBackfillOrError"]["status"]
        return status if status not in ("REQUESTED", "CANCELING") else None

    assert client.wait("the 3-day backfill", backfill_done, timeout=180) in (
        "COMPLETED", "COMPLETED_SUCCESS")
    backfill_runs = [r for r in client.runs()
                     if {"key": "dagster/backfill", "value": backfill} in r["tags"]]
    assert backfill_runs and all(r["status"] == "SUCCESS" for r in backfill_runs), backfill_runs

    # A new day lands: the landing sensor ingests it, the automation sensor carries it to gold.
    simulate(paths, SimConfig(customers=200, days=DAYS, start=START, seed=7), until=YESTERDAY)
    # Each hop (bronze, silver customers, the other silver, gold activity, gold features) is
    # a sensor tick and a run; on a busy 2-core machine a hop can take 40 s.
    client.wait("yesterday's gold features", lambda: YESTERDAY in features_days(paths),
                timeout=600, every=2)
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in client.runs()]
    assert any(t.get("dagster/sensor_name") == "landing_sensor" for t in tags), tags
    assert any(t.get("dagster/sensor_name") == "automation_sensor"
               or "dagster/automation_condition" in str(t) or "dagster/backfill" in t
               for t in tags), tags

    # The scoring job for yesterday's partition, as the UI's launchpad launches it.
    launched = client.query("""mutation($params: ExecutionParams!) {
        launchRun(executionParams: $params) {
          __typename ... on LaunchRunSuccess { run { runId } }
          ... on PythonError { message } } }""", params={
        "selector": {**LOCATION, "jobName": SCORING_JOB},
        "executionMetadata": {"tags": [{"key": "dagster/partition",
                                        "value": YESTERDAY.isoformat()}]},
    })
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["launchRun"]["run"]["runId"]

    def run_done():
        data = client.query("""query($id: ID!) { runOrError(runId: $id) {
            ... on Run { status } } }""", id=run_id)
        status = data["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert client.wait("the scoring run", run_done, timeout=180) == "SUCCESS"
    scores = pl.read_delta(str(paths.lake / "scores" / "daily"))
    assert scores.filter(pl.col("snapshot_date") == YESTERDAY).height > 0
    actions = pl.read_delta(str(paths.lake / "decisions" / "actions"))
    assert actions.filter(pl.col("snapshot_date") == YESTERDAY).height > 0
    # No beta-parameter noise in what a user reads.
    assert "BetaWarning" not in log.read_text()
