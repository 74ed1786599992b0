"""The closed-loop experiment: the budget policy valuing actions with the uplift model, the rule
policy and the budget policy with configured save rates, on one simulated world, judged
against its exact counterfactual.

    python -m churn_assets.lab.loop [--customers 3000 --days 240 --seed 42 --warmup-days 150
                                     --pilot-days 42 --step-days 7 --budget 500
                                     --horizon-days 60 --steps N --auc-floor F
                                     --out docs/loop_experiment.md --home DIR]

1. **Warm-up**: the default simulated world (``SimConfig`` defaults except the flags) through
   day ``warmup-days``; the pipeline runs on it (``churn_daily``, labels, training) until a
   champion model exists. With ``--pilot-days``, the champion is trained that many days before
   the warm-up ends, and a randomized pilot campaign (the rule policy with a large exploration
   share) runs weekly until then, so the uplift model has measured experiments to learn from
   when the experiment starts; the model is retrained at the end of the warm-up. Every world
   inherits the pilot: "no action" means no action after the warm-up.
2. **Four worlds** copied from the warm-up, each with its own Dagster instance: ``none`` (no
   action after the warm-up), ``uplift`` (the budget policy valuing actions with the uplift
   model), ``rules`` and ``budget`` (the budget policy with the configured save rates), all
   with the same ``daily_budget``. Every ``step-days`` a policy world ingests the new drops,
   scores and decides on that day (the ``churn_scoring`` job), and the simulator runs on to the
   next decision day executing the treated decisions (a decision of day D on D + 1, as
   ``churn-assets simulate --apply-actions``). The ``uplift`` world also measures the outcomes
   of every campaign whose window has closed and retrains the uplift model each step, so it
   learns as it goes; the others are measured at the end.
3. **Judged exactly** (``twins``): every draw of the simulator is keyed by (seed, purpose, day,
   customer), so a policy world and the no-action world differ only in the customers the policy
   treated. Revenue saved = each customer's net revenue after the warm-up (paid charges +
   refunds, gold ``daily_activity``) in the policy world minus in the no-action world, summed;
   churns prevented from the truth's churn dates; the uplift the pipeline measured (treated vs
   its control hold-out) next to the true uplift of the same treated customers (retained in the
   policy world minus retained in the no-action world); the uplift model's ranking against the
   truth's per-customer effects (Qini against the oracle).

The report (markdown, with one ``target:`` line per goal of the issue) goes to ``--out``
(default ``$CHURN_HOME/reports/loop_experiment.md``; ``make loop`` writes
``docs/loop_experiment.md``) and is printed. The worlds stay under ``--home`` (default
``$CHURN_HOME/loop_experiment``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from churn_assets import catalog
from churn_assets.assets.uplift import UPLIFT_MODEL_KEY
from churn_assets.automation import (
    DAILY_JOB,
    LABELS_JOB,
    OUTCOMES_JOB,
    SCORING_JOB,
    TRAINING_JOB,
)
from churn_assets.definitions import build_definitions, daily_partitions
from churn_assets.ingest.landing import list_drops
from churn_assets.lab import twins
from churn_assets.lab.runner import RunError, run_once, run_range
from churn_assets.settings import Paths, Settings, load_settings
from churn_assets.simulator import SimConfig, simulate
from churn_assets.simulator import vocab as V
from churn_assets.simulator.loop import (
    check_same_history,
    decided_actions,
    read_stamp,
    simulation_stamp,
)
from churn_assets.steps.reads import read_table

POLICIES = ("uplift", "rules", "budget")
WORLDS = ("none", *POLICIES)
# The settings that make each world's policy, on top of LoopConfig.sections().
POLICY_SECTIONS: dict[str, dict[str, dict]] = {
    "uplift": {"decisions.policy": {"kind": "budget"}},
    "rules": {"decisions.policy": {"kind": "rules"}},
    "budget": {"decisions.policy": {"kind": "budget"}},
}
# Retrains the uplift model alone: the churn model stays the warm-up's in every world, so the
# worlds differ in their policy only.
UPLIFT_JOB = "loop_uplift_training"
# One Dagster run per range the loop asks for (the assets still commit day by day).
DAYS_PER_RUN = 400
# What the loop reports of each uplift model training.
UPLIFT_META = ("status", "model_version", "champion_version", "training_rows",
               "holdout_qini_model", "holdout_qini_churn_risk")
# A measured interval from arms smaller than this is not judged for coverage.
MIN_ARM = 30


class LoopError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoopConfig:
    """The experiment. ``settings`` adds or overrides ``settings.toml`` keys of every world, by
    dotted section: ``{"model": {"training_days": 20}, "scoring": {...}}``; ``pilot_settings``
    those of the warm-up's pilot campaign."""

    customers: int = 3000
    days: int = 240
    seed: int = 42
    start: date = SimConfig.start
    warmup_days: int = 150
    step_days: int = 7
    budget: float = 500.0
    # The default 90-day horizon cannot train on a 150-day warm-up: a time split needs more than
    # validation_days + horizon labelled days, and labels stop a horizon before the warm-up ends.
    horizon_days: int = 60
    steps: int | None = None  # at most this many decision days (default: until the end)
    auc_floor: float | None = None  # None: the gate's default ([model] auc_floor)
    pilot_days: int = 0  # a randomized pilot over the warm-up's last days (0: none)
    settings: dict[str, dict] = field(default_factory=dict)
    # The pilot: the rule policy, with half the eligible customers given a random arm (no
    # action included) within the whole budget, so every arm gathers randomized outcomes.
    pilot_settings: dict[str, dict] = field(default_factory=lambda: {
        "decisions.policy": {"kind": "rules"},
        "decisions.experiment": {"explore_share": 0.5, "explore_budget_share": 1.0}})

    def __post_init__(self) -> None:
        if not 0 < self.warmup_days < self.days:
            raise ValueError(f"--warmup-days must be in 1 .. {self.days - 1} (--days)")
        if self.step_days < 1:
            raise ValueError("--step-days must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError("--steps must be at least 1")
        if not 0 <= self.pilot_days < self.warmup_days:
            raise ValueError(f"--pilot-days must be in 0 .. {self.warmup_days - 1} (--warmup-days)")

    @property
    def sim(self) -> SimConfig:
        return SimConfig(customers=self.customers, days=self.days, start=self.start,
                         seed=self.seed)

    @property
    def warmup_end(self) -> date:
        return self.start + timedelta(days=self.warmup_days - 1)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    def decision_days(self) -> list[date]:
        """The warm-up's last day, then every ``step_days``, while a decision can still be
        executed (on the next day) within the history."""
        days, day = [], self.warmup_end
        while day < self.end and (self.steps is None or len(days) < self.steps):
            days.append(day)
            day += timedelta(days=self.step_days)
        return days

    def pilot_days_list(self) -> list[date]:
        """The pilot's campaign days: every ``step_days`` from ``pilot_days`` before the end of
        the warm-up, the last one a step before it."""
        first = self.warmup_end - timedelta(days=self.pilot_days)
        return [first + timedelta(days=d) for d in range(0, self.pilot_days, self.step_days)]

    def sections(self, extra: dict[str, dict] | None = None) -> dict[str, dict]:
        sections: dict[str, dict] = {
            "labels": {"horizon_days": self.horizon_days},
            "decisions.policy": {"daily_budget": self.budget},
        }
        if self.auc_floor is not None:
            sections["model"] = {"auc_floor": self.auc_floor}
        for source in (self.settings, extra or {}):
            for name, values in source.items():
                sections.setdefault(name, {}).update(values)
        return sections


def to_toml(sections: dict[str, dict]) -> str:
    """Flat TOML for sections of scalars (strings, booleans, numbers)."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return json.dumps(str(v))

    return "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in values.items())
                   for name, values in sections.items())


class World:
    """One data root with its own settings, definitions and (ephemeral) Dagster instance."""

    def __init__(self, name: str, home: Path, config: LoopConfig, sections: dict[str, dict],
                 seen: dict[tuple[str, date], str] | None = None):
        self.name, self.config, self.paths = name, config, Paths(home)
        self.paths.home.mkdir(parents=True, exist_ok=True)
        self.paths.settings_file.write_text(to_toml(sections))
        self.settings: Settings = load_settings(self.paths)
        self.defs = build_definitions(self.paths, self.settings)
        self.partitions = daily_partitions(self.settings)
        self.instance = dg.DagsterInstance.ephemeral()
        # Drops (domain, day) -> fingerprint already ingested: re-drops are ingested again.
        self.seen: dict[tuple[str, date], str] = dict(seen or {})

    def close(self) -> None:
        self.instance.dispose()

    # ---------------------------------------------------------------- simulator

    def simulate_to(self, until: date, apply_actions: bool) -> int:
        """``churn-assets simulate --until until [--apply-actions]``; the number of actions
        executed through ``until``."""
        actions = None
        table = catalog.ACTIONS.full_name
        decided = read_table(self.store, table) if apply_actions else None
        if decided is not None:  # nothing decided yet: nothing to execute
            actions = decided_actions(decided, self.store.location(table))[0]
        stamp = self.paths.truth / "simulated_with.json"
        wanted = simulation_stamp(self.config.sim, until, actions)
        previous = read_stamp(stamp, self.config.sim)
        executed = 0 if actions is None else actions.filter(pl.col("day") <= until).height
        if previous == wanted:
            return executed
        if previous is not None:
            check_same_history(previous, wanted, actions, self.paths.landing)
        simulate(self.paths, self.config.sim, actions=actions, until=until)
        stamp.write_text(json.dumps(wanted, sort_keys=True))
        return executed

    # ---------------------------------------------------------------- pipeline

    def ingest(self, through: date) -> tuple[date, date] | None:
        """``churn_daily`` from the first new or changed drop (a re-drop of an older day
        included) through ``through``; the range run, or None when nothing is new."""
        drops = [d for d in list_drops(self.paths.landing) if d.day <= through]
        new = [d for d in drops if self.seen.get((d.domain, d.day)) != d.fingerprint]
        if not new:
            return None
        first = min(d.day for d in new)
        self.run(DAILY_JOB, first, through)
        self.seen.update({(d.domain, d.day): d.fingerprint for d in drops})
        return first, through

    def run(self, job: str, first: date, last: date) -> None:
        run_range(self.defs, self.partitions, first, last, self.instance,
                  days_per_run=DAYS_PER_RUN, job_name=job)

    def train(self, through: date) -> dict:
        """Labels for every day through ``through`` whose window has landed, then the training
        job; the churn model's metadata. Raises ``LoopError`` when no champion exists."""
        labelled_through = through - timedelta(days=self.settings.labels.horizon_days)
        if labelled_through < self.config.start:
            raise LoopError(
                f"no labelled day: a {self.settings.labels.horizon_days}-day label horizon needs "
                f"more days before {through} (--horizon-days, --warmup-days, --pilot-days)")
        self.run(LABELS_JOB, self.config.start, labelled_through)
        try:
            result = run_once(self.defs, TRAINING_JOB, self.instance)
        except RunError as exc:
            raise LoopError(f"the warm-up could not train the churn model: {exc}") from exc
        meta = {}
        for event in result.get_asset_materialization_events():
            found = {k: v.value for k, v in event.materialization.metadata.items()}
            if "model_version" in found and "val_roc_auc" in found:
                meta = found
        if self.defs.resources["mlflow"].champion_version() is None:
            raise LoopError(
                f"no champion model after the warm-up: the gate said '{meta.get('gate')}' "
                f"(validation ROC-AUC {meta.get('val_roc_auc')}, [model] auc_floor "
                f"{self.settings.model.auc_floor}). Nothing can be scored; lower the floor with "
                "--auc-floor (the report says so) or lengthen --warmup-days.")
        return meta

    def train_uplift(self) -> dict:
        """Retrain the uplift model alone (``ml/uplift_model``, gated); its metadata."""
        job = dg.define_asset_job(UPLIFT_JOB, selection=dg.AssetSelection.assets(UPLIFT_MODEL_KEY))
        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job]))
        try:
            result = run_once(defs, UPLIFT_JOB, self.instance)
        except RunError as exc:
            return {"status": f"training failed: {exc}"}
        for event in result.get_asset_materialization_events():
            return {k: v.value for k, v in event.materialization.metadata.items()}
        return {}

    def measure(self, days: list[date]) -> None:
        """``churn_outcomes`` for campaign ``days`` (their windows have closed)."""
        for day in days:
            self.run(OUTCOMES_JOB, day, day)

    def decide(self, day: date) -> dict:
        """Ingest through ``day``, score and decide it; what was decided."""
        self.ingest(day)
        self.run(SCORING_JOB, day, day)
        decided = self.table(catalog.ACTIONS.full_name).filter(pl.col("snapshot_date") == day)
        treated = decided.filter(~pl.col("control"))
        return {"day": day, "treated": treated.height, "control": decided.height - treated.height,
                "spend": float(treated["cost"].sum()) if treated.height else 0.0}

    # ---------------------------------------------------------------- tables

    @property
    def store(self):
        """The table store of the experiment's environment (what the pipeline wrote to)."""
        return self.defs.resources["store"]

    def table(self, name: str) -> pl.DataFrame:
        """The whole table, read through the store (an empty frame while it does not exist)."""
        found = read_table(self.store, name)
        return pl.DataFrame() if found is None else found


# ---------------------------------------------------------------- the experiment


def run_world(name: str, home: Path, config: LoopConfig, seen: dict, days: list[date],
              campaigns: list[date], say: Callable[[str], None] | None = None) -> dict:
    """One world after the warm-up: weekly ingest, score, decide and simulate on (``none``:
    simulate to the end without actions and ingest). The ``uplift`` world also measures every
    campaign whose window has closed and retrains the uplift model each step. Its steps and the
    uplift model's trainings; a module-level function, so a worker process can run it."""
    say = say or (lambda text: print(text, flush=True))
    world = World(name, home, config, config.sections(POLICY_SECTIONS.get(name)), seen=seen)
    steps: list[dict] = []
    uplift_log: list[dict] = []
    try:
        if name == "none":
            clock = time.perf_counter()
            # What the warm-up's pilot decided is executed: "no action" starts after it.
            world.simulate_to(config.end, apply_actions=True)
            world.ingest(config.end)
            say(f"[none] simulated and ingested through {config.end} without actions after the "
                f"warm-up ({time.perf_counter() - clock:.0f}s)")
            return {"steps": steps, "uplift_log": uplift_log}
        window = world.settings.scoring.outcome_window_days
        measured: set[date] = set()
        for index, day in enumerate(days):
            clock = time.perf_counter()
            if name == "uplift":
                # Learn as it goes: every campaign whose window has closed, then retrain.
                world.ingest(day)
                closed = [d for d in campaigns if d + timedelta(days=window) <= day
                          and d not in measured]
                if closed:
                    world.measure(closed)
                    measured.update(closed)
                    trained = world.train_uplift()
                    uplift_log.append({"day": day, "campaigns": len(measured),
                                       **{k: trained.get(k) for k in UPLIFT_META}})
                    say(f"[uplift] {day}: measured {len(closed)} campaigns; uplift model: "
                        f"{trained.get('status')}")
            step = world.decide(day)
            until = days[index + 1] if index + 1 < len(days) else config.end
            world.simulate_to(until, apply_actions=True)
            step["seconds"] = time.perf_counter() - clock
            steps.append(step)
            say(f"[{name}] step {index + 1}/{len(days)}: decided {day}: {step['treated']:,} "
                f"treated + {step['control']:,} control, spend {step['spend']:.2f}; simulated "
                f"through {until} ({step['seconds']:.0f}s)")
        clock = time.perf_counter()
        world.ingest(config.end)
        world.measure([d for d in campaigns if d + timedelta(days=window) <= config.end
                       and d not in measured])
        say(f"[{name}] ingested and measured through {config.end} "
            f"({time.perf_counter() - clock:.0f}s)")
        return {"steps": steps, "uplift_log": uplift_log}
    finally:
        world.close()


@dataclass
class LoopResult:
    config: LoopConfig
    homes: dict[str, Paths]
    report: str
    numbers: dict
    seconds: float


def run_loop(config: LoopConfig, home: Path, out: Path | None = None,
             command: str | None = None, force: bool = False,
             say: Callable[[str], None] = print, workers: int = 1) -> LoopResult:
    """Run the whole experiment under ``home`` (warmup/, none/, uplift/, rules/, budget/)."""
    began = time.perf_counter()
    home = Path(home).resolve()
    if home.exists() and any(home.iterdir()):
        if not force:
            raise LoopError(f"{home} is not empty: pass --force to replace the experiment there, "
                            "or --home another directory")
        for child in home.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    home.mkdir(parents=True, exist_ok=True)
    days, pilot = config.decision_days(), config.pilot_days_list()
    w_end = config.warmup_end
    say(f"closed loop: {config.customers:,} customers, {config.days} days from {config.start} "
        f"(seed {config.seed}); warm-up through {w_end}"
        + (f" with a pilot on {len(pilot)} days from {pilot[0]}" if pilot else "")
        + f"; {len(days)} decision days every {config.step_days} days ({days[0]} .. {days[-1]}); "
        f"daily budget {config.budget:g}; worlds under {home}")

    # 1. warm-up (and pilot)
    clock = time.perf_counter()
    warm = World("warmup", home / "warmup", config, config.sections(config.pilot_settings))
    trained_on = pilot[0] if pilot else w_end
    warm.simulate_to(trained_on, apply_actions=False)
    warm.ingest(trained_on)
    say(f"[warm-up] simulated and ingested {config.start} .. {trained_on} "
        f"({time.perf_counter() - clock:.0f}s); training")
    model = warm.train(trained_on)
    say(f"[warm-up] churn_model v{model.get('model_version')}: validation ROC-AUC "
        f"{model.get('val_roc_auc')} (baseline {model.get('baseline_val_roc_auc')}); gate: "
        f"{model.get('gate')} ({time.perf_counter() - clock:.0f}s)")
    if pilot:
        for index, day in enumerate(pilot):
            step = warm.decide(day)
            until = pilot[index + 1] if index + 1 < len(pilot) else w_end
            warm.simulate_to(until, apply_actions=True)
            say(f"[pilot] {day}: {step['treated']:,} treated + {step['control']:,} control, "
                f"spend {step['spend']:.2f}; simulated through {until}")
        warm.ingest(w_end)
        say(f"[pilot] done ({time.perf_counter() - clock:.0f}s); its outcomes are measured by "
            "the uplift world only, so the other worlds keep their configured save rates")
    warm.close()

    # 2. four worlds from the warm-up, each on its own (in parallel with --workers)
    for name in WORLDS:
        shutil.copytree(warm.paths.home, home / name)
    campaigns = pilot + days
    jobs = {name: (name, home / name, config, warm.seen, days, campaigns) for name in WORLDS}
    if workers <= 1:
        ran = {name: run_world(*job, say=say) for name, job in jobs.items()}
    else:
        # Spawned, not forked: Dagster, Polars and MLflow hold threads and locks.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {name: pool.submit(run_world, *job) for name, job in jobs.items()}
            ran = {name: future.result() for name, future in futures.items()}
    record = {
        "model": {k: model.get(k) for k in ("model_version", "val_roc_auc",
                                            "baseline_val_roc_auc", "val_ece", "gate")},
        "pilot": [d.isoformat() for d in pilot],
        "steps": {name: ran[name]["steps"] for name in POLICIES},
        "uplift_log": ran["uplift"]["uplift_log"],
        "seconds": time.perf_counter() - began,
    }
    # What the worlds did, so the judging can be redone without rerunning them (--report-only).
    (home / RECORD).write_text(json.dumps(record, default=str, indent=1))
    return report_loop(config, home, out=out, command=command)


RECORD = "loop_record.json"


def report_loop(config: LoopConfig, home: Path, out: Path | None = None,
                command: str | None = None) -> LoopResult:
    """3. Judge the worlds under ``home`` against the exact counterfactual and write the
    report (also on its own, from the worlds and record a finished run left)."""
    home = Path(home).resolve()
    try:
        record = json.loads((home / RECORD).read_text())
    except FileNotFoundError as exc:
        raise LoopError(f"no finished experiment under {home} ({RECORD} is missing): run it "
                        "first") from exc
    clock = time.perf_counter()
    worlds = {name: World(name, home / name, config, config.sections(POLICY_SECTIONS.get(name)))
              for name in WORLDS}
    window = worlds["uplift"].settings.scoring.outcome_window_days
    days = config.decision_days()
    try:
        numbers = judge(config, worlds, days, window)
    finally:
        for world in worlds.values():
            world.close()
    numbers["model"] = record["model"]
    numbers["steps"] = record["steps"]
    numbers["pilot"] = [date.fromisoformat(d) for d in record["pilot"]]
    numbers["uplift_log"] = record["uplift_log"]
    numbers["settings"] = worlds["uplift"].settings
    seconds = record["seconds"] + time.perf_counter() - clock
    report = render(config, numbers, command, seconds, home)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    homes = {n: w.paths for n, w in worlds.items()} | {"warmup": Paths(home / "warmup")}
    return LoopResult(config, homes, report, numbers, seconds)


# ---------------------------------------------------------------- judging


def revenue_by_customer(world: World, first: date, last: date) -> pl.DataFrame:
    """Net revenue (paid charges + refunds) and paid orders per customer, event dates in
    [first, last]."""
    activity = world.table(catalog.DAILY_ACTIVITY.full_name)
    return activity.filter(pl.col("event_date").is_between(first, last)).group_by(
        "customer_id").agg(revenue=pl.col("revenue").sum(), orders=pl.col("orders").sum())


def churned_between(paths: Paths, first: date, last: date) -> pl.DataFrame:
    truth = pl.read_parquet(paths.truth / "customers.parquet")
    return truth.select("customer_id", churned=pl.col("churn_date").is_between(first, last)
                        .fill_null(False))


def truth_days(paths: Paths, days: list[date]) -> pl.DataFrame:
    """The truth's rows of ``days`` (customers at risk, with the oracle's per-action effects)."""
    files = [paths.truth / "hazard" / f"{d.isoformat()}.parquet" for d in days]
    found = [pl.read_parquet(f) for f in files if f.exists()]
    return pl.concat(found) if found else pl.DataFrame()


def judge(config: LoopConfig, worlds: dict[str, World], days: list[date], window: int) -> dict:
    first, last = config.warmup_end + timedelta(days=1), config.end
    none = twins.per_customer(revenue_by_customer(worlds["none"], first, last),
                              churned_between(worlds["none"].paths, first, last))
    numbers: dict = {"period": (first, last), "window": window, "decision_days": days,
                     "none": {"revenue": float(none["revenue"].sum()),
                              "churned": int(none["churned"].sum())}}
    measured_days = [d for d in days if d + timedelta(days=window) <= last]
    numbers["measured_days"] = measured_days
    activity_none = worlds["none"].table(catalog.DAILY_ACTIVITY.full_name)
    tables, covered, judged = {}, 0, 0
    for name in POLICIES:
        world = worlds[name]
        mine = twins.per_customer(revenue_by_customer(world, first, last),
                                  churned_between(world.paths, first, last))
        found = twins.savings(mine, none)
        actions = world.table(catalog.ACTIONS.full_name).filter(pl.col("snapshot_date").is_in(days))
        treated = actions.filter(~pl.col("control"))
        oracle = twins.oracle_rows(truth_days(world.paths, [d + timedelta(days=1) for d in days]),
                                   V.ACTIONS)
        expected = treated.join(oracle, on=["customer_id", "snapshot_date", "action"], how="left")
        per_day = treated.group_by("snapshot_date").agg(pl.col("cost").sum())
        found.update({
            "spend": float(treated["cost"].sum()) if treated.height else 0.0,
            "max_day_spend": float(per_day["cost"].max()) if per_day.height else 0.0,
            "treated": treated.height, "control": actions.height - treated.height,
            "by_action": dict(treated.group_by("action").agg(pl.len()).sort("action").iter_rows()),
            "oracle_prevented": float(expected["true_churn_reduction"].fill_null(0.0).sum()),
        })
        found["economics"] = twins.action_economics(found["per_customer"], treated)
        outcomes = world.table(catalog.OUTCOMES.full_name)
        if name == "uplift" and outcomes.height:
            # Every campaign it learned from (the warm-up's pilot included).
            campaigns = sorted(outcomes["snapshot_date"].unique().to_list())
            everything = twins.oracle_rows(
                truth_days(world.paths, [d + timedelta(days=1) for d in campaigns]), V.ACTIONS)
            numbers["power"] = twins.exploration_power(outcomes, everything)
        if outcomes.height and measured_days:
            outcomes = outcomes.filter(pl.col("snapshot_date").is_in(measured_days))
            activity = world.table(catalog.DAILY_ACTIVITY.full_name)
            found["by_action_uplift"] = twins.measured_vs_true(
                outcomes, activity, activity_none, oracle, window, by=("action",))
            campaign = twins.measured_vs_true(outcomes, activity, activity_none, oracle, window,
                                              by=("snapshot_date", "action"))
            found["by_campaign_uplift"] = campaign
            c, j = twins.coverage(campaign, MIN_ARM)
            covered, judged = covered + c, judged + j
        numbers[name] = found
        tables[name] = found["diff"]
    numbers["coverage"] = (covered, judged)
    numbers["uplift_minus_rules"] = twins.total_with_ci(tables["uplift"] - tables["rules"])
    numbers["qini"] = qini(worlds["uplift"], days, window)
    return numbers


def qini(world: World, days: list[date], window: int) -> pl.DataFrame:
    """The uplift model's ranking of each decision day's scored customers, per action, against
    the oracle's true churn reduction; beside it the ranking by churn risk. Only the decision
    days the model never saw the outcomes of (their windows closed after its last training)."""
    scores = world.table(catalog.SCORES.full_name)
    if scores.is_empty():
        return pl.DataFrame()
    unseen = [d for d in days if d + timedelta(days=window) > days[-1]]
    truth = truth_days(world.paths, [d + timedelta(days=1) for d in unseen]).with_columns(
        snapshot_date=pl.col("day") - timedelta(days=1))
    frame = scores.filter(pl.col("snapshot_date").is_in(unseen)).select(
        "customer_id", "snapshot_date", risk=pl.col("churn_probability")).join(
        truth, on=["customer_id", "snapshot_date"])
    predictions = uplift_predictions(world, unseen)
    labels = {"risk": "risk"}
    if predictions is not None:
        frame = frame.join(predictions, on=["customer_id", "snapshot_date"], how="left")
        labels["model"] = "predicted_{action}"
    return twins.qini_table(frame, labels, V.ACTIONS)


def uplift_predictions(world: World, days: list[date]) -> pl.DataFrame | None:
    """The uplift champion's predicted retention uplift per action (``predicted_<action>``) for
    the customers with gold features on ``days``; None without an uplift model."""
    champion = world.defs.resources["mlflow"].load_uplift_champion()
    if champion is None:
        return None
    model = champion[0]
    features = world.table(catalog.CUSTOMER_FEATURES.full_name)
    parts = []
    for day in days:
        rows = features.filter(pl.col("snapshot_date") == day)
        if rows.height:
            parts.append(model.predict(rows).with_columns(snapshot_date=pl.lit(day)))
    if not parts:
        return None
    return pl.concat(parts).pivot(on="action", index=["customer_id", "snapshot_date"],
                                  values="retention_uplift").rename(
        {a: f"predicted_{a}" for a in V.ACTIONS}, strict=False)


# ---------------------------------------------------------------- the report


def render(config: LoopConfig, numbers: dict, command: str | None, seconds: float,
           home: Path) -> str:
    settings: Settings = numbers["settings"]
    policy = settings.decisions.policy
    first, last = numbers["period"]
    days = numbers["decision_days"]
    pilot = numbers["pilot"]
    lines = [
        "# Closed loop: uplift budget policy vs rules vs save-rate budget policy, judged "
        "against the exact counterfactual",
        "",
        f"`{command or 'python -m churn_assets.lab.loop'}`",
        "",
        f"What ran: {config.customers:,} customers, {config.days} days from {config.start}, seed "
        f"{config.seed}, default dirt. Warm-up through {config.warmup_end}"
        + (f", with a randomized pilot campaign on {len(pilot)} days ({pilot[0]} .. {pilot[-1]})"
           if pilot else "")
        + f"; then {len(days)} weekly decision days ({days[0]} .. {days[-1]}; decided on day D "
        f"from data through D, executed on D+1). Judged over {first} .. {last}. Run time "
        f"{seconds / 60:.1f} min on this machine (2 cores, shared); worlds under `{home}`.",
        "",
        f"Pipeline settings: `[labels] horizon_days = {settings.labels.horizon_days}`, `[model] "
        f"auc_floor = {settings.model.auc_floor}`, `daily_budget = {policy.daily_budget:g}`, "
        f"`cooldown_days = {policy.cooldown_days}`, `control_share = {policy.control_share}`, "
        f"`outcome_window_days = {numbers['window']}`. Churn model: v"
        f"{numbers['model'].get('model_version')}, validation ROC-AUC "
        f"{numbers['model'].get('val_roc_auc')}.",
        "",
        "## Targets",
        "",
        "```",
        *twins.targets(numbers),
        "```",
        "",
        "## Revenue saved against the no-action twin (exact per customer)",
        "",
        *twins.savings_table(numbers, POLICIES),
        "",
        f"Uplift policy minus rules, customer by customer: {twins.pm(numbers['uplift_minus_rules'])}."
        f" No-action world: net revenue {twins.money(numbers['none']['revenue'])}, "
        f"{numbers['none']['churned']:,} churns in the period.",
        "",
        "How to read it. Every random draw of the simulator is keyed by (seed, purpose, day, "
        "customer), so a policy world and the no-action world differ only in the customers the "
        "policy treated, from their contact on: *revenue saved* is each customer's net revenue "
        "(paid charges + refunds, gold `daily_activity`) in the period in the policy world minus "
        "in the no-action world, summed; it is exact for this draw of the world (untreated "
        "customers contribute exactly 0). The ± is a 95% interval treating customers as "
        "independent draws: what the same policy would save on another draw of customers like "
        "these. Voucher discounts are already deducted from revenue, so *saved − spend* counts "
        "them twice (a floor). *Churns prevented, oracle's expectation*: the truth's "
        "`churn_reduction_<action>` (30 days, state held at the contact day) summed over the "
        "treated.",
        "",
        "## The uplift model against the oracle (Qini)",
        "",
    ]
    qini_table = numbers["qini"]
    if qini_table is None or qini_table.is_empty():
        lines.append("No scored customers on a decision day the model had not learned from.")
    else:
        has_model = "model" in qini_table.columns
        lines += [
            "| action | customers x days | oracle | uplift model | model / oracle | churn risk | "
            "risk / oracle |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in qini_table.iter_rows(named=True):
            model = r.get("model", float("nan")) if has_model else float("nan")
            lines.append(
                f"| {r['action']} | {r['customers']:,} | {r['oracle']:.5f} | {model:.5f} | "
                f"{twins.num(model / r['oracle'] if r['oracle'] else float('nan'))} | "
                f"{r['risk']:.5f} | {twins.num(r['risk'] / r['oracle'] if r['oracle'] else float('nan'))} |")
        lines += [
            "",
            "How to read it. For every customer scored on a decision day whose outcome window "
            "had not closed when the experiment ended (the model never saw their outcomes), "
            "customers are ranked by a score and the truth's churn reduction of the action is "
            "accumulated down the ranking; the Qini here is the mean gap between that curve and "
            "random targeting (per customer), so it is measured with the true effects rather "
            "than noisy outcomes. The oracle ranks by the true effect itself (the most any "
            "ranking can reach). Ranking by churn risk is the retention-futility baseline.",
        ]
    lines += [
        "",
        "## What each action bought (revenue saved against the twin, per customer)",
        "",
        "| policy | action | customers | treatments | spend | revenue saved (±95%) | saved per "
        "unit spend |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in POLICIES:
        table = numbers[name].get("economics")
        for r in ([] if table is None else table.iter_rows(named=True)):
            lines.append(
                f"| {twins.POLICY_LABELS[name]} | {r['action']} | {r['customers']:,} | "
                f"{r['treatments']:,} | {twins.money(r['spend'])} | "
                f"{twins.pm((r['saved'], r['saved_ci']))} | {twins.num(r['saved_per_spend'])} |")
    lines += [
        "",
        "How to read it. Customers are grouped by the one action they got in the period "
        "(*mixed*: more than one kind); their revenue saved is exact per customer against the "
        "no-action twin. An action whose saved-per-spend is below 1 does not pay for itself in "
        "this world, whoever is targeted with it.",
    ]
    power = numbers.get("power")
    if power is not None and not power.is_empty():
        lines += [
            "",
            "## What the uplift model could learn from (randomized exploration arms)",
            "",
            "| action | explored, treated | explored, no action | smallest detectable "
            "retention uplift (95%, 80% power) | true mean effect on them (oracle churn "
            "reduction) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for r in power.iter_rows(named=True):
            lines.append(f"| {r['action']} | {r['treated_n']:,} | {r['control_n']:,} | "
                         f"{twins.pct(r['mde'])} | {twins.pct(r['true_effect'])} |")
        lines += [
            "",
            "How to read it. The uplift model learns per-customer effects from these arms (the "
            "warm-up's pilot and the 5% exploration share, measured as windows closed). When "
            "the true effects are far below what the arms can detect even on average, no "
            "learner can rank customers by them, and the policy's valuation is mostly noise.",
        ]
    lines += [
        "",
        "## Uplift measured by the pipeline vs the true effect",
        "",
        f"Campaigns {', '.join(str(d) for d in numbers['measured_days']) or 'none'} (outcome "
        f"window {numbers['window']} days, closed before {last}). Intervals from arms of fewer "
        f"than {MIN_ARM} customers are shown but not judged.",
        "",
        "| policy | action | treated / control | measured uplift [95% CI] | true uplift (same "
        "treated, vs twin) | oracle churn reduction |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in POLICIES:
        table = numbers[name].get("by_action_uplift")
        if table is not None:
            lines += twins.uplift_rows(table, name, ("action",))
    lines += [
        "",
        "Per campaign day:",
        "",
        "| policy | campaign | action | treated / control | measured uplift [95% CI] | true "
        "uplift | oracle churn reduction |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in POLICIES:
        table = numbers[name].get("by_campaign_uplift")
        if table is not None:
            lines += twins.uplift_rows(table, name, ("snapshot_date", "action"))
    lines += [
        "",
        "How to read it. *Measured uplift*: the pipeline's own estimate (`decisions.outcomes`): "
        "retention (a paid order in the window after the decision) of the treated minus that of "
        "the randomized control hold-out, with its normal 95% interval. *True uplift*: for the "
        "same treated customer-windows, retained in the policy world minus retained in the "
        "no-action world: the same customers with the same draws, so exact. *Oracle churn "
        "reduction*: the truth's expected 30-day churn reduction for them (survival, not "
        "retention: retention also needs an order, so it is the larger of the two).",
        "",
        "## Steps",
        "",
        "| decision day | " + " | ".join(f"{twins.POLICY_LABELS[p]}: treated / control / spend"
                                         for p in POLICIES) + " |",
        "| --- |" + " ---: |" * len(POLICIES),
    ]
    for index, day in enumerate(days):
        cells = [numbers["steps"][p][index] for p in POLICIES]
        lines.append(f"| {day} | " + " | ".join(
            f"{c['treated']:,} / {c['control']:,} / {c['spend']:,.2f}" for c in cells) + " |")
    log = numbers.get("uplift_log") or []
    if log:
        lines += [
            "",
            "## The uplift model as it learned (the uplift world)",
            "",
            "| before deciding | campaigns measured | status | training rows | held-out Qini: "
            "model | held-out Qini: churn risk |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for entry in log:
            lines.append(
                f"| {entry['day']} | {entry['campaigns']} | {entry.get('status')} | "
                f"{entry.get('training_rows') if entry.get('training_rows') is not None else '–'} | "
                f"{twins.num(_float(entry.get('holdout_qini_model')), 4)} | "
                f"{twins.num(_float(entry.get('holdout_qini_churn_risk')), 4)} |")
        lines += [
            "",
            "Each step the uplift world measures the campaigns whose outcome window has closed "
            "and retrains `ml/uplift_model`. A model that passes its gate (held-out Qini above "
            "random targeting and above ranking by churn risk) becomes the champion the budget "
            "policy values actions with until another one passes; a refused one changes "
            "nothing. Before any model passed, the policy used save rates, exactly as the "
            "save-rate world does.",
        ]
    return "\n".join(lines) + "\n"


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m churn_assets.lab.loop",
        description="The closed-loop experiment: the uplift budget policy, the rule policy and "
        "the save-rate budget policy on one simulated world, judged against its exact "
        "counterfactual.")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=date.fromisoformat, default=SimConfig.start)
    parser.add_argument("--warmup-days", type=int, default=150)
    parser.add_argument("--pilot-days", type=int, default=0,
                        help="days before the end of the warm-up with a weekly randomized pilot "
                        "campaign, so the uplift model learns from the start (default 0: none)")
    parser.add_argument("--step-days", type=int, default=7)
    parser.add_argument("--budget", type=float, default=500.0, help="daily budget of every policy")
    parser.add_argument("--horizon-days", type=int, default=LoopConfig.horizon_days,
                        help="[labels] horizon_days of the experiment (default 60: the default "
                        "90 cannot train on a 150-day warm-up)")
    parser.add_argument("--steps", type=int, help="at most this many decision days "
                        "(default: every step until the end)")
    parser.add_argument("--auc-floor", type=float,
                        help="[model] auc_floor of the experiment (default: the gate's 0.80)")
    parser.add_argument("--out", type=Path,
                        help="report (default $CHURN_HOME/reports/loop_experiment.md)")
    parser.add_argument("--home", type=Path,
                        help="where the worlds go (default $CHURN_HOME/loop_experiment)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worlds run at once after the warm-up, each in its own process "
                        "(default 2: the machine's cores; 1 runs them one after another)")
    parser.add_argument("--report-only", action="store_true",
                        help="judge the worlds a finished run left under --home again and "
                        "rewrite the report, without running anything (same flags as the run)")
    parser.add_argument("--force", action="store_true",
                        help="replace an earlier experiment under --home")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")  # Dagster's beta/supersession notes, once per run
    paths = Paths.from_env()
    config = LoopConfig(customers=args.customers, days=args.days, seed=args.seed,
                        start=args.start, warmup_days=args.warmup_days,
                        step_days=args.step_days, budget=args.budget,
                        horizon_days=args.horizon_days, steps=args.steps,
                        auc_floor=args.auc_floor, pilot_days=args.pilot_days)
    out = args.out or paths.reports / "loop_experiment.md"
    home = args.home or paths.home / "loop_experiment"
    command = shlex.join(["python", "-m", "churn_assets.lab.loop", *argv])
    try:
        if args.report_only:
            result = report_loop(config, home, out=out, command=command)
        else:
            result = run_loop(config, home, out=out, command=command, force=args.force,
                              workers=args.workers)
    except (LoopError, RunError, ValueError) as exc:
        print(f"churn_assets.lab.loop: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(result.report)
    print(f"report written to {out}")
    return 0


__all__ = ["LoopConfig", "LoopError", "LoopResult", "main", "report_loop", "run_loop"]

if __name__ == "__main__":
    sys.exit(main())
