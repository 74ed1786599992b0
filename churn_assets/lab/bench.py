"""``make bench``: throughput and peak memory of the simulator, bronze ingest and gold features.

Each phase runs in its own process so that its peak RSS is its own. Results are appended to
``BENCHMARKS.md`` (and printed). Not a test: numbers depend on the machine.

    python -m churn_assets.lab.bench [--only transactions|gold|engines|training|serving|upkeep]
                                     [--customers N]
                                     [--days N] [--gold-customers N] [--gold-days N]
                                     [--training-rows N,N,...] [--home DIR] [--keep]

Two worlds:

- *transactions*: the simulator and bronze ingest at ~10M payments rows.
- *gold*: a year of history (default 100,000 customers x 365 days, plus a few days of late drops),
  taken through bronze and silver, then a full single-run rebuild of the gold features and the
  daily increment (one day's ``gold_customer_features``, from the day before's stored state) at
  day 30 and at day 365. The increment should cost the same at both: it must not grow with the
  history.
- *training*: real at-risk gold rows and labels of a small world, replicated with fresh customer
  ids to each ``--training-rows`` size, then ``train_churn_model`` as the churn model asset calls
  it: how many rows the driver's memory holds.
- *serving*: the scoring API under 200 requests/s for 30 s on loopback, and the champion's batch
  scoring of 1M rows (``churn_assets/lab/serve_bench.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from churn_assets.settings import DOMAINS, Paths, Settings

RESULTS = Path("BENCHMARKS.md")
TRANSACTIONS_START = date(2026, 1, 1)
# The gold world leaves events out: at 100k customers x 365 days they are ~70M rows, too many to
# ingest in a benchmark here; features from events (sessions) are then null.
GOLD_DOMAINS = ("customers", "payments", "tickets", "marketing")
# Simulated days after the rebuilt range, so the last rebuilt day has its late rows.
GOLD_EXTRA_DAYS = 3
# One Dagster run over any range the benchmark asks for (assets still commit in 31-day chunks).
SINGLE_RUN = 100_000


def _keys(*names: str):
    import dagster as dg

    return [dg.AssetKey(name.split("/")) for name in names]


def bronze_keys():
    return _keys(*(f"bronze/{n}" for d in DOMAINS for n in (d, f"{d}_quarantine")))


def silver_keys():
    return _keys(*(f"silver/{n}" for d in DOMAINS for n in (d, f"{d}_exceptions")))


ACTIVITY_KEYS = ("gold/daily_activity", "gold/order_categories")
FEATURES_KEYS = ("gold/customer_state", "gold/customer_categories", "gold/customer_features")


def _phase_simulate(home: Path, customers: int, days: int, domains: str, start: str) -> dict:
    from churn_assets.settings import Paths
    from churn_assets.simulator import SimConfig, simulate

    config = SimConfig(customers=customers, days=days, seed=1, domains=tuple(domains.split(",")),
                       start=date.fromisoformat(start))
    began = time.perf_counter()
    summary = simulate(Paths(home), config)
    seconds = time.perf_counter() - began
    rows = {d: n for d, n in summary.rows.items() if d in config.domains}
    return {"seconds": seconds, "rows": rows, "total_rows": sum(rows.values())}


def _run_layer(home: Path, layer: str, selection, days_per_run: int) -> dict:
    """Materialize ``selection`` over every day that has a drop; rows of the layer's tables."""
    import dagster as dg

    from churn_assets import catalog
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.lab.runner import landing_range, run_range
    from churn_assets.settings import Paths, load_settings

    paths = Paths(home)
    defs = build_definitions(paths)
    first, last = landing_range(paths)
    began = time.perf_counter()
    with dg.instance_for_test() as instance:
        chunks = run_range(defs, daily_partitions(load_settings(paths)), first, last, instance,
                           days_per_run=days_per_run, selection=selection)
    seconds = time.perf_counter() - began
    store = defs.resources["store"]
    tables = sorted((t for t in catalog.TABLES if t.layer == layer), key=lambda t: t.name)
    rows = {t.name: store.count_rows(t.full_name) for t in tables if store.exists(t.full_name)}
    failed = [check for chunk in chunks for check in chunk.failed_checks]
    return {"seconds": seconds, "rows": rows, "total_rows": sum(rows.values()),
            "first": first.isoformat(), "last": last.isoformat(), "runs": len(chunks),
            "failed_checks": failed}


def _phase_bronze(home: Path) -> dict:
    return _run_layer(home, "bronze", bronze_keys(), days_per_run=31)


def _phase_silver(home: Path) -> dict:
    return _run_layer(home, "silver", silver_keys(), days_per_run=SINGLE_RUN)


def _step_seconds(instance, run_id: str) -> float:
    """Time inside the run's steps (STEP_START to STEP_SUCCESS/FAILURE), from its event log."""
    import dagster as dg

    ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    started, total = {}, 0.0
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in ends and event.step_key in started:
            total += entry.timestamp - started.pop(event.step_key)
    return total


def _gold_runner(home: Path):
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.lab.runner import landing_range, run_range
    from churn_assets.settings import Paths, load_settings

    paths = Paths(home)
    defs = build_definitions(paths)
    partitions = daily_partitions(load_settings(paths))
    first = landing_range(paths)[0]

    def run(start: date, end: date, keys: tuple[str, ...], instance) -> dict:
        began = time.perf_counter()
        [chunk] = run_range(defs, partitions, start, end, instance, days_per_run=SINGLE_RUN,
                            selection=_keys(*keys))
        return {"seconds": time.perf_counter() - began, "run_seconds": chunk.seconds,
                "step_seconds": _step_seconds(instance, chunk.run_id), "rows": chunk.rows,
                "failed_checks": chunk.failed_checks}

    return first, run


def _phase_gold(home: Path, days: int) -> dict:
    """The full rebuild: activity, then features (state, categories, features) over ``days``."""
    import dagster as dg

    first, run = _gold_runner(home)
    last = first + timedelta(days=days - 1)
    with dg.instance_for_test() as instance:
        activity = run(first, last, ACTIVITY_KEYS, instance)
        features = run(first, last, FEATURES_KEYS, instance)
    return {"first": first.isoformat(), "last": last.isoformat(), "activity": activity,
            "features": features, "seconds": activity["seconds"] + features["seconds"]}


def _phase_gold_increment(home: Path, day_numbers: str, repeats: int) -> dict:
    """One day's ``gold_customer_features`` (its day before's state is stored), ``repeats`` times
    for each day number (1 = the first simulated day), interleaved."""
    import dagster as dg

    first, run = _gold_runner(home)
    numbers = [int(n) for n in day_numbers.split(",")]
    samples: dict[int, list[dict]] = {n: [] for n in numbers}
    with dg.instance_for_test() as instance:
        for _ in range(repeats):
            for n in numbers:
                day = first + timedelta(days=n - 1)
                samples[n].append(run(day, day, FEATURES_KEYS, instance))
    out = {}
    for n, runs in samples.items():
        out[str(n)] = {
            "day": (first + timedelta(days=n - 1)).isoformat(),
            "seconds": [r["seconds"] for r in runs],
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_step_seconds": statistics.median(r["step_seconds"] for r in runs),
            "median_overhead_seconds": statistics.median(
                r["seconds"] - r["step_seconds"] for r in runs),
            "rows": runs[-1]["rows"],
        }
    return {"days": out}


ENGINE_LAYERS = ("bronze", "silver", "gold", "labels", "training", "scores", "decisions",
                 "outcomes")
# The engines' world trains on a short label horizon, so a few weeks of history are enough.
ENGINE_SETTINGS = {"horizon": 7, "training_days": 20, "validation_days": 5, "scored_days": 7,
                   "outcome_days": 3}


def _engine_settings_toml() -> str:
    e = ENGINE_SETTINGS
    return (f"[labels]\nhorizon_days = {e['horizon']}\n"
            f"[model]\ntraining_days = {e['training_days']}\n"
            f"validation_days = {e['validation_days']}\nauc_floor = 0.0\n"
            f"[scoring]\noutcome_window_days = {e['outcome_days']}\n")


def _phase_engine(home: Path, env: str) -> dict:
    """Every layer over the landed days on one engine (CHURN_ENV): the daily data, labels,
    training, then scores, decisions and outcomes for the last days."""
    import dagster as dg

    from churn_assets import catalog
    from churn_assets.automation import (
        DAILY_JOB,
        LABELS_JOB,
        OUTCOMES_JOB,
        SCORING_JOB,
        TRAINING_JOB,
    )
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.lab.runner import landing_range, run_once, run_range
    from churn_assets.settings import Paths, load_settings

    paths = Paths(home)
    defs = build_definitions(paths, env=env)
    partitions = daily_partitions(load_settings(paths))
    first, last = landing_range(paths)
    e = ENGINE_SETTINGS
    scored = last - timedelta(days=e["scored_days"] - 1)
    daily = {"bronze": bronze_keys(), "silver": silver_keys(),
             "gold": _keys(*ACTIVITY_KEYS, *FEATURES_KEYS)}
    ranged = {
        "labels": (LABELS_JOB, first, last - timedelta(days=e["horizon"]), None),
        "scores": (SCORING_JOB, scored, last, [catalog.SCORES.key]),
        "decisions": (SCORING_JOB, scored, last, [catalog.ACTIONS.key, catalog.WHALES.key]),
        "outcomes": (OUTCOMES_JOB, scored, last - timedelta(days=e["outcome_days"]), None),
    }
    seconds = {}
    with dg.instance_for_test() as instance:
        for layer in ENGINE_LAYERS:
            began = time.perf_counter()
            if layer in daily:
                run_range(defs, partitions, first, last, instance, days_per_run=SINGLE_RUN,
                          job_name=DAILY_JOB, selection=daily[layer])
            elif layer == "training":
                run_once(defs, TRAINING_JOB, instance)
            else:
                job, start, end, selection = ranged[layer]
                run_range(defs, partitions, start, end, instance, days_per_run=SINGLE_RUN,
                          job_name=job, selection=selection)
            seconds[layer] = time.perf_counter() - began
    return {"seconds": seconds, "days": (last - first).days + 1}


# The training benchmark's seed: a small world with a short label horizon, so its labelled days
# hold a training period, a label horizon and a validation period (like the model tests' world).
TRAINING_SEED = {"customers": 2_000, "days": 60, "horizon": 10}


def _phase_training_seed(home: Path) -> dict:
    """The daily graph and labels over the landed days, then the rows the churn model asset
    collects (at-risk features of the labelled days, and their labels) to ``seed/``."""
    import dagster as dg

    from churn_assets import catalog
    from churn_assets.automation import LABELS_JOB
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.lab.runner import landing_range, run_range
    from churn_assets.ml.dataset import only_at_risk
    from churn_assets.settings import Paths, load_settings
    from churn_assets.steps.reads import read_table

    paths = Paths(home)
    settings = load_settings(paths)
    horizon = settings.labels.horizon_days
    defs = build_definitions(paths)
    partitions = daily_partitions(settings)
    first, last = landing_range(paths)
    began = time.perf_counter()
    with dg.instance_for_test() as instance:
        run_range(defs, partitions, first, last, instance, days_per_run=SINGLE_RUN)
        run_range(defs, partitions, first, last - timedelta(days=horizon), instance,
                  days_per_run=SINGLE_RUN, job_name=LABELS_JOB)
    seconds = time.perf_counter() - began
    store = defs.resources["store"]
    labels = read_table(store, catalog.CHURN_LABELS.full_name)
    features = read_table(store, catalog.CUSTOMER_FEATURES.full_name).filter(
        pl.col("snapshot_date") <= labels["snapshot_date"].max())
    features = only_at_risk(features, horizon)
    (home / "seed").mkdir(exist_ok=True)
    features.write_parquet(home / "seed" / "features.parquet")
    labels.write_parquet(home / "seed" / "labels.parquet")
    labelled = features.join(labels, on=["snapshot_date", "customer_id"], how="semi")
    return {"seconds": seconds, "features": features.height, "labels": labels.height,
            "labelled_rows": labelled.height, "days": labelled["snapshot_date"].n_unique(),
            "customers": labelled["customer_id"].n_unique()}


def _copy_ids(customers: pl.Series, copies: int) -> pl.DataFrame:
    """``customer_id`` -> ``copy_id`` for every copy: the id suffixed with the copy number, plus
    ``x``s until it falls on its original's side of the calibration hold-out (a hash of the id,
    ``dataset._customer_share``). Otherwise calibration would hold copies of training customers,
    early stopping would never stop (the cap of 2,000 trees) and SHAP on those trees would take
    most of the time: copies must stand for other people, not the same people twice."""
    from churn_assets.ml.churn_model import ChurnTrainingConfig
    from churn_assets.ml.dataset import _customer_share

    config = ChurnTrainingConfig()
    ids = np.asarray(customers.to_list(), dtype=object)

    def side(names: np.ndarray) -> np.ndarray:
        return _customer_share(names.astype(str), config.calibration_share, config.seed)

    held_out, out = side(ids), []
    for copy in range(copies):
        names = np.array([f"{c}-{copy}" for c in ids], dtype=object)
        while (wrong := side(names) != held_out).any():
            names[wrong] = names[wrong] + "x"
        out.append(pl.DataFrame({"customer_id": ids.tolist(), "copy_id": names.tolist()}))
    return pl.concat(out)


def _write_training_rows(home: Path, rows: int) -> Path:
    """``rows`` labelled at-risk feature rows: copies of the seed's with new customer ids (dates
    and labels kept), each copy carrying every seed label, as the asset reads labels for all
    customers of the window. Streamed to Parquet: the parent never holds the frame."""
    seed = home / "seed"
    labels = pl.scan_parquet(seed / "labels.parquet")
    features = pl.scan_parquet(seed / "features.parquet").join(
        labels, on=["snapshot_date", "customer_id"], how="semi")
    copies = -(-rows // features.select(pl.len()).collect().item())
    ids = _copy_ids(labels.select(pl.col("customer_id").unique().sort()).collect().to_series(),
                    copies).lazy()

    def replicate(frame: pl.LazyFrame) -> pl.LazyFrame:
        # maintain_order: copy after copy, so ``head`` keeps whole copies (and their customers).
        return frame.join(ids, on="customer_id", maintain_order="right").with_columns(
            customer_id="copy_id").drop("copy_id")

    out = home / "training" / str(rows)
    out.mkdir(parents=True, exist_ok=True)
    replicate(features).head(rows).sink_parquet(out / "features.parquet")
    replicate(labels).sink_parquet(out / "labels.parquet")
    return out


def _rss_mb() -> int:
    """Current (not peak) resident memory of this process."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return round(int(line.split()[1]) / 1024)


def _phase_training(home: Path, data: Path) -> dict:
    """``train_churn_model`` on ``data``'s rows, configured as the churn model asset does."""
    from churn_assets.ml.churn_model import ChurnTrainingConfig, train_churn_model
    from churn_assets.settings import Paths, load_settings

    settings = load_settings(Paths(home))
    features = pl.read_parquet(data / "features.parquet")
    labels = pl.read_parquet(data / "labels.parquet")
    loaded_mb = _rss_mb()
    config = ChurnTrainingConfig.from_settings(settings.model, settings.labels.horizon_days)
    began = time.perf_counter()
    result = train_churn_model(features, labels, config)
    seconds = time.perf_counter() - began
    split = result.split
    return {"seconds": seconds, "rows": features.height, "loaded_rss_mb": loaded_mb,
            "frame_mb": round(features.estimated_size("mb") + labels.estimated_size("mb")),
            "features": len(result.model.spec.columns), "train_rows": int(split.train.size),
            "calibration_rows": int(split.calibration.size),
            "validation_rows": int(split.validation.size),
            "best_iteration": result.best_iteration,
            "roc_auc": float(result.metrics["model"]["roc_auc"])}


def _run_phase(args: list[str]) -> dict:
    """Run one phase in a child process, so each phase's peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, "-m", "churn_assets.lab.bench", "--phase", *args],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _dispatch(phase: list[str]) -> dict:
    name, home, *rest = phase
    home = Path(home)
    if name == "simulate":
        return _phase_simulate(home, int(rest[0]), int(rest[1]), rest[2], rest[3])
    if name == "bronze":
        return _phase_bronze(home)
    if name == "silver":
        return _phase_silver(home)
    if name == "gold":
        return _phase_gold(home, int(rest[0]))
    if name == "engine":
        return _phase_engine(home, rest[0])
    if name == "gold-increment":
        return _phase_gold_increment(home, rest[0], int(rest[1]))
    if name == "training-seed":
        return _phase_training_seed(home)
    if name == "training":
        return _phase_training(home, Path(rest[0]))
    raise SystemExit(f"unknown phase {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_assets.lab.bench")
    parser.add_argument("--only", choices=("transactions", "gold", "engines", "training",
                                           "serving", "upkeep", "run"),
                        help="run only the simulator/bronze benchmark, the gold one, the "
                        "local-vs-spark one, the churn model training one, the scoring API one, "
                        "the Delta upkeep one, or `churn-assets run` end to end")
    parser.add_argument("--engine-customers", type=int, default=300,
                        help="customers of the world run on both engines")
    parser.add_argument("--engine-days", type=int, default=40,
                        help="days of the world run on both engines")
    parser.add_argument("--customers", type=int, default=1_100_000,
                        help="customers of the transactions world (default: ~10M payments)")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--all-domains-customers", type=int, default=60_000,
                        help="customers of the smaller world that writes all five domains")
    parser.add_argument("--gold-customers", type=int, default=100_000,
                        help="customers of the gold world")
    parser.add_argument("--gold-days", type=int, default=365,
                        help=f"days of gold history rebuilt (the world has {GOLD_EXTRA_DAYS} more)")
    parser.add_argument("--gold-domains", default=",".join(GOLD_DOMAINS),
                        help="domains the gold world writes (default: all but events)")
    parser.add_argument("--increment-days", default="30,365",
                        help="day numbers whose daily increment is timed (1 = first day)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per increment day")
    parser.add_argument("--training-rows", default="250000,1000000,4000000",
                        help="training set sizes (labelled at-risk rows) the model trains on")
    parser.add_argument("--serving-customers", type=int, default=5000,
                        help="customers of the world the scoring API serves")
    parser.add_argument("--serving-rate", type=float, default=200, help="API requests/s")
    parser.add_argument("--serving-seconds", type=float, default=30, help="API load duration")
    parser.add_argument("--batch-rows", type=int, default=1_000_000,
                        help="rows the champion scores in one batch")
    parser.add_argument("--upkeep-days", type=int, default=365,
                        help="daily commits of the Delta upkeep benchmark")
    parser.add_argument("--upkeep-customers", type=int, default=100_000,
                        help="rows per daily commit of the Delta upkeep benchmark")
    parser.add_argument("--run-customers", default="10000",
                        help="customers of the worlds `churn-assets run` is timed on (a comma "
                        "list, e.g. 10000,30000,100000 for the curve)")
    parser.add_argument("--run-days", type=int, default=365, help="days of those worlds")
    parser.add_argument("--run-increments", default="30,365",
                        help="day numbers whose whole daily increment (churn_daily + "
                        "churn_scoring) is timed after the run ('' for none)")
    parser.add_argument("--world-cache", type=Path,
                        default=Path.home() / ".cache" / "churn-assets" / "worlds",
                        help="where simulated worlds are kept between benchmarks")
    parser.add_argument("--home", type=Path, help="data root to use (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data root afterwards")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        result = _dispatch(args.phase)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return 0

    home = args.home or Path(tempfile.mkdtemp(prefix="churn-bench-"))
    sections = []
    try:
        if args.only in (None, "transactions"):
            sections.append(_transactions(args, home / "transactions"))
        if args.only in (None, "gold"):
            sections.append(_gold(args, home / "gold"))
        if args.only in (None, "engines"):
            sections.append(_engines(args, home / "engines"))
        if args.only in (None, "training"):
            sections.append(_training(args, home / "training"))
        if args.only in (None, "serving"):
            from churn_assets.lab.serve_bench import serving_section

            sections.append(serving_section(home / "serving", args.serving_customers, 45,
                                            args.serving_rate, args.serving_seconds,
                                            args.batch_rows))
        if args.only in (None, "upkeep"):
            from churn_assets.lab.upkeep_bench import upkeep_section

            sections.append(upkeep_section(home / "upkeep", args.upkeep_days,
                                           args.upkeep_customers))
        if args.only in (None, "run"):
            from churn_assets.lab.run_bench import run_section

            counts = [int(c) for c in args.run_customers.split(",")]
            increments = [int(n) for n in args.run_increments.split(",") if n]
            sections.append(run_section(home / "run", args.world_cache, counts, args.run_days,
                                        date(2025, 1, 1), seed=11, increments=increments,
                                        repeats=args.repeats))
    finally:
        if not args.keep and not args.home:
            shutil.rmtree(home, ignore_errors=True)

    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()}, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "",
        f"`{' '.join(['python -m churn_assets.lab.bench', *(sys.argv[1:] if argv is None else argv)])}`",
        "",
    ]
    for section in sections:
        lines += [*section, ""]
    text = "\n".join(lines)
    print("\n" + text)
    header = "# Benchmarks\n\nWritten by `make bench`; newest first.\n\n"
    old = RESULTS.read_text().removeprefix(header) if RESULTS.exists() else ""
    RESULTS.write_text(header + text + "\n" + old)
    print(f"results written to {RESULTS}")
    return 0


def _transactions(args, home: Path) -> list[str]:
    everything = home / "all_domains"
    print(f"simulating {args.customers:,} customers x {args.days} days, writing customers and "
          f"payments, into {home} …", flush=True)
    sim = _run_phase(["simulate", str(home), str(args.customers), str(args.days),
                      "customers,payments", TRANSACTIONS_START.isoformat()])
    print(f"  {sim['total_rows']:,} rows in {sim['seconds']:.1f}s", flush=True)
    print("ingesting every drop into bronze (bronze assets only) …", flush=True)
    bronze = _run_phase(["bronze", str(home)])
    print(f"  {bronze['total_rows']:,} rows in {bronze['seconds']:.1f}s", flush=True)
    print(f"simulating {args.all_domains_customers:,} customers x {args.days} days, all five "
          "domains …", flush=True)
    full = _run_phase(["simulate", str(everything), str(args.all_domains_customers),
                       str(args.days), ",".join(DOMAINS), TRANSACTIONS_START.isoformat()])
    print(f"  {full['total_rows']:,} rows in {full['seconds']:.1f}s", flush=True)

    payments = sim["rows"].get("payments", 0)
    return [
        f"### Simulator and bronze ingest ({args.customers:,} customers x {args.days} days; "
        f"all-domain world {args.all_domains_customers:,} customers)",
        "",
        "| phase | rows | payments rows | seconds | rows/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _row("simulate, writing customers + payments", sim, payments),
        _row("bronze ingest of that world (Delta)", bronze, bronze["rows"].get("payments", 0)),
        _row(f"simulate {args.all_domains_customers:,} customers, all five domains", full,
             full["rows"].get("payments", 0)),
        "",
        "The simulator always generates every domain (payments depend on sessions); the first "
        "row counts only what it wrote.  ",
        f"simulated rows per domain: {json.dumps(sim['rows'])}  ",
        f"bronze rows per table: {json.dumps(bronze['rows'])}  ",
        f"all-domain world rows: {json.dumps(full['rows'])}",
    ]


def _gold_start(days: int) -> date:
    """The latest 1 January from which the whole world (and its late drops) lies in the past:
    daily partitions end tomorrow, so a world that ends later cannot be ingested."""
    today = datetime.now(UTC).date()
    year = today.year
    while date(year, 1, 1) + timedelta(days=days + 7) > today:
        year -= 1
    return date(year, 1, 1)


def _gold(args, home: Path) -> list[str]:
    days = args.gold_days + GOLD_EXTRA_DAYS
    start = _gold_start(days)
    domains = args.gold_domains
    numbers = [int(n) for n in args.increment_days.split(",")]
    if not all(1 < n <= args.gold_days for n in numbers):
        raise SystemExit(f"--increment-days must lie in 2..{args.gold_days}")
    print(f"gold: simulating {args.gold_customers:,} customers x {days} days from {start}, "
          f"writing {domains}, into {home} …", flush=True)
    sim = _run_phase(["simulate", str(home), str(args.gold_customers), str(days), domains,
                      start.isoformat()])
    print(f"  {sim['total_rows']:,} rows in {sim['seconds']:.1f}s", flush=True)
    print("gold: bronze (all drops) …", flush=True)
    bronze = _run_phase(["bronze", str(home)])
    print(f"  {bronze['total_rows']:,} rows in {bronze['seconds']:.1f}s", flush=True)
    print("gold: silver (one run over all days) …", flush=True)
    silver = _run_phase(["silver", str(home)])
    print(f"  {silver['total_rows']:,} rows in {silver['seconds']:.1f}s", flush=True)
    # The increments rerun old days from their stored day before: keep every state day.
    from churn_assets.lab.run_bench import KEEP_EVERY_STATE_DAY

    with Paths(home).settings_file.open("a") as settings:
        settings.write("\n" + KEEP_EVERY_STATE_DAY)
    print(f"gold: full rebuild of {args.gold_days} days (activity, then features) …", flush=True)
    gold = _run_phase(["gold", str(home), str(args.gold_days)])
    activity, features = gold["activity"], gold["features"]
    print(f"  activity {activity['seconds']:.1f}s, features {features['seconds']:.1f}s",
          flush=True)
    print(f"gold: daily increment at days {args.increment_days}, {args.repeats} times each …",
          flush=True)
    increment = _run_phase(["gold-increment", str(home), args.increment_days,
                            str(args.repeats)])
    inc = increment["days"]
    for n in numbers:
        print(f"  day {n}: median {inc[str(n)]['median_seconds']:.2f}s "
              f"(samples {', '.join(f'{s:.2f}' for s in inc[str(n)]['seconds'])})", flush=True)

    frows = features["rows"]
    lo, hi = inc[str(numbers[0])], inc[str(numbers[-1])]
    ratio = hi["median_seconds"] / lo["median_seconds"]
    per_day = features["seconds"] / args.gold_days
    lines = [
        f"### Gold features ({args.gold_customers:,} customers, {args.gold_days} days rebuilt "
        f"of a {days}-day world from {start}; domains {domains})",
        "",
        "| phase | rows | seconds | rows/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
        _row(f"simulate, writing {domains}", sim),
        _row(f"bronze ingest, {bronze['runs']} runs of 31 days", bronze),
        _row("silver, one run over all days (with its checks)", silver),
        _row(f"gold activity + order categories, one run over {args.gold_days} days",
             {**activity, "total_rows": sum(activity["rows"].values()),
              "peak_rss_mb": gold["peak_rss_mb"]}),
        _row(f"gold_customer_features (state, categories, features), one run over "
             f"{args.gold_days} days", {**features, "total_rows": sum(frows.values()),
                                       "peak_rss_mb": gold["peak_rss_mb"]}),
    ]
    for n in numbers:
        day = inc[str(n)]
        lines.append(_row(f"daily increment, day {n} ({day['day']}), median of {args.repeats}",
                          {"seconds": day["median_seconds"],
                           "total_rows": sum(day["rows"].values()),
                           "peak_rss_mb": increment["peak_rss_mb"]}))
    lines += [
        "",
        f"Increment day {numbers[-1]} / day {numbers[0]}: **{ratio:.2f}** (median "
        f"{hi['median_seconds']:.2f}s / {lo['median_seconds']:.2f}s; samples "
        + "; ".join(f"day {n}: {', '.join(f'{s:.2f}' for s in inc[str(n)]['seconds'])}"
                    for n in numbers) + ").  ",
        "Inside the step vs Dagster around it (run setup, event log, job subsetting), medians: "
        + "; ".join(f"day {n}: {inc[str(n)]['median_step_seconds']:.2f}s in the step, "
                    f"{inc[str(n)]['median_overhead_seconds']:.2f}s outside" for n in numbers)
        + f". Rebuild: features step {features['step_seconds']:.1f}s of "
        f"{features['seconds']:.1f}s, {per_day:.2f}s per day.  ",
        f"Rebuild rows: features {frows.get('gold/customer_features', 0):,}, state "
        f"{frows.get('gold/customer_state', 0):,}, state categories "
        f"{frows.get('gold/customer_categories', 0):,}; activity "
        f"{activity['rows'].get('gold/daily_activity', 0):,}, order categories "
        f"{activity['rows'].get('gold/order_categories', 0):,}.  ",
        "Rows per increment day: " + "; ".join(
            f"day {n}: {json.dumps(inc[str(n)]['rows'])}" for n in numbers) + "  ",
        "The gold world leaves events out (at this size they are ~70M rows, too slow to ingest "
        "here): session features are null. Each phase's peak RSS is its own process's; the two "
        "rebuild rows share one process, the increments another.  ",
        f"simulated rows per domain: {json.dumps(sim['rows'])}  ",
        f"silver rows per table: {json.dumps(silver['rows'])}",
    ]
    failed = bronze["failed_checks"] + silver["failed_checks"] + activity["failed_checks"] \
        + features["failed_checks"]
    if failed:
        names = sorted({check.split(" (")[0] for check in failed})
        lines += ["", f"Non-blocking checks that warned: {', '.join(names)}"]
    return lines


def _row(name: str, result: dict, payments: int | None = None) -> str:
    rate = result["total_rows"] / result["seconds"] if result["seconds"] else 0
    middle = f"{payments:,} | " if payments is not None else ""
    return (
        f"| {name} | {result['total_rows']:,} | {middle}{result['seconds']:.1f} | "
        f"{rate:,.0f} | {result['peak_rss_mb']:,} |"
    )


def _training(args, home: Path) -> list[str]:
    """The churn model trained on growing copies of a real gold training set."""
    sizes = sorted(int(n) for n in args.training_rows.split(","))
    seed = TRAINING_SEED
    print(f"training: seed world of {seed['customers']:,} customers x {seed['days']} days, "
          f"{seed['horizon']}-day labels, into {home} …", flush=True)
    _run_phase(["simulate", str(home), str(seed["customers"]), str(seed["days"]),
                ",".join(DOMAINS), _gold_start(seed["days"]).isoformat()])
    (home / "settings.toml").write_text(f"[labels]\nhorizon_days = {seed['horizon']}\n")
    built = _run_phase(["training-seed", str(home)])
    print(f"  {built['labelled_rows']:,} labelled at-risk rows ({built['customers']:,} "
          f"customers, {built['days']} days) in {built['seconds']:.1f}s", flush=True)
    runs = []
    for rows in sizes:
        print(f"training: {rows:,} rows …", flush=True)
        data = _write_training_rows(home, rows)
        run = _run_phase(["training", str(home), str(data)])
        shutil.rmtree(data)
        print(f"  {run['seconds']:.1f}s, peak RSS {run['peak_rss_mb']:,} MB (after loading "
              f"{run['loaded_rss_mb']:,} MB), {run['best_iteration']} trees, validation "
              f"ROC-AUC {run['roc_auc']:.3f}", flush=True)
        runs.append(run)

    lines = [
        f"### Churn model training (copies of {built['labelled_rows']:,} real labelled at-risk "
        f"rows: {built['customers']:,} customers x {built['days']} days, "
        f"{seed['horizon']}-day labels)",
        "",
        "| rows | features | seconds | peak RSS MB | RSS after loading MB | MB per million rows |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(f"| {run['rows']:,} | {run['features']} | {run['seconds']:.1f} | "
                     f"{run['peak_rss_mb']:,} | {run['loaded_rss_mb']:,} | "
                     f"{run['peak_rss_mb'] / run['rows'] * 1e6:,.0f} |")
    last, defaults = runs[-1], Settings()
    days = defaults.model.training_days
    trained = days - defaults.model.validation_days - defaults.labels.horizon_days + 1
    lines += [
        "",
        f"Rows are `train_churn_model` input rows (at-risk features with a label); of the "
        f"largest set {last['train_rows']:,} train the booster, {last['calibration_rows']:,} "
        f"calibrate and {last['validation_rows']:,} validate (the rest lie in the label horizon "
        f"before validation). With the default settings ({days} days, "
        f"{defaults.labels.horizon_days}-day labels) only about {trained / days:.0%} of the rows "
        f"train or calibrate and {defaults.model.validation_days / days:.0%} validate, so these "
        f"bytes per row are on the high side. Copies are the seed's rows under new customer ids, "
        f"each on its original's side of the calibration hold-out; trees "
        f"({', '.join(str(r['best_iteration']) for r in runs)}) and seconds follow the seed's "
        f"signal, not that of as many real customers.",
    ]
    if len(runs) > 1:
        slope, intercept = statistics.linear_regression([r["rows"] for r in runs],
                                                        [r["peak_rss_mb"] for r in runs])
        fits = {gib: (gib * 1024 - intercept) / slope for gib in (8, 32)}
        lines[-1] += (
            f"  \nLinear fit of peak RSS: {intercept:,.0f} MB + {slope * 2**20:,.0f} bytes per "
            f"row, so about **{fits[8] / 1e6:,.1f}M rows fit in 8 GiB and {fits[32] / 1e6:,.1f}M "
            f"in 32 GiB** of driver memory (at-risk customers x `[model] training_days`).")
    return lines


def _engines(args, home: Path) -> list[str]:
    """The same world through every layer on CHURN_ENV=local and CHURN_ENV=spark."""
    start = _gold_start(args.engine_days)
    print(f"engines: {args.engine_customers:,} customers x {args.engine_days} days on local and "
          "spark …", flush=True)
    _run_phase(["simulate", str(home / "local"), str(args.engine_customers),
                str(args.engine_days), ",".join(DOMAINS), start.isoformat()])
    (home / "local" / "settings.toml").write_text(_engine_settings_toml())
    shutil.copytree(home / "local", home / "spark")
    local = _run_phase(["engine", str(home / "local"), "local"])
    spark = _run_phase(["engine", str(home / "spark"), "spark"])
    lines = [
        f"### Engines: {args.engine_customers:,} customers, {local['days']} days, all domains "
        "(one single-run backfill per layer)",
        "",
        "| layer | local (Polars/Delta) s | spark (local[2]/Parquet) s | spark / local |",
        "| --- | ---: | ---: | ---: |",
    ]
    for layer in ENGINE_LAYERS:
        a, b = local["seconds"][layer], spark["seconds"][layer]
        lines.append(f"| {layer} | {a:.1f} | {b:.1f} | {b / a:.1f} |")
    total_a, total_b = sum(local["seconds"].values()), sum(spark["seconds"].values())
    lines += [
        f"| total | {total_a:.1f} | {total_b:.1f} | {total_b / total_a:.1f} |",
        "",
        f"Peak RSS: local {local['peak_rss_mb']:,} MB, spark driver process "
        f"{spark['peak_rss_mb']:,} MB (the JVM is a child process, not counted). Spark times "
        "include its session start (~10-20 s) in bronze. Labels cover every day with a closed "
        f"{ENGINE_SETTINGS['horizon']}-day window; training fits LightGBM on the driver on both "
        f"engines; scores, decisions and outcomes cover the last {ENGINE_SETTINGS['scored_days']} "
        "days (scores with mapInArrow on Spark).",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
