"""What a user meets first: `churn-assets run` on a year of history, end to end (landing ->
bronze -> silver -> gold -> labels -> training -> a year of scores, decisions, briefs and
outcomes), timed as one command in its own process, with the time of every Dagster job and
step and the rows each layer wrote.

Worlds are simulated once and cached by the simulator's config and code
(``<cache>/<fingerprint>/landing``); each measured run gets a fresh data root whose landing zone
hard-links the cached files (drops are immutable), and a fresh Dagster home under it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import churn_assets
from churn_assets.lab.runner import code_version, fingerprint
from churn_assets.settings import Paths

LAYERS = ("bronze", "silver", "gold")
# Settings that keep every day's gold state, so that any day can be rerun as an increment.
KEEP_EVERY_STATE_DAY = "[maintenance]\nstate_days = 0\n"


def cached_world(cache: Path, customers: int, days: int, start: date, seed: int) -> tuple[
        Path, float | None]:
    """The landing zone of the simulated world (simulated now when not cached) and the seconds
    simulating took (``None`` when it came from the cache)."""
    from churn_assets.simulator import SimConfig, simulate

    config = SimConfig(customers=customers, days=days, start=start, seed=seed)
    simulator = Path(churn_assets.__file__).parent / "simulator"
    key = fingerprint(json.dumps(dataclasses.asdict(config), default=str, sort_keys=True),
                      code_version(simulator))[:16]
    world = cache / f"{customers}x{days}-{key}"
    if (world / "complete").exists():
        return world / "landing", None
    shutil.rmtree(world, ignore_errors=True)
    began = time.perf_counter()
    simulate(Paths(world), config)
    seconds = time.perf_counter() - began
    (world / "complete").write_text(json.dumps(dataclasses.asdict(config), default=str))
    return world / "landing", seconds


def timed_run(landing: Path, home: Path, keep_state: bool = False) -> dict:
    """`churn-assets run` over ``landing`` in a fresh data root ``home``: wall seconds, the
    child's peak RSS, and seconds per job and per step from its Dagster home. ``keep_state``
    keeps every day's gold state (``[maintenance] state_days = 0``), so that any day can be
    rerun as an increment afterwards."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(landing, home / "landing", copy_function=os.link)
    if keep_state:
        Paths(home).settings_file.write_text(KEEP_EVERY_STATE_DAY)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(CHURN_HOME=str(home), CHURN_ENV="local")
    began = time.perf_counter()
    # From the data root: no dagster.yaml there, so the Dagster home is <home>/dagster.
    done = subprocess.run([sys.executable, "-m", "churn_assets.cli", "run"], cwd=home, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"churn-assets run failed ({done.returncode}):\n{done.stdout[-3000:]}")
    # The largest of the children waited for so far: run_section runs the smallest world first.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    jobs, steps = dagster_times(home / "dagster")
    return {"seconds": seconds, "peak_rss_mb": peak, "jobs": jobs, "steps": steps,
            "rows": layer_rows(Paths(home))}


def timed_increments(home: Path, first: date, numbers: list[int], repeats: int) -> dict:
    """The daily increment of a run's data root: day ``n``'s ``churn_daily`` then its
    ``churn_scoring`` (bronze -> decisions and the brief, what the morning sensor and schedule
    launch for one day), rerun ``repeats`` times for each day number (1 = ``first``),
    interleaved. A rerun of day ``n`` reads what a first run of it reads: only days before it
    (every read is point-in-time), so it costs what day ``n`` cost when it was new."""
    import statistics

    import dagster as dg

    from churn_assets import catalog
    from churn_assets.automation import DAILY_JOB, SCORING_JOB
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.lab.runner import run_range
    from churn_assets.resources.store import DateWindow
    from churn_assets.settings import load_settings

    paths = Paths(home)
    defs = build_definitions(paths)
    partitions = daily_partitions(load_settings(paths))
    days = {n: first + timedelta(days=n - 1) for n in numbers}
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in numbers}
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        # Untimed: the first run in a process also pays for imports and the definitions.
        for job in (DAILY_JOB, SCORING_JOB):
            run_range(defs, partitions, days[numbers[-1]], days[numbers[-1]], instance,
                      days_per_run=1, job_name=job)
        for _ in range(repeats):
            for n, day in days.items():
                sample = {}
                for job in (DAILY_JOB, SCORING_JOB):
                    began = time.perf_counter()
                    run_range(defs, partitions, day, day, instance, days_per_run=1,
                              job_name=job)
                    sample[job] = time.perf_counter() - began
                samples[n].append(sample)
    store = _store(paths)
    return {str(n): {"day": days[n].isoformat(),
                     "customers": store.count_rows(catalog.CUSTOMER_FEATURES.full_name,
                                                   DateWindow.day(days[n]), catalog.SNAPSHOT_DATE),
                     "seconds": [sum(s.values()) for s in runs],
                     "median_seconds": statistics.median(sum(s.values()) for s in runs),
                     **{f"median_{job}": statistics.median(s[job] for s in runs)
                        for job in runs[0]}}
            for n, runs in samples.items()}


def dagster_times(dagster_home: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per job (first to last event of each run, summed) and per step (summed)."""
    import dagster as dg

    jobs: dict[str, float] = defaultdict(float)
    steps: dict[str, float] = defaultdict(float)
    kinds = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.RUN_START,
             dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            records = instance.get_records_for_run(run.run_id, of_type=kinds).records
            stamps = [r.event_log_entry.timestamp for r in records]
            jobs[run.job_name] += max(stamps) - min(stamps) if stamps else 0.0
            for record in records:
                event = record.event_log_entry.dagster_event
                if event and event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                    steps[event.step_key] += event.event_specific_data.duration_ms / 1000
    return dict(jobs), dict(steps)


def layer_rows(paths: Paths) -> dict[str, int]:
    """Rows each layer's tables hold (quarantine and exceptions included: they were written)."""
    from churn_assets import catalog

    store = _store(paths)
    return {layer: sum(store.count_rows(t.full_name) for t in catalog.TABLES
                       if t.layer == layer and store.exists(t.full_name))
            for layer in LAYERS}


def _store(paths: Paths):
    """The local table store of a run's data root."""
    from churn_assets.resources import build_resources
    from churn_assets.settings import load_settings

    return build_resources("local", paths, load_settings(paths))["store"]


def layer_seconds(steps: dict[str, float]) -> dict[str, float]:
    """Step seconds per layer (step keys start with the layer, e.g. ``silver_events``; the
    labels, ``gold__churn_labels``, are gold)."""
    return {layer: sum(s for key, s in steps.items() if key.startswith(f"{layer}_"))
            for layer in LAYERS}


def run_section(home: Path, cache: Path, customers: list[int], days: int, start: date,
                seed: int, increments: list[int] = (), repeats: int = 3) -> list[str]:
    results = []
    for count in sorted(customers):
        landing, simulated = cached_world(cache, count, days, start, seed)
        landed = sum(1 for _ in landing.rglob("*") if _.is_file())
        result = timed_run(landing, home / f"run-{count}", keep_state=bool(increments))
        if increments:
            print(f"run: daily increments of days {increments}, {repeats} times each …",
                  flush=True)
            result["increments"] = timed_increments(home / f"run-{count}", start,
                                                    list(increments), repeats)
        results.append((count, simulated, landed, result))
    lines = [
        f"### `churn-assets run` end to end ({days} days from {start}, seed {seed}, all five "
        "domains)", "",
        "One command in its own process: landing -> bronze -> silver -> gold -> labels -> "
        "training -> scores, decisions and briefs for every day -> outcomes. Step seconds are "
        "Dagster's; rows are what each layer's tables hold afterwards (gold's customer state "
        "and its categories hold only their kept days, `[maintenance] state_days`: "
        + ("every day in this run, for the increments" if increments
           else "the newest 35 by default") + ").", "",
        "| customers | wall s | peak RSS MB | daily job s | labels s | training s | scoring s "
        "| outcomes s | bronze rows/s | silver rows/s | gold rows/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count, _, _, result in results:
        jobs, per_layer = result["jobs"], layer_seconds(result["steps"])
        rates = [f"{result['rows'][layer] / per_layer[layer]:,.0f}" if per_layer[layer] else "–"
                 for layer in LAYERS]
        lines.append(
            f"| {count:,} | {result['seconds']:,.0f} | {result['peak_rss_mb']:,.0f} | "
            + " | ".join(f"{jobs.get(j, 0.0):,.0f}" for j in (
                "churn_daily", "churn_labels", "churn_training", "churn_scoring",
                "churn_outcomes"))
            + f" | {' | '.join(rates)} |")
    lines += ["", "Slowest steps (seconds, summed over the run's Dagster runs):", ""]
    for count, simulated, landed, result in results:
        top = sorted(result["steps"].items(), key=lambda kv: -kv[1])[:8]
        made = (f"simulated in {simulated:,.0f} s" if simulated is not None
                else "world from the cache")
        lines.append(f"- {count:,} customers ({landed:,} landing files, {made}; rows: "
                     + ", ".join(f"{layer} {result['rows'][layer]:,}" for layer in LAYERS)
                     + "): " + ", ".join(f"{key} {s:,.1f}" for key, s in top))
    lines += _increment_lines(results, increments, repeats)
    return lines


def _increment_lines(results, increments, repeats) -> list[str]:
    if not increments:
        return []
    first, last = str(min(increments)), str(max(increments))
    lines = ["", f"Daily increment (one day's `churn_daily` then `churn_scoring`, rerun in the "
             f"run's data root with every state day kept; median of {repeats}):", "",
             "| customers | " + " | ".join(f"day {n} s (known customers)" for n in increments)
             + f" | day {last} / day {first} | per known customer |",
             "| ---: | " + " | ".join("---:" for _ in increments) + " | ---: | ---: |"]
    for count, _, _, result in results:
        inc = result["increments"]
        ratio = inc[last]["median_seconds"] / inc[first]["median_seconds"]
        per_customer = ratio * inc[first]["customers"] / inc[last]["customers"]
        cells = [f"{inc[str(n)]['median_seconds']:.1f} (daily "
                 f"{inc[str(n)]['median_churn_daily']:.1f} + scoring "
                 f"{inc[str(n)]['median_churn_scoring']:.1f}; {inc[str(n)]['customers']:,})"
                 for n in increments]
        lines.append(f"| {count:,} | " + " | ".join(cells)
                     + f" | **{ratio:.2f}** | {per_customer:.2f} |")
    return lines
