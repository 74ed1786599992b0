"""``churn-assets``: simulate a business, import your own exports, run the graph."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from exc


# The default world: this much history up to yesterday, planned this much further, so that
# `simulate --until today` (or `make tick`) extends it day by day without changing its past.
HISTORY_DAYS, LIVE_DAYS = 240, 60


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _until(text: str) -> date:
    if text in ("today", "yesterday"):
        return _yesterday() + timedelta(days=1 if text == "today" else 0)
    return _day(text)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="churn-assets",
        description="Churn retention as a Dagster asset graph. Data lives under $CHURN_HOME "
        "(default ./data).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write a simulated business's daily drops to the landing zone")
    sim.add_argument(
        "--preset", choices=["default", "sparse-retail"], default="default",
        help="default: a dense e-commerce business with all five domains; sparse-retail: "
        "customers and transactions only, a first-quarter cohort buying a few times a year "
        "(calibrated to the CDNOW sample; see the README)",
    )
    sim.add_argument("--customers", type=int,
                     help="customers over the history (default 3000; sparse-retail 23570)")
    # 240 days: a 90-day label horizon leaves enough labelled days to train and validate on.
    sim.add_argument("--days", type=int, help=f"days of history (default {HISTORY_DAYS}, ending "
                     "yesterday unless --start is given, the world planned "
                     f"{LIVE_DAYS} days further for --until; sparse-retail 546)")
    sim.add_argument("--start", type=_day, help="first day (default: the world already in the "
                     "data root, else the history ends yesterday, UTC; sparse-retail 2025-01-01)")
    sim.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    sim.add_argument("--clean", action="store_true", help="no dirt at all (overrides the rates)")
    for knob, text in [
        ("duplicate-rate", "exact duplicate records"),
        ("late-rate", "records delivered 1-3 days late"),
        ("malformed-rate", "unparseable or badly typed records"),
        ("null-rate", "missing values"),
        ("mixed-tz-rate", "timestamps with a non-UTC offset"),
        ("redrop-rate", "days re-dropped later with corrected content"),
    ]:
        sim.add_argument(f"--{knob}", type=_rate, help=f"share of {text}")
    sim.add_argument(
        "--new-column-day", type=float, help="fraction of the history at which new columns appear"
    )
    sim.add_argument(
        "--domains", help="comma-separated domains to write (default: all five)",
    )
    sim.add_argument(
        "--force", action="store_true",
        help="simulate again even if this data root already holds the same world",
    )
    sim.add_argument(
        "--until", type=_until,
        help="stop after this day, a date or 'today' (default: yesterday for the default world, "
        "else the last configured day); a later --until into the same data root only adds the "
        "new days' drops",
    )
    sim.add_argument(
        "--apply-actions", action="store_true",
        help="treat the customers in the pipeline's decisions.actions table (control rows "
        "excluded): a decision of day D is executed on day D+1 and lowers the hazard from D+2 on",
    )

    imp = sub.add_parser("import", help="turn your own export into daily landing drops")
    imp.add_argument("domain", choices=["transactions", "customers"])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--map",
        required=True,
        dest="mapping",
        help="target=SOURCE pairs, e.g. customer_id=CustomerID,timestamp=InvoiceDate,"
        "amount=Quantity*UnitPrice",
    )
    imp.add_argument("--timezone", default="UTC", help="time zone of naive timestamps (default UTC)")
    imp.add_argument("--timestamp-format", help="strftime format of the timestamps, e.g. %%m/%%d/%%Y %%H:%%M")
    imp.add_argument(
        "--as-of", type=_day,
        help="customers only: land every customer in one drop on this day (default: each on "
        "their signup day, or today when signup_at is not mapped)",
    )
    imp.add_argument(
        "--delimiter",
        help="CSV column separator: one character or 'tab' (default: detected from the header "
        "among , ; tab |)",
    )
    imp.add_argument(
        "--keep-duplicates", action="store_true",
        help="import every copy of identical lines (default: once, the copies are reported)",
    )

    run = sub.add_parser("run", help="materialize the whole asset graph for a range of days")
    run.add_argument("--from", dest="first", type=_day, help="first day (default: first drop)")
    run.add_argument("--through", dest="last", type=_day, help="last day (default: last drop)")
    run.add_argument("--days-per-run", type=int, default=31, help="days per Dagster run (default 31)")
    sql = sub.add_parser("sql", help="SQL over the gold, score and decision tables (Polars SQL)")
    sql.add_argument("query", nargs="?", help="a SELECT statement, or the name of a documented "
                     "question (see --questions)")
    sql.add_argument("--tables", action="store_true", help="list the tables and their columns")
    sql.add_argument("--questions", action="store_true", help="list the documented questions")
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    sub.add_parser("evaluate", help="after `run`: the churn model against its baseline, "
                   "recency alone and (simulated worlds) the truth; both CLTV models on the "
                   "latest holdout window; writes reports/model_evaluation.json")
    _add_people_commands(sub)
    return parser


def _add_people_commands(sub) -> None:
    """What people look at and call: the brief, the scoring API, the MLflow UI."""
    report = sub.add_parser("report", help="render the daily retention brief (HTML) of a "
                            "scored day into $CHURN_HOME/reports/brief/")
    report.add_argument("--day", type=_day, help="the scored day (default: the latest)")
    report.add_argument("--open", action="store_true", help="open it in the browser")
    report.add_argument("--currency", default="€", help="currency symbol (default €)")
    report.add_argument("--serve", action="store_true", help="then serve the reports folder "
                        "over HTTP (where the UI's brief links point) until Ctrl-C")
    report.add_argument("--host", default="127.0.0.1", help="with --serve: bind address "
                        "(default 127.0.0.1)")
    report.add_argument("--port", type=int, help="with --serve: port (default: the port of "
                        "[reports] url, 8765)")
    serve = sub.add_parser("serve", help="the scoring API: champion model + latest gold "
                           "features, reloaded when either changes")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--no-auth", action="store_true", help="serve without an API key "
                       "(a laptop only); otherwise $CHURN_API_KEY is required")
    serve.add_argument("--reload-seconds", type=float, default=30.0,
                       help="how often to look for a new champion or feature day (default 30)")
    ui = sub.add_parser("mlflow", help="the MLflow UI on this project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"simulate": _simulate, "import": _import, "run": _run,
                "evaluate": _evaluate, "sql": _sql, "report": _report, "serve": _serve,
                "mlflow": _mlflow_ui}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, LookupError, RuntimeError, OSError) as exc:
        # One line: a message may quote a user's data, which can be arbitrarily long.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        message = " ".join(lines) if len(lines) <= 12 else " ".join(lines[:12]) + " …"
        print(f"churn-assets {args.command}: error: {_cut(message, 2000)}", file=sys.stderr)
        return 2


def _decided_actions(paths):
    """The pipeline's treated decisions as simulator actions, read through the store of
    ``CHURN_ENV``; the number of control rows left out; and where the table is."""
    from churn_assets import catalog
    from churn_assets.resources import build_resources, environment
    from churn_assets.simulator.loop import decided_actions
    from churn_assets.steps.reads import read_table

    store = build_resources(environment(), paths)["store"]
    table = catalog.ACTIONS.full_name
    actions, controls = decided_actions(read_table(store, table), store.location(table))
    return actions, controls, store.location(table)


def _simulate(args: argparse.Namespace) -> int:
    from churn_assets.ingest.landing import drop_records, list_drops
    from churn_assets.settings import DOMAINS, Paths
    from churn_assets.simulator import DirtConfig, SimConfig, simulate
    from churn_assets.simulator.loop import (
        check_same_history,
        executed_through,
        read_stamp,
        simulation_stamp,
    )

    if args.clean:
        dirt = DirtConfig.clean()
    else:
        knobs = {
            name: getattr(args, name)
            for name in (
                "duplicate_rate", "late_rate", "malformed_rate", "null_rate",
                "mixed_tz_rate", "redrop_rate", "new_column_day",
            )
            if getattr(args, name) is not None
        }
        dirt = DirtConfig(**knobs)
    domains = tuple(d.strip() for d in args.domains.split(",")) if args.domains else DOMAINS
    sparse = args.preset == "sparse-retail"
    paths = Paths.from_env()
    stamp = paths.truth / "simulated_with.json"
    if sparse:
        from churn_assets.simulator.sparse import sparse_retail_config

        if args.until or args.apply_actions:
            raise ValueError("--until and --apply-actions work with the default preset only")
        preset = sparse_retail_config(seed=args.seed, dirt=dirt)
        domains = tuple(d for d in domains if d in preset.domains) or preset.domains
        config = SimConfig(
            customers=args.customers or preset.customers, days=args.days or preset.days,
            start=args.start or preset.start, seed=args.seed, dirt=dirt, domains=domains,
        )
        until = config.start + timedelta(days=config.days - 1)
    else:
        def world(start: date, days: int) -> SimConfig:
            return SimConfig(customers=args.customers or 3000, days=days, start=start,
                             seed=args.seed, dirt=dirt, domains=domains)

        if args.start is not None:
            config = world(args.start, args.days or HISTORY_DAYS)
            until = args.until or config.start + timedelta(days=config.days - 1)
        else:
            # The default world ends yesterday. Once simulated, it stays the data root's world
            # (same start), so simulating again later, or with --until today, only adds days.
            history = args.days or HISTORY_DAYS
            config = world(_yesterday() - timedelta(days=history - 1), history + LIVE_DAYS)
            recorded = read_stamp(stamp, config)
            if recorded is not None and args.days is None:
                same = world(date.fromisoformat(recorded["config"]["start"]),
                             int(recorded["config"]["days"]))
                if simulation_stamp(same, same.start, None)["config"] == recorded["config"]:
                    config = same
            until = args.until or min(_yesterday(),
                                      config.start + timedelta(days=config.days - 1))
    last_day = config.start + timedelta(days=config.days - 1)
    if not config.start <= until <= last_day:
        raise ValueError(f"--until {until} is outside the simulated days {config.start} .. "
                         f"{last_day} (--start {config.start}, --days {config.days})")
    actions = None
    if args.apply_actions:
        actions, controls, where = _decided_actions(paths)
        due = executed_through(actions, until)
        print(f"applying {due:,} retention actions from {where} through {until} "
              f"({controls:,} control rows left out; {actions.height - due:,} wait for a later "
              "--until); a decision of day D is executed on day D+1")
    # The stamp names the world, how far it went and the actions applied: repeating a command is
    # a no-op, while a later --until or new actions simulate again (and only add drops).
    wanted = simulation_stamp(config, until, actions) | ({"preset": args.preset} if sparse else {})
    previous = read_stamp(stamp, config)
    if not args.force and previous is not None:
        if previous == wanted:
            print(f"{paths.landing} already holds this simulated world through {until}; nothing "
                  "to do (--force simulates it again)")
            return 0
        check_same_history(previous, wanted, actions, paths.landing)
    planned = (f"; the world is planned through {last_day}, a later --until adds days"
               if until < last_day else "")
    print(f"simulating {config.customers:,} customers over {config.days} days from "
          f"{config.start} through {until} (seed {config.seed}) into {paths.landing}{planned}")
    before = {(d.domain, d.day): d.fingerprint for d in list_drops(paths.landing)}
    if sparse:
        from churn_assets.simulator.sparse import SPARSE_SETTINGS, simulate_sparse

        summary = simulate_sparse(paths, config, progress=_progress("simulate"))
        if not paths.settings_file.exists():
            paths.settings_file.parent.mkdir(parents=True, exist_ok=True)
            paths.settings_file.write_text(SPARSE_SETTINGS)
            print(f"wrote {paths.settings_file}: model settings for a sparse business (a year "
                  "of weekly training snapshots, auc_floor 0.70); edit it to change them")
    else:
        summary = simulate(paths, config, actions=actions, progress=_progress("simulate"),
                           until=until)
    stamp.write_text(json.dumps(wanted, sort_keys=True))
    added = [d for d in list_drops(paths.landing) if before.get((d.domain, d.day)) != d.fingerprint]
    if before and (previous or {}).get("config") == wanted["config"]:
        # The same world, further: say what this run added, not the whole world's totals.
        rows = defaultdict(int)
        for drop in added:
            rows[drop.domain] += drop_records(drop)
        days = sorted({d.day for d in added})
        span = f"{days[0]} .. {days[-1]}" if days else "no day"
        print(f"added {len(added)} drop(s) for {span}: "
              + (", ".join(f"{d} {n:,}" for d, n in rows.items()) or "nothing") + " rows "
              f"in {summary.seconds:.1f}s")
    else:
        rows = ", ".join(f"{d} {n:,}" for d, n in summary.rows.items() if d in domains)
        dirt_made = ", ".join(f"{k} {v:,}" for k, v in summary.dirt_totals().items() if v)
        print(f"wrote {rows} rows in {summary.seconds:.1f}s")
        print(f"dirt injected: {dirt_made or 'none'}")
    print(f"churned {summary.churned:,} of {summary.customers:,} customers through {until} "
          f"({summary.churned_explicit:,} cancelled explicitly)")
    print(f"ground truth (never read by the pipeline): {paths.truth}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from churn_assets.ingest.importer import import_customers, import_transactions, parse_mapping
    from churn_assets.settings import Paths

    domain = "payments" if args.domain == "transactions" else "customers"
    mapping = parse_mapping(args.mapping, domain)
    options = {"timezone": args.timezone, "timestamp_format": args.timestamp_format,
               "delimiter": args.delimiter, "keep_duplicates": args.keep_duplicates}
    if args.domain == "transactions":
        if args.as_of:
            raise ValueError("--as-of applies to `import customers` only")
        report = import_transactions(args.file, mapping, Paths.from_env(), **options)
    else:
        report = import_customers(args.file, mapping, Paths.from_env(), as_of=args.as_of, **options)
    print(report)
    return 0


def _run(args: argparse.Namespace) -> int:
    from churn_assets import catalog
    from churn_assets.automation import LABELS_JOB
    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.ingest.landing import list_drops
    from churn_assets.lab.runner import (
        RunInputs,
        landing_range,
        persistent_instance,
        plan_run,
        run_range,
    )
    from churn_assets.resources import environment
    from churn_assets.resources.pii import refuse_public_key_in_env
    from churn_assets.settings import Paths, load_settings
    from churn_assets.steps.reads import last_arrival

    paths = Paths.from_env()
    settings = load_settings(paths)
    landed_first, landed_last = landing_range(paths)
    first, last = args.first or landed_first, args.last or landed_last
    defs = build_definitions(paths, settings)
    partitions_def = daily_partitions(settings)
    plan = plan_run(paths, partitions_def, first, last)
    # Refuse before any run starts, with the same message the bronze assets give.
    drops = [d for d in list_drops(paths.landing) if first <= d.day <= last]
    refuse_public_key_in_env(drops)
    print(f"running the asset graph for {first} .. {last} on {paths.home}")
    for start, end, reason in plan.skipped:
        print(f"  skipping {_days(start, end)}: {_cut(reason)}", flush=True)

    def report(index: int, total: int, chunk) -> None:
        if chunk.skipped:
            print(f"[{index}/{total}] {chunk.start} .. {chunk.end}  unchanged (same drops, "
                  f"settings and code as run {chunk.run_id[:8]}): skipped", flush=True)
            return
        rows = ", ".join(f"{k} {v:,}" for k, v in sorted(chunk.rows.items()) if "quarantine" not in k)
        quarantined = sum(v for k, v in chunk.rows.items() if "quarantine" in k)
        print(f"[{index}/{total}] {chunk.start} .. {chunk.end}  {chunk.seconds:5.1f}s  {rows}"
              f"  (quarantined {quarantined:,})", flush=True)
        warned = [c.split(" ")[0] for c in chunk.failed_checks if "(WARN" in c]
        for check in chunk.failed_checks:
            if "(WARN" not in check:
                print(f"    failed check: {_cut(check)}", flush=True)
        if warned:
            print(f"    {len(warned)} warning(s): {', '.join(sorted(set(warned)))} "
                  "(details in the UI)", flush=True)
        if chunk.error:
            print(f"    {_cut(chunk.error)}", flush=True)

    horizon = settings.labels.horizon_days
    failed = []
    inputs = RunInputs(paths, settings, environment())
    with persistent_instance() as instance:
        for start, end in plan.ranges:
            failed += [c for c in run_range(
                defs, partitions_def, start, end, instance,
                days_per_run=args.days_per_run, on_chunk=report, stop_on_failure=False,
                inputs=inputs.daily, skip_unchanged=inputs.skip,
            ) if c.error]
        # A label needs its whole window in silver: what has been ingested (by this run or an
        # earlier one), not what has landed, which may reach past --through.
        ingested = last_arrival(defs.resources["store"], catalog.silver("payments").full_name) or first
        labelled_through = min(last, ingested - timedelta(days=horizon))
        label_ranges = [(a, min(b, labelled_through)) for a, b in plan.ranges
                        if a <= labelled_through]
        if label_ranges:
            print(f"churn labels for {first} .. {labelled_through} (horizon {horizon} days)")
            for start, end in label_ranges:
                failed += [c for c in run_range(
                    defs, partitions_def, start, end, instance, days_per_run=args.days_per_run,
                    on_chunk=report, job_name=LABELS_JOB, stop_on_failure=False,
                    inputs=inputs.labels, skip_unchanged=inputs.skip,
                ) if c.error]
        else:
            print(f"no label days in this range: a label needs {horizon} days of data after its "
                  f"snapshot day (payments are ingested through {ingested}, landed through "
                  f"{landed_last}; [labels] horizon_days in settings.toml)")
        if plan.ranges and _train(defs, instance, inputs.training(), inputs.skip):
            for start, end in plan.ranges:
                _score_and_decide(defs, partitions_def, start, end, ingested,
                                  settings, instance, args.days_per_run, inputs, report)
    store = defs.resources["store"]
    print(f"\ntables: {store.location(catalog.SCORES.full_name)} and its siblings (churn-assets sql "
          "--tables lists them)")
    print("see the runs, assets and checks in the UI: make ui  (http://127.0.0.1:3000)")
    if plan.skipped or failed:
        print(f"\nnot everything ran: {len(plan.skipped)} day range(s) skipped, {len(failed)} "
              "run(s) failed; the other days ran.", file=sys.stderr)
        for start, end, reason in plan.skipped:
            print(f"  skipped {_days(start, end)}: {_cut(reason)}", file=sys.stderr)
        for chunk in failed:
            print(f"  failed {_days(chunk.start, chunk.end)}: {_cut(chunk.error)}", file=sys.stderr)
        return 1
    return 0


def _days(start, end) -> str:
    return str(start) if start == end else f"{start} .. {end}"


def _cut(text: str, limit: int = 400) -> str:
    """One message line of at most ``limit`` characters: a user's data can be arbitrarily long."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _score_and_decide(defs, partitions_def, first, last, ingested, settings, instance,
                      days_per_run: int, inputs=None, report=None) -> None:
    from churn_assets.automation import OUTCOMES_JOB, SCORING_JOB
    from churn_assets.lab.runner import RunError, run_range

    champion = defs.resources["mlflow"].champion_version()
    print(f"scores and decisions for {first} .. {last}", flush=True)
    try:
        run_range(defs, partitions_def, first, last, instance, days_per_run=days_per_run,
                  job_name=SCORING_JOB, on_chunk=_only_skips(report),
                  inputs=inputs.scoring(champion) if inputs else None,
                  skip_unchanged=inputs.skip if inputs else False)
    except RunError as exc:
        print(f"  not scored: {exc}")
        return
    window = settings.scoring.outcome_window_days
    measured_through = min(last, ingested - timedelta(days=window))
    if measured_through >= first:
        print(f"campaign outcomes for {first} .. {measured_through} ({window}-day window)")
        run_range(defs, partitions_def, first, measured_through, instance,
                  days_per_run=days_per_run, job_name=OUTCOMES_JOB, on_chunk=_only_skips(report),
                  inputs=inputs.outcomes(champion) if inputs else None,
                  skip_unchanged=inputs.skip if inputs else False)


def _only_skips(report):
    """Scoring chunks print nothing when they run (as before); a skipped one says so."""
    if report is None:
        return None
    return lambda index, total, chunk: report(index, total, chunk) if chunk.skipped else None


def _train(defs, instance, inputs: str | None = None, skip_unchanged: bool = True) -> bool:
    """Train; True when a champion model exists afterwards (this one or an earlier one)."""
    from churn_assets.automation import TRAINING_JOB
    from churn_assets.lab.runner import RunError, run_once

    print("training the churn and CLTV models", flush=True)
    try:
        result = run_once(defs, TRAINING_JOB, instance, inputs=inputs,
                          skip_unchanged=skip_unchanged)
    except RunError as exc:
        # History too short to train is common on a small world: say why, keep the data.
        print(f"  models not trained: {exc}")
        return False
    if result is None:
        print("  unchanged (same labelled data, settings and code as the last training): "
              "not retrained")
        return defs.resources["mlflow"].champion_version() is not None
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        if event.materialization.asset_key.path == ["ml", "uplift_model"]:
            print(f"  uplift_model: {meta.get('status')}; actions are valued with "
                  f"{meta.get('policy_values_actions_with')}")
        elif "model_version" in meta:
            print(f"  churn_model v{meta['model_version']}: validation ROC-AUC "
                  f"{meta.get('val_roc_auc')} (baseline {meta.get('baseline_val_roc_auc')}), "
                  f"ECE {meta.get('val_ece')}; gate: {meta.get('gate')}")
        elif "fitted_on" in meta:
            print(f"  cltv_model fitted on {meta['fitted_on']}; latest window: predicted "
                  f"{meta.get('eval_total_predicted')} vs actual {meta.get('eval_total_actual')}"
                  f", Spearman {meta.get('eval_spearman')}")
    from churn_assets.assets.model import GATE_CHECK

    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == GATE_CHECK and not evaluation.passed:
            print(f"  the gate refused the challenger: {evaluation.description}")
    champion = defs.resources["mlflow"].champion_version()
    if champion is None:
        print("  no champion model yet, so nothing is scored: the first model must pass the "
              "gate's rules ([model] auc_floor and beat_recency in settings.toml; its reasons "
              "are above)")
    return champion is not None


def _sql(args: argparse.Namespace) -> int:
    import narwhals as nw
    import polars as pl

    from churn_assets import catalog
    from churn_assets.decisions.sql import QUESTIONS, TABLES, ask, register_tables
    from churn_assets.resources import build_resources, environment
    from churn_assets.settings import Paths
    from churn_assets.steps.reads import to_polars

    paths = Paths.from_env()
    # The environment's own store (CHURN_ENV), so the answers come from the tables the graph
    # wrote. Polars runs the SQL; Spark tables are collected to this process to do so.
    store = build_resources(environment(), paths)["store"]
    by_sql_name = {table.sql_name: table.full_name for table in catalog.TABLES}
    found = {name: by_sql_name[name] for name in TABLES}
    present = {name: table for name, table in found.items() if store.exists(table)}
    if args.tables:
        for name in TABLES:
            if name in present:
                frame = nw.from_native(store.read(present[name]))
                print(f"{name}: {', '.join(frame.columns)}")
            else:
                print(f"{name}: (not materialized yet: {store.location(found[name])})")
        return 0
    if args.questions:
        for name, query in QUESTIONS.items():
            print(f"-- {name}\n{query.strip()}\n")
        return 0
    if not args.query:
        raise ValueError("give a SELECT statement or a question name (see --questions)")
    tables = {name: store.read(table) for name, table in present.items()}
    tables = {name: frame if isinstance(frame, pl.LazyFrame) else to_polars(frame)
              for name, frame in tables.items()}
    result = ask(register_tables(pl.SQLContext(), tables), args.query)
    with pl.Config(tbl_rows=args.limit, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=250):
        print(result.head(args.limit))
    if result.height > args.limit:
        print(f"({result.height} rows; --limit to see more)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from churn_assets.lab.evaluate import pipeline_cltv_report, pipeline_report
    from churn_assets.ml.churn_model import ChurnTrainingConfig
    from churn_assets.resources import build_resources, environment
    from churn_assets.settings import Paths, load_settings

    paths = Paths.from_env()
    settings = load_settings(paths)
    model = settings.model
    simulated = (paths.truth / "customers.parquet").exists()
    config = ChurnTrainingConfig.from_settings(model, settings.labels.horizon_days)
    store = build_resources(environment(), paths, settings)["store"]
    report = pipeline_report(paths, store, settings.labels.horizon_days, model.training_days,
                             config)
    report["cltv"] = pipeline_cltv_report(store, settings.labels.horizon_days)
    paths.reports.mkdir(parents=True, exist_ok=True)
    out = paths.reports / "model_evaluation.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    auc, alive = report["roc_auc"], report["roc_auc_alive_rows"]
    print(f"validation {report['split']['validation_start']} .. {report['split']['validation_end']}"
          f" ({report['split'].get('validation_rows', '?')} rows)")
    for name in ("model", "baseline", "recency_alone", "hazard_oracle", "label_oracle"):
        if name in auc:
            extra = f"   (truly alive rows {alive[name]:.4f})" if simulated and name in alive else ""
            print(f"  ROC-AUC {name:14s} {auc[name]:.4f}{extra}")
    print(f"  LightGBM over the baseline: {report['gain_over_baseline']:+.4f}; scoring: "
          f"{report['scorer_reason']}")
    if simulated:
        print(f"  model / label oracle = {auc['model'] / auc['label_oracle']:.3f}")
    else:
        print("  (no simulator truth under this data root: no oracle to compare with)")
    print(f"  ECE before calibration {report['ece_uncalibrated']:.4f}, after "
          f"{report['ece_calibrated']:.4f} (baseline {report['ece_baseline']:.4f})")
    cltv = report["cltv"]
    print(f"CLTV on the holdout ({cltv['cutoff']}, +{cltv['horizon_days']} days]:")
    for name, v in cltv["models"].items():
        error = "n/a" if v["total_error"] is None else format(v["total_error"], "+.1%")
        print(f"  {name:18s} predicted {v['total_predicted']:,.0f} vs actual "
              f"{v['total_actual']:,.0f} ({error}), Spearman {v['spearman']:.3f}, top decile "
              f"{v['top_decile_share']:.1%} of revenue, MAE {v['mae_per_customer']:.2f}")
    print(f"  kept: {cltv['chosen']} ({cltv['reason']})")
    print(f"full report: {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import webbrowser
    from urllib.parse import urlsplit

    from churn_assets.reports.inputs import latest_scored_day, read_inputs, write_page
    from churn_assets.reports.server import DEFAULT_PORT, page_url, reports_server
    from churn_assets.resources import build_resources, environment
    from churn_assets.settings import Paths, load_settings

    paths = Paths.from_env()
    settings = load_settings(paths)
    resources = build_resources(environment(), paths, settings)
    store, mlflow = resources["store"], resources["mlflow"]
    day = args.day or latest_scored_day(store)
    if day is None:
        raise ValueError("nothing is scored yet: run `churn-assets run` (a champion model "
                         "must exist) before asking for a brief")
    inputs = read_inputs(store, mlflow.location(), settings, day, currency=args.currency,
                         mlflow_ui=mlflow.ui_url)
    if inputs.today(inputs.scores).is_empty():
        raise ValueError(f"{day} has no scores (scored days run through "
                         f"{latest_scored_day(store)}); pick another --day")
    path = write_page(inputs, paths.reports)
    print(f"brief of {day}: {path}")
    if not args.serve:
        if args.open and not webbrowser.open(path.as_uri()):
            print("no browser could be opened here; open the file above")
        return 0
    port = args.port if args.port is not None else (urlsplit(settings.reports.url).port
                                                   or DEFAULT_PORT)
    server = reports_server(paths.reports, args.host, port)
    url = page_url(f"http://{args.host}:{server.server_address[1]}", paths.reports, path)
    print(f"serving {paths.reports} at {url} (Ctrl-C stops it)", flush=True)
    if args.open and not webbrowser.open(url):
        print("no browser could be opened here; open the address above")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from churn_assets.serve.app import run_server

    return run_server(host=args.host, port=args.port, require_key=not args.no_auth,
                      reload_seconds=args.reload_seconds)


def _mlflow_ui(args: argparse.Namespace) -> int:
    from churn_assets.resources import build_resources, environment
    from churn_assets.settings import Paths

    paths = Paths.from_env()
    mlflow = build_resources(environment(), paths)["mlflow"]
    location = mlflow.location()
    if not location.tracking_uri.startswith("sqlite:"):
        raise ValueError(f"the tracking store is {location.tracking_uri}: open that server's "
                         "own UI (on Databricks: the workspace's Experiments page)")
    location.activate()  # creates the store and experiment on a fresh data root
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               location.tracking_uri, "--default-artifact-root", location.artifact_location,
               "--host", args.host, "--port", str(args.port), "--workers", "1"]
    print(f"MLflow UI on {location.tracking_uri} at http://{args.host}:{args.port} "
          "(Ctrl-C stops it)", flush=True)
    # Replaced, not spawned: signals reach the server itself, and nothing is left behind.
    os.execv(sys.executable, command)


def _progress(label: str):
    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"  {label}: {done}/{total} days", flush=True)

    return report


if __name__ == "__main__":
    sys.exit(main())
