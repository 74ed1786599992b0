"""The scoring API on a real scored world and its MLflow registry: the same numbers as
``scores/daily``, authentication, validation, no personal data, and reloads without a failed
request."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from datetime import timedelta

import httpx
import polars as pl
import pytest
import uvicorn
from fastapi.testclient import TestClient

from churn_assets.assets.decisions import recently_selected
from churn_assets.reports.browser import Chromium, find_chromium
from churn_assets.resources import build_resources
from churn_assets.serve.app import create_app
from churn_assets.serve.snapshot import SnapshotHolder
from churn_assets.settings import load_settings
from churn_assets_tests.scored_world import LAST, copy_world

KEY = "test-key-not-a-secret-7f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}


def holder_for(paths) -> SnapshotHolder:
    settings = load_settings(paths)
    resources = build_resources("local", paths, settings)
    holder = SnapshotHolder(resources["store"], resources["mlflow"], settings)
    assert holder.refresh(), holder.last_error
    return holder


@pytest.fixture(scope="module")
def served(scored_world):
    paths, _ = scored_world
    holder = holder_for(paths)
    return paths, holder, TestClient(create_app(holder, KEY))


def lake(paths, table: str) -> pl.DataFrame:
    return pl.read_delta(str(paths.lake / table.replace(".", "/")))


def payload_of(paths, customer_id: str) -> dict:
    row = lake(paths, "gold.customer_features").filter(
        (pl.col("snapshot_date") == LAST) & (pl.col("customer_id") == customer_id)).to_dicts()[0]
    return {**row, "snapshot_date": row["snapshot_date"].isoformat()}


def test_everything_but_health_needs_the_key(served):
    _, _, client = served
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["feature_date"] == str(LAST)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        answer = client.get("/v1/customers/C00000001/risk", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"
        assert client.post("/v1/score", json={}, headers=headers).status_code == 401
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/v1/customers/{customer_id}/risk", "/v1/score", "/healthz", "/readyz"}
    assert client.get("/docs").status_code == 200


def test_a_customer_s_risk_is_what_the_pipeline_scored(served):
    paths, _, client = served
    scores = lake(paths, "scores.daily").filter(pl.col("snapshot_date") == LAST)
    feed = lake(paths, "decisions.actions").filter(pl.col("snapshot_date") == LAST)
    treated = feed.filter(~pl.col("control"))
    chosen = [*treated["customer_id"].head(2), *scores.join(feed, on="customer_id", how="anti")
              ["customer_id"].head(2)]
    assert len(chosen) == 4
    for customer in chosen:
        answer = client.get(f"/v1/customers/{customer.lower()}/risk", headers=AUTH)
        assert answer.status_code == 200
        risk = answer.json()
        expected = scores.filter(pl.col("customer_id") == customer).row(0, named=True)
        assert risk["churn_probability"] == pytest.approx(expected["churn_probability"])
        assert risk["cltv"] == pytest.approx(expected["cltv"])
        assert risk["revenue_at_risk"] == pytest.approx(expected["revenue_at_risk"])
        assert risk["risk_band"] == expected["risk_band"]
        assert [d["feature"] for d in risk["top_drivers"]] == [
            expected[f"driver_{i}"] for i in (1, 2, 3)]
        assert risk["model_version"] == expected["model_version"]
        assert risk["feature_date"] == str(LAST)
        in_feed = feed.filter(pl.col("customer_id") == customer)
        action = risk["action"]
        assert action["source"] == f"decisions/actions {LAST}"
        if in_feed.height:
            assert action["action"] == in_feed["action"][0]
            assert action["cost"] == pytest.approx(in_feed["cost"][0])
        else:
            assert action["action"] is None


def test_customers_outside_the_model_s_population_and_unknown_ones(served):
    paths, _, client = served
    features = lake(paths, "gold.customer_features").filter(pl.col("snapshot_date") == LAST)
    outside = features.filter(pl.col("is_cancelled"))["customer_id"]
    assert outside.len(), "the world should have a cancelled customer"
    risk = client.get(f"/v1/customers/{outside[0]}/risk", headers=AUTH).json()
    assert risk["churn_probability"] is None and "population" in risk["note"]
    missing = client.get("/v1/customers/C99999999/risk", headers=AUTH)
    assert missing.status_code == 404 and "C99999999" in missing.json()["detail"]


def test_scoring_a_payload_gives_the_same_answer_and_names_bad_fields(served):
    paths, _, client = served
    customer = lake(paths, "scores.daily").filter(pl.col("snapshot_date") == LAST)[
        "customer_id"][0]
    payload = payload_of(paths, customer)
    scored = client.post("/v1/score", json=payload, headers=AUTH)
    assert scored.status_code == 200
    looked_up = client.get(f"/v1/customers/{customer}/risk", headers=AUTH).json()
    for field in ("churn_probability", "cltv", "revenue_at_risk", "risk_band", "model_version",
                  "feature_date"):
        assert scored.json()[field] == pytest.approx(looked_up[field]), field
    for ours, theirs in zip(scored.json()["top_drivers"], looked_up["top_drivers"], strict=True):
        assert ours["feature"] == theirs["feature"]
        assert ours["impact"] == pytest.approx(theirs["impact"])
    assert scored.json()["action"]["source"] == "policy on this customer alone"

    wrong = {**payload, "tenure_days": "ten"}
    answer = client.post("/v1/score", json=wrong, headers=AUTH)
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "tenure_days"]]
    missing = {k: v for k, v in payload.items() if k != "orders_30d"}
    answer = client.post("/v1/score", json=missing, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "orders_30d"]
    assert answer.json()["detail"][0]["type"] == "missing"
    unknown = {**payload, "email": "someone@example.com"}
    assert client.post("/v1/score", json=unknown, headers=AUTH).status_code == 422


def test_no_personal_data_in_any_answer(served):
    paths, holder, client = served
    raw = pl.read_parquet(next((paths.landing / "customers").rglob("*.parquet")))
    secrets = [v for c in ("email", "phone", "name", "first_name", "last_name")
               if c in raw.columns for v in raw[c].drop_nulls().head(50).to_list()]
    assert secrets
    bodies = [client.get(f"/v1/customers/{c}/risk", headers=AUTH).text
              for c in list(holder.current.customers)[:50]]
    bodies.append(client.get("/readyz").text)
    for body in bodies:
        assert not any(s in body for s in secrets)
        assert not set(json.loads(body)) & {"email", "email_hash", "phone", "phone_hash", "name"}


def test_new_features_and_a_new_champion_go_live_without_a_failed_request(
        scored_world, tmp_path, caplog):
    """A real uvicorn on a free loopback port, clients hammering it while the snapshot is
    rebuilt twice: a new gold partition, then a new champion version."""
    from churn_assets.automation import TRAINING_JOB
    from churn_assets_tests.scored_world import run_job

    paths = copy_world(scored_world[0], tmp_path / "home")
    holder = holder_for(paths)
    server = uvicorn.Server(uvicorn.Config(create_app(holder, KEY), host="127.0.0.1", port=0,
                                           log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    caplog.set_level(logging.INFO)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        customer = next(iter(holder.current.customers))
        statuses, seen, stop = [], set(), threading.Event()

        def hammer():
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as http:
                while not stop.is_set():
                    answer = http.get(f"/v1/customers/{customer}/risk")
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        seen.add((answer.json()["model_version"], answer.json()["feature_date"]))

        clients = [threading.Thread(target=hammer) for _ in range(2)]
        for c in clients:
            c.start()
        # Tomorrow's gold partition lands (today's rows, one day later).
        store = holder.store
        tomorrow = LAST + timedelta(days=1)
        from churn_assets.resources.store import DateWindow
        today = pl.read_delta(store.location("gold.customer_features")).filter(
            pl.col("snapshot_date") == LAST)
        store.replace_window("gold.customer_features",
                             today.with_columns(pl.lit(tomorrow).alias("snapshot_date")),
                             DateWindow.day(tomorrow), "snapshot_date")
        assert holder.refresh() and holder.current.feature_date == tomorrow
        # Tomorrow is not decided yet: the policy runs over its customers, within the budget,
        # leaving out those selected within the cooldown, as decisions/actions will.
        current = holder.current
        assert current.decision_source == f"the policy on {tomorrow} (not yet in decisions/actions)"
        treated = [r["cost"] for r in current.decided.values() if not r["control"]]
        assert sum(treated) <= holder.settings.decisions.policy.daily_budget + 1e-9
        cooldown = holder.settings.decisions.policy.cooldown_days
        recent = set(recently_selected(store, tomorrow, cooldown)["customer_id"])
        assert recent and not recent & set(current.decided)
        assert not holder.refresh()  # nothing new: the snapshot stays
        with __import__("dagster").instance_for_test() as instance:
            run_job(paths, TRAINING_JOB, instance)  # same data: the gate promotes v2
        assert holder.refresh() and holder.current.model_version == "2"
        time.sleep(0.3)
        stop.set()
        for c in clients:
            c.join()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert len(statuses) > 20 and set(statuses) == {200}
    assert {("1", str(LAST)), ("1", str(tomorrow)), ("2", str(tomorrow))} <= seen
    assert KEY not in caplog.text


def local_references(html: str) -> list[str]:
    """Every address a docs page refers to; fails on any that names a host."""
    found = re.findall(r'(?:src|href|spec-url)="([^"]*)"|url: \'([^\']*)\'', html)
    refs = [a or b for a, b in found]
    outside = [r for r in refs if not r.startswith("/") or r.startswith("//")]
    assert not outside and not re.search(r"https?://", html), outside
    return refs


def test_the_docs_pages_load_only_from_the_api_itself(served):
    """/docs (Swagger UI) and /redoc refer to scripts, styles and icons this app serves from
    the installed fastapi-offline package, never to a CDN, and each of those answers."""
    _, _, client = served
    for page, wanted in (("/docs", {"/docs-assets/swagger-ui-bundle.js",
                                    "/docs-assets/swagger-ui.css", "/openapi.json"}),
                         ("/redoc", {"/docs-assets/redoc.standalone.js", "/openapi.json"})):
        answer = client.get(page)
        assert answer.status_code == 200, page
        refs = local_references(answer.text)
        assert wanted <= set(refs), (page, refs)
        for ref in refs:
            fetched = client.get(ref)
            assert fetched.status_code == 200 and len(fetched.content) > 100, ref
    assert client.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"].startswith(
        ("application/javascript", "text/javascript"))


@pytest.mark.skipif(find_chromium() is None and not os.environ.get("CI"),
                    reason="no Chromium here (CI installs Debian's chromium)")
def test_swagger_ui_renders_every_operation_offline_in_a_browser(served):
    """A real uvicorn and headless Chromium: Swagger UI draws the API's operations, and every
    request the page made went to the API's own loopback address."""
    _, holder, _ = served
    server = uvicorn.Server(uvicorn.Config(create_app(holder, KEY), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        with Chromium() as browser:
            browser.load(f"{base}/docs")
            paths = browser.wait_until(
                "[...document.querySelectorAll('.opblock-summary-path')]"
                ".map(e => e.dataset.path || e.textContent).join('\\n')", timeout=60)
            requested, errors = browser.requested(), browser.console_errors()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert {"/v1/customers/{customer_id}/risk", "/v1/score", "/healthz", "/readyz"} <= set(
        p.replace("\u200b", "") for p in paths.split("\n")), paths
    assert f"{base}/openapi.json" in requested and f"{base}/docs-assets/swagger-ui-bundle.js" in requested
    assert all(u.startswith(f"{base}/") or u.startswith("data:") for u in requested), requested
    assert errors == []


def test_serve_refuses_to_start_without_a_key(monkeypatch, capsys):
    from churn_assets.cli import main

    monkeypatch.delenv("CHURN_API_KEY", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    assert "CHURN_API_KEY" in capsys.readouterr().err


def test_an_undecided_day_gets_the_actions_decisions_actions_would_write(scored_world, tmp_path):
    """Before the day's decisions run, the API runs the same policy, cooldown, uplift model and
    control groups over the day's customers: decide the last day again with what is known now
    (outcomes have been measured since), remove that feed, and the snapshot's actions are
    exactly the feed the decisions asset wrote."""
    import dagster as dg

    from churn_assets.automation import SCORING_JOB
    from churn_assets.resources.store import DateWindow
    from churn_assets_tests.scored_world import run_job

    paths = copy_world(scored_world[0], tmp_path / "home")
    with dg.instance_for_test() as instance:
        run_job(paths, SCORING_JOB, instance, LAST, LAST)
    written = lake(paths, "decisions.actions").filter(pl.col("snapshot_date") == LAST)
    assert written.height
    store = build_resources("local", paths, load_settings(paths))["store"]
    store.replace_window("decisions.actions", written.clear(), DateWindow.day(LAST),
                         "snapshot_date")
    current = holder_for(paths).current
    assert current.decision_source.startswith(f"the policy on {LAST}")
    assert set(current.decided) == set(written["customer_id"])
    for row in written.iter_rows(named=True):
        ours = current.decided[row["customer_id"]]
        assert (ours["action"], ours["control"]) == (row["action"], row["control"])
        assert ours["cost"] == pytest.approx(row["cost"])
        assert ours["expected_value"] == pytest.approx(row["expected_value"])
