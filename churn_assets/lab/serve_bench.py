"""The serving benchmark of ``make bench`` (``--only serving``): the API under a steady load on
loopback, and the champion's batch scoring throughput.

- *API*: ``churn-assets serve`` runs in its own process on a free 127.0.0.1 port; an open-loop
  generator (asyncio, 32 keep-alive connections) sends ``GET /v1/customers/{id}/risk`` for random known customers at a fixed rate for
  a fixed time (bounded: ``rate x seconds`` requests, then it stops). Latency is measured from
  each request's *scheduled* send time, so a stalled server cannot hide its queue (no
  coordinated omission). Goal: p99 <= 25 ms and no errors at 200 requests/s for 30 s.
- *Batch*: ``rows`` distinct feature rows (the world's at-risk gold history, then jittered
  copies of it: ``distinct_rows``), scored as ``scores/daily`` scores a day (``score_day``:
  calibrated probability, SHAP drivers, CLTV).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

WORLD_START = date(2026, 1, 1)
WORLD_SETTINGS = ("[labels]\nhorizon_days = 10\n[model]\ntraining_days = 30\n"
                  "validation_days = 5\nauc_floor = 0.5\n")
KEY = "bench-key"


def build_world(home: Path, customers: int, days: int) -> None:
    """Simulate, run gold and labels, train a champion: what the API needs, nothing more."""
    import dagster as dg

    from churn_assets.automation import LABELS_JOB, TRAINING_JOB
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.lab.runner import run_once, run_range
    from churn_assets.settings import Paths, load_settings
    from churn_assets.simulator import SimConfig, simulate

    paths = Paths(home)
    home.mkdir(parents=True, exist_ok=True)
    paths.settings_file.write_text(WORLD_SETTINGS)
    simulate(paths, SimConfig(customers=customers, days=days, start=WORLD_START, seed=7))
    last = WORLD_START + timedelta(days=days - 1)
    settings = load_settings(paths)
    defs = build_definitions(paths, settings)
    with dg.instance_for_test() as instance:
        run_range(defs, daily_partitions(settings), WORLD_START, last, instance)
        run_range(defs, daily_partitions(settings), WORLD_START, last - timedelta(days=10),
                  instance, job_name=LABELS_JOB)
        run_once(defs, TRAINING_JOB, instance)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(host: str, port: int, ids: list[str], rate: float, seconds: float,
                connections: int = 32) -> dict:
    """Open loop: request ``i`` is due at ``start + i / rate`` whatever happened before; a pool
    of keep-alive connections takes due requests in order. A request that waits for a free
    connection waits on the clock too. A few lines of HTTP/1.1 over asyncio streams, because a
    full client library costs more CPU per request than the server on a shared 2-core box."""
    total = int(rate * seconds)
    latencies = np.full(total, np.nan)
    errors: list[str] = []
    due: asyncio.Queue = asyncio.Queue()
    auth = f"Authorization: Bearer {KEY}\r\n"

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await due.get()) is not None:
                i, customer, scheduled = item
                try:
                    writer.write(f"GET /v1/customers/{customer}/risk HTTP/1.1\r\nHost: {host}"
                                 f"\r\n{auth}\r\n".encode())
                    await writer.drain()
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                    await reader.readexactly(int(length.group(1)) if length else 0)
                    status = int(head.split(b" ", 2)[1])
                    if status != 200:
                        errors.append(str(status))
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(type(exc).__name__)
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                latencies[i] = time.perf_counter() - scheduled
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    start = time.perf_counter()
    for i in range(total):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        due.put_nowait((i, random.choice(ids), scheduled))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    ms = latencies * 1000
    return {"requests": total, "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "achieved_rate": total / elapsed, "p50_ms": float(np.nanpercentile(ms, 50)),
            "p90_ms": float(np.nanpercentile(ms, 90)), "p99_ms": float(np.nanpercentile(ms, 99)),
            "max_ms": float(np.nanmax(ms))}


def api_load(home: Path, rate: float, seconds: float) -> dict:
    """Serve ``home`` in a child process and load it; the server is always stopped."""
    import httpx

    port = _free_port()
    env = {**os.environ, "CHURN_HOME": str(home), "CHURN_API_KEY": KEY, "CHURN_ENV": "local"}
    server = subprocess.Popen(
        [sys.executable, "-m", "churn_assets.cli", "serve", "--port", str(port),
         "--reload-seconds", "3600"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"churn-assets serve exited with {server.returncode}")
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not become ready in 180 s")
            time.sleep(0.5)
        ids = _customer_ids(home)
        for customer in ids[:20]:  # warm up the process (imports, first responses)
            httpx.get(f"{base}/v1/customers/{customer}/risk",
                      headers={"Authorization": f"Bearer {KEY}"})
        result = asyncio.run(_load("127.0.0.1", port, ids, rate, seconds))
        result["customers"] = len(ids)
        result.update(ready.json())
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _customer_ids(home: Path) -> list[str]:
    features = pl.scan_delta(str(home / "lake" / "gold" / "customer_features"))
    last = features.select(pl.col("snapshot_date").max()).collect().item()
    return features.filter(pl.col("snapshot_date") == last).select("customer_id").collect()[
        "customer_id"].to_list()


def distinct_rows(history: pl.DataFrame, rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` scoring rows: every at-risk gold row of the world's history (all days, so the
    same customer at different ages), then copies of them whose numeric features are each
    scaled by a random factor in [0.8, 1.25] (counts rounded back to whole numbers), under
    fresh ids, all on the last day. Copies of one day's rows would flatter anything that reuses
    work between equal rows (such as the SHAP drivers' grouping by the way through each tree);
    only a row whose numbers are all missing, zero or small counts can repeat here."""
    rng = np.random.default_rng(seed)
    last = history["snapshot_date"].max()
    numeric = [c for c, t in history.schema.items()
               if t.is_numeric() and c not in ("snapshot_date",)]
    copies = [history]
    while sum(c.height for c in copies) < rows:
        factors = {c: rng.uniform(0.8, 1.25, history.height) for c in numeric}
        copies.append(history.with_columns(
            (pl.col(c) * pl.Series(factors[c])).cast(history.schema[c]).alias(c)
            if history.schema[c].is_float() else
            (pl.col(c) * pl.Series(factors[c])).round().cast(history.schema[c]).alias(c)
            for c in numeric))
    return pl.concat(copies).head(rows).with_columns(
        customer_id=pl.format("B{}", pl.int_range(pl.len())), snapshot_date=pl.lit(last))


def batch_throughput(home: Path, rows: int) -> dict:
    """Rows per second of ``score_day`` (the ``scores/daily`` path) on ``rows`` distinct
    rows (``distinct_rows``)."""
    from churn_assets.assets.scores import load_cltv, score_day
    from churn_assets.ml.dataset import only_at_risk
    from churn_assets.resources import build_resources
    from churn_assets.settings import Paths, load_settings

    paths = Paths(home)
    settings = load_settings(paths)
    resources = build_resources("local", paths, settings)
    store, mlflow = resources["store"], resources["mlflow"]
    model, version = mlflow.load_champion(), mlflow.champion_version()
    history = only_at_risk(pl.read_delta(store.location("gold.customer_features")),
                           settings.labels.horizon_days)
    big = distinct_rows(history, rows)
    cltv = load_cltv(store)
    started = time.perf_counter()
    scored = score_day(big, model, version, cltv, settings)
    seconds = time.perf_counter() - started
    assert scored.height == rows and scored["churn_probability"].null_count() == 0
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds,
            "features": len(model.metadata.get_input_schema().inputs),
            "seed_rows": history.height}


def serving_section(home: Path, customers: int, days: int, rate: float, seconds: float,
                    batch_rows: int) -> list[str]:
    if (home / "mlflow" / "mlflow.db").exists():
        print(f"serving: reusing the world in {home} (--home)", flush=True)
    else:
        print(f"serving: simulating and training on {customers:,} customers x {days} days …",
              flush=True)
        started = time.perf_counter()
        build_world(home, customers, days)
        print(f"  world ready in {time.perf_counter() - started:.0f}s", flush=True)
    load_before = os.getloadavg()
    print(f"serving: {rate:g} requests/s for {seconds:g}s on loopback …", flush=True)
    api = api_load(home, rate, seconds)
    print(f"  p50 {api['p50_ms']:.1f} ms, p99 {api['p99_ms']:.1f} ms, errors {api['errors']}",
          flush=True)
    print(f"serving: batch scoring {batch_rows:,} rows …", flush=True)
    batch = batch_throughput(home, batch_rows)
    print(f"  {batch['rows_per_second']:,.0f} rows/s", flush=True)
    goal = "met" if api["p99_ms"] <= 25 and api["errors"] == 0 else "NOT met"
    return [
        f"### Scoring API and batch scoring ({customers:,} customers x {days} days world)",
        "",
        f"`churn-assets serve` in its own process (1 uvicorn worker) on 127.0.0.1; an open-loop "
        f"generator (asyncio, 32 keep-alive connections, in the benchmark process) sends `GET "
        f"/v1/customers/{{id}}/risk` for random customers among {api['customers']:,} at "
        f"{rate:g} requests/s for {seconds:g} s; latency from each request's scheduled time.",
        "",
        "| requests | achieved req/s | errors | p50 ms | p90 ms | p99 ms | max ms | goal (p99 <= 25 ms, 0 errors) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {api['requests']:,} | {api['achieved_rate']:.1f} | {api['errors']} | "
        f"{api['p50_ms']:.1f} | {api['p90_ms']:.1f} | {api['p99_ms']:.1f} | "
        f"{api['max_ms']:.1f} | {goal} |",
        "",
        "| batch scoring (`score_day`: probability, SHAP drivers, CLTV) of distinct rows "
        "(`distinct_rows`) | rows | seconds | rows/s |",
        "| --- | ---: | ---: | ---: |",
        f"| champion v{api.get('model_version', '?')}, {batch['features']} model inputs, from "
        f"{batch['seed_rows']:,} at-risk gold rows | "
        f"{batch['rows']:,} | {batch['seconds']:.1f} | {batch['rows_per_second']:,.0f} |",
        "",
        f"Load average before the API run: {', '.join(f'{v:.1f}' for v in load_before)} "
        f"(2 cores, shared with other work).",
    ]
