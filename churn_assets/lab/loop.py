"""The closed-loop experiment: the budget policy against the rule policy on one simulated world,
judged by the simulator's truth.

    python -m churn_assets.lab.loop [--customers 3000 --days 240 --seed 42 --warmup-days 150
                                 --step-days 7 --budget 500 --horizon-days 60 --steps N
                                 --auc-floor F --out reports/loop_experiment.md --home DIR]

1. **Warm-up**: the default simulated world (``SimConfig`` defaults except the flags) through
   day ``warmup-days``; the pipeline runs on it (``churn_daily``, labels, training) until a
   champion model exists.
2. **Three worlds** copied from the warm-up, each with its own Dagster instance: ``none`` (no
   action ever), ``budget`` and ``rules`` (``[decisions.policy] kind``, same ``daily_budget``).
   Every ``step-days`` the policy worlds ingest the new drops, score and decide on that day (the
   ``churn_scoring`` job), and the simulator runs on to the next decision day executing the
   treated decisions (a decision of day D on D + 1, as ``churn-assets simulate
   --apply-actions``). Only the decision day itself is decided: a decision for a day already
   simulated past could not be executed any more (the simulator refuses to rewrite the past).
3. **Outcomes** (``churn_outcomes``) for the decision days whose outcome window has passed.
4. **Truth**: same seed, so the no-action world is the counterfactual. Revenue saved = net
   revenue (paid charges + refunds, gold ``daily_activity`` from silver payments) after the
   warm-up in a policy world minus in the no-action world; churners prevented from the truth's
   churn dates. The worlds share every random draw until the actions first change who churns;
   from then on every customer's path is redrawn, so the totals carry noise, given here as a
   95% interval over customers.
5. **Uplift**: the pipeline's measured uplift (treated against its control hold-out) per action,
   next to the true effect on the same treated customers.

The report (markdown) goes to ``--out`` (default ``$CHURN_HOME/reports/loop_experiment.md``)
and is printed. The worlds stay under ``--home`` (default ``$CHURN_HOME/loop_experiment``).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from churn_assets import catalog
from churn_assets.automation import (
    DAILY_JOB,
    LABELS_JOB,
    OUTCOMES_JOB,
    SCORING_JOB,
    TRAINING_JOB,
)
from churn_assets.decisions.uplift import outcomes_from_activity, uplift
from churn_assets.definitions import build_definitions, daily_partitions
from churn_assets.ingest.landing import list_drops
from churn_assets.lab.runner import RunError, run_once, run_range
from churn_assets.settings import Paths, Settings, load_settings
from churn_assets.simulator import SimConfig, simulate
from churn_assets.simulator.loop import (
    check_same_history,
    decided_actions,
    read_stamp,
    simulation_stamp,
)
from churn_assets.steps.reads import read_table

POLICIES = ("budget", "rules")
WORLDS = ("none", *POLICIES)
# One Dagster run per range the loop asks for (the assets still commit day by day).
DAYS_PER_RUN = 400
BOOTSTRAP = 2000
Z95 = 1.959964


class LoopError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoopConfig:
    """The experiment. ``settings`` adds or overrides ``settings.toml`` keys of every world, by
    dotted section: ``{"model": {"training_days": 20}, "scoring": {...}}``."""

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
    settings: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.warmup_days < self.days:
            raise ValueError(f"--warmup-days must be in 1 .. {self.days - 1} (--days)")
        if self.step_days < 1:
            raise ValueError("--step-days must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError("--steps must be at least 1")

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

    def sections(self, kind: str | None = None) -> dict[str, dict]:
        sections: dict[str, dict] = {
            "labels": {"horizon_days": self.horizon_days},
            "decisions.policy": {"daily_budget": self.budget},
        }
        if self.auc_floor is not None:
            sections["model"] = {"auc_floor": self.auc_floor}
        for name, values in self.settings.items():
            sections.setdefault(name, {}).update(values)
        if kind is not None:
            sections["decisions.policy"]["kind"] = kind
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
        if apply_actions:
            table = catalog.ACTIONS.full_name
            actions = decided_actions(read_table(self.store, table),
                                      self.store.location(table))[0]
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

    def train(self) -> dict:
        """Labels for every day whose window has landed, then the training job; the churn
        model's metadata. Raises ``LoopError`` when no champion exists afterwards."""
        labelled_through = self.config.warmup_end - timedelta(days=self.settings.labels.horizon_days)
        if labelled_through < self.config.start:
            raise LoopError(
                f"no labelled day: a {self.settings.labels.horizon_days}-day label horizon needs "
                f"more than {self.config.warmup_days} warm-up days (--horizon-days, --warmup-days)")
        self.run(LABELS_JOB, self.config.start, labelled_through)
        try:
            result = run_once(self.defs, TRAINING_JOB, self.instance)
        except RunError as exc:
            raise LoopError(f"the warm-up could not train the churn model: {exc}") from exc
        meta = {}
        for event in result.get_asset_materialization_events():
            found = {k: v.value for k, v in event.materialization.metadata.items()}
            if "model_version" in found:
                meta = found
        if self.defs.resources["mlflow"].champion_version() is None:
            raise LoopError(
                f"no champion model after the warm-up: the gate said '{meta.get('gate')}' "
                f"(validation ROC-AUC {meta.get('val_roc_auc')}, [model] auc_floor "
                f"{self.settings.model.auc_floor}). Nothing can be scored; lower the floor with "
                "--auc-floor (the report says so) or lengthen --warmup-days.")
        return meta

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


@dataclass
class LoopResult:
    config: LoopConfig
    homes: dict[str, Paths]
    report: str
    numbers: dict
    seconds: float


def run_loop(config: LoopConfig, home: Path, out: Path | None = None,
             command: str | None = None, force: bool = False,
             say: Callable[[str], None] = print) -> LoopResult:
    """Run the whole experiment under ``home`` (warmup/, none/, budget/, rules/)."""
    began = time.perf_counter()
    home = Path(home).resolve()
    if home.exists() and any(home.iterdir()):
        if not force:
            raise LoopError(f"{home} is not empty: pass --force to replace the experiment there, "
                            "or --home another directory")
        for name in ("warmup", *WORLDS):
            shutil.rmtree(home / name, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    days = config.decision_days()
    w_end = config.warmup_end
    say(f"closed loop: {config.customers:,} customers, {config.days} days from {config.start} "
        f"(seed {config.seed}); warm-up through {w_end}; {len(days)} decision days every "
        f"{config.step_days} days ({days[0]} .. {days[-1]}); daily budget {config.budget:g}; "
        f"worlds under {home}")

    # 1. warm-up
    clock = time.perf_counter()
    warm = World("warmup", home / "warmup", config, config.sections())
    warm.simulate_to(w_end, apply_actions=False)
    warm.ingest(w_end)
    say(f"[warm-up] simulated and ingested {config.start} .. {w_end} "
        f"({time.perf_counter() - clock:.0f}s); training")
    model = warm.train()
    say(f"[warm-up] churn_model v{model.get('model_version')}: validation ROC-AUC "
        f"{model.get('val_roc_auc')} (baseline {model.get('baseline_val_roc_auc')}); gate: "
        f"{model.get('gate')} ({time.perf_counter() - clock:.0f}s)")
    warm.close()

    # 2. three worlds from the warm-up
    worlds: dict[str, World] = {}
    for name in WORLDS:
        shutil.copytree(warm.paths.home, home / name)
        worlds[name] = World(name, home / name, config,
                             config.sections(None if name == "none" else name), seen=warm.seen)
    steps: dict[str, list[dict]] = {name: [] for name in POLICIES}
    for name in POLICIES:
        world = worlds[name]
        for index, day in enumerate(days):
            clock = time.perf_counter()
            world.ingest(day)
            world.run(SCORING_JOB, day, day)
            decided = world.table(catalog.ACTIONS.full_name).filter(pl.col("snapshot_date") == day)
            treated = decided.filter(~pl.col("control"))
            until = days[index + 1] if index + 1 < len(days) else config.end
            executed = world.simulate_to(until, apply_actions=True)
            step = {"day": day, "treated": treated.height,
                    "control": decided.height - treated.height,
                    "spend": float(treated["cost"].sum()) if treated.height else 0.0,
                    "seconds": time.perf_counter() - clock}
            steps[name].append(step)
            say(f"[{name}] step {index + 1}/{len(days)}: decided {day}: {step['treated']:,} "
                f"treated + {step['control']:,} control, spend {step['spend']:.2f}; simulated "
                f"through {until} ({executed:,} actions executed so far) "
                f"({step['seconds']:.0f}s)")
        clock = time.perf_counter()
        world.ingest(config.end)
        say(f"[{name}] ingested through {config.end} ({time.perf_counter() - clock:.0f}s)")
    clock = time.perf_counter()
    worlds["none"].simulate_to(config.end, apply_actions=False)
    worlds["none"].ingest(config.end)
    say(f"[none] simulated and ingested through {config.end} without actions "
        f"({time.perf_counter() - clock:.0f}s)")

    # 3. outcomes of the decision days whose window has passed
    window = worlds["budget"].settings.scoring.outcome_window_days
    measured_days = [d for d in days if d + timedelta(days=window) <= config.end]
    if measured_days:
        for name in POLICIES:
            clock = time.perf_counter()
            worlds[name].run(OUTCOMES_JOB, measured_days[0], measured_days[-1])
            say(f"[{name}] outcomes of {len(measured_days)} decision days "
                f"({measured_days[0]} .. {measured_days[-1]}, {window}-day window) "
                f"({time.perf_counter() - clock:.0f}s)")
    else:
        say(f"no decision day has a complete {window}-day outcome window before {config.end}")

    # 4-5. judge by the truth
    numbers = judge(config, worlds, measured_days, window)
    numbers["model"] = {k: model.get(k) for k in ("model_version", "val_roc_auc",
                                                  "baseline_val_roc_auc", "val_ece", "gate")}
    numbers["steps"] = steps
    numbers["auc_floor"] = warm.settings.model.auc_floor
    numbers["settings"] = worlds["budget"].settings
    for world in worlds.values():
        world.close()
    seconds = time.perf_counter() - began
    report = render(config, numbers, command, seconds, home)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    return LoopResult(config, {n: w.paths for n, w in worlds.items()} | {"warmup": warm.paths},
                      report, numbers, seconds)


# ---------------------------------------------------------------- judging by the truth


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


def hazards(paths: Paths, first: date, last: date) -> pl.DataFrame:
    files = sorted(f for f in (paths.truth / "hazard").glob("*.parquet")
                   if first <= date.fromisoformat(f.stem) <= last)
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def revenue_rates(world: World, warmup_end: date, days: int = 60) -> pl.DataFrame:
    """Each customer's net revenue per day over the warm-up's last ``days`` days (or since
    signup), from a world's ``daily_activity``: the same in every world (before any action)."""
    first = warmup_end - timedelta(days=days - 1)
    revenue = world.table(catalog.DAILY_ACTIVITY.full_name).filter(
        pl.col("event_date").is_between(first, warmup_end)).group_by("customer_id").agg(
        revenue=pl.col("revenue").sum())
    signup = pl.read_parquet(world.paths.truth / "customers.parquet").select(
        "customer_id", "signup_date")
    return signup.join(revenue, on="customer_id", how="left").select(
        "customer_id",
        rate=pl.col("revenue").fill_null(0.0) / pl.min_horizontal(
            pl.lit(days), (pl.lit(warmup_end) - pl.col("signup_date")).dt.total_days() + 1
        ).clip(1, days),
    )


def expected_revenue_kept(truth: pl.DataFrame, rates: pl.DataFrame, last: date) -> float:
    """First order: every customer-day's removed hazard times the revenue a churn that day
    would have lost (the customer's warm-up revenue rate times the days left in the period)."""
    if truth.is_empty():
        return 0.0
    acted = truth.filter(pl.col("hazard_untreated") > pl.col("hazard")).join(
        rates, on="customer_id", how="left")
    return float(acted.select(
        ((pl.col("hazard_untreated") - pl.col("hazard")) * pl.col("rate").fill_null(0.0)
         * (pl.lit(last) - pl.col("day")).dt.total_days()).sum()).item() or 0.0)


def total_with_ci(diff: np.ndarray) -> tuple[float, float]:
    """The sum of per-customer differences and the half-width of its 95% interval, treating
    customers' paths after the worlds diverge as independent draws."""
    if diff.size < 2:
        return float(diff.sum()), float("nan")
    return float(diff.sum()), Z95 * math.sqrt(diff.size) * float(diff.std(ddof=1))


def judge(config: LoopConfig, worlds: dict[str, World], measured_days: list[date],
          window: int) -> dict:
    first, last = config.warmup_end + timedelta(days=1), config.end
    base = churned_between(worlds["none"].paths, first, last).join(
        revenue_by_customer(worlds["none"], first, last), on="customer_id", how="left")
    base = base.select("customer_id", churned_none=pl.col("churned"),
                       revenue_none=pl.col("revenue").fill_null(0.0),
                       orders_none=pl.col("orders").fill_null(0))
    numbers: dict = {"period": (first, last), "measured_days": measured_days, "window": window,
                     "none": {"revenue": float(base["revenue_none"].sum()),
                              "orders": int(base["orders_none"].sum()),
                              "churned": int(base["churned_none"].sum())}}
    per_order = _ratio(numbers["none"]["revenue"], numbers["none"]["orders"])
    numbers["none"]["revenue_per_order"] = per_order
    none_truth = hazards(worlds["none"].paths, first, last)
    numbers["none"]["treated_customer_days"] = (
        int(none_truth["treated"].sum()) if none_truth.height else 0)
    rates = revenue_rates(worlds["none"], config.warmup_end)
    diffs, order_diffs = {}, {}
    for name in POLICIES:
        world = worlds[name]
        frame = base.join(churned_between(world.paths, first, last), on="customer_id").join(
            revenue_by_customer(world, first, last), on="customer_id", how="left").with_columns(
            pl.col("revenue").fill_null(0.0), pl.col("orders").fill_null(0))
        saved = (frame["revenue"] - frame["revenue_none"]).to_numpy()
        orders = (frame["orders"] - frame["orders_none"]).to_numpy().astype(float)
        order_diffs[name] = orders
        orders_saved = total_with_ci(orders)
        prevented = (frame["churned_none"].cast(pl.Int64) - frame["churned"].cast(pl.Int64)
                     ).to_numpy().astype(float)
        diffs[name] = saved
        actions = world.table(catalog.ACTIONS.full_name)
        treated = actions.filter(~pl.col("control"))
        per_day = treated.group_by("snapshot_date").agg(pl.col("cost").sum())
        truth = hazards(world.paths, first, last)
        contacted = truth.filter(pl.col("treated"))
        numbers[name] = {
            "revenue": float(frame["revenue"].sum()),
            "churned": int(frame["churned"].sum()),
            "saved": total_with_ci(saved),
            "orders": int(frame["orders"].sum()),
            "orders_saved": orders_saved,
            "saved_via_orders": (orders_saved[0] * per_order, orders_saved[1] * per_order),
            "prevented": total_with_ci(prevented),
            # First order: the expected churn events the actions removed, day by day.
            "prevented_expected": float((truth["hazard_untreated"] - truth["hazard"]).sum())
            if truth.height else 0.0,
            "kept_expected": expected_revenue_kept(truth, rates, last),
            "spend": float(treated["cost"].sum()) if treated.height else 0.0,
            "max_day_spend": float(per_day["cost"].max()) if per_day.height else 0.0,
            "decision_days": int(per_day.height),
            "treated": treated.height,
            "control": actions.height - treated.height,
            "customers_treated": treated["customer_id"].n_unique() if treated.height else 0,
            "by_action": dict(treated.group_by("action").agg(pl.len()).sort("action").iter_rows())
            if treated.height else {},
            "customers_contacted_truth": contacted["customer_id"].n_unique()
            if contacted.height else 0,
        }
        numbers[name]["uplift"], numbers[name]["first_campaign"] = uplift_against_truth(
            world, worlds["none"], measured_days, window)
    numbers["budget_minus_rules"] = total_with_ci(diffs["budget"] - diffs["rules"])
    numbers["expected_ratio"] = {
        "prevented": _ratio(numbers["budget"]["prevented_expected"],
                            numbers["rules"]["prevented_expected"]),
        "kept": _ratio(numbers["budget"]["kept_expected"], numbers["rules"]["kept_expected"]),
    }
    numbers["ratio"] = ratio_interval(diffs["budget"], diffs["rules"],
                                      numbers["budget"]["spend"], numbers["rules"]["spend"])
    numbers["orders_ratio"] = ratio_interval(order_diffs["budget"], order_diffs["rules"],
                                             numbers["budget"]["spend"],
                                             numbers["rules"]["spend"])
    numbers["orders_budget_minus_rules"] = total_with_ci(order_diffs["budget"]
                                                         - order_diffs["rules"])
    return numbers


def ratio_interval(budget: np.ndarray, rules: np.ndarray, spend_budget: float,
                   spend_rules: float) -> dict:
    """Revenue saved budget / rules, and per unit spend, with a bootstrap over customers."""
    rng = np.random.default_rng(0)
    n = budget.size
    out = {"saved": _ratio(budget.sum(), rules.sum()), "rules_total": float(rules.sum()),
           "per_spend": _ratio(budget.sum() / spend_budget if spend_budget else float("nan"),
                               rules.sum() / spend_rules if spend_rules else float("nan"))}
    if n < 2:
        return out | {"saved_ci": (float("nan"), float("nan"))}
    draws = rng.integers(0, n, size=(BOOTSTRAP, n))
    sums_b, sums_r = budget[draws].sum(axis=1), rules[draws].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sums_b / sums_r
    # A ratio is meaningful only where the rules' saving is positive in the resample.
    positive = sums_r > 0
    out["rules_positive_share"] = float(positive.mean())
    out["saved_ci"] = (tuple(float(q) for q in np.quantile(ratios[positive], [0.025, 0.975]))
                       if positive.mean() >= 0.975 else (float("nan"), float("nan")))
    return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b and math.isfinite(b) else float("nan")


def uplift_against_truth(world: World, none: World, measured_days: list[date],
                         window: int) -> tuple[pl.DataFrame, dict]:
    """Per action: the pipeline's measured uplift (treated vs control in ``world``) next to the
    true effect on the same rows: retained in ``world`` minus retained in the no-action world
    (same customer, same window), the truth's treatment effect and survival gain. And the same
    for the first campaign alone, all actions pooled: it was selected before the worlds
    diverged, so its no-action comparison is a clean counterfactual."""
    outcomes = world.table(catalog.OUTCOMES.full_name)
    if outcomes.is_empty() or not measured_days:
        return pl.DataFrame(), {}
    outcomes = outcomes.filter(pl.col("snapshot_date").is_in(measured_days))
    measured = uplift(outcomes, by=("action",))
    first = min(measured_days) + timedelta(days=1)
    last = max(measured_days) + timedelta(days=window)
    activity_none = none.table(catalog.DAILY_ACTIVITY.full_name).filter(
        pl.col("event_date").is_between(first, last))
    counterfactual = outcomes_from_activity(outcomes, activity_none, window).select(
        "customer_id", "snapshot_date", retained_none="retained")
    rows = outcomes.join(counterfactual, on=["customer_id", "snapshot_date"], how="left").with_columns(
        pl.col("retained_none").fill_null(False))
    rows = rows.with_columns(
        true_diff=pl.col("retained").cast(pl.Float64) - pl.col("retained_none").cast(pl.Float64))
    truth = hazards(world.paths, first, last).select(
        "customer_id", "day", "hazard", "hazard_untreated", "treatment_effect")
    # The customers' hazards over their outcome window (days they were still at risk).
    windowed = rows.select("customer_id", "snapshot_date").join(truth, on="customer_id").filter(
        (pl.col("day") > pl.col("snapshot_date"))
        & (pl.col("day") <= pl.col("snapshot_date") + pl.duration(days=window)))
    per_row = windowed.group_by("customer_id", "snapshot_date").agg(
        survival_gain=(1 - pl.col("hazard")).product() - (1 - pl.col("hazard_untreated")).product(),
        # The day after the contact is the first day the action acts on.
        effect=pl.col("treatment_effect").filter(
            pl.col("day") == pl.col("snapshot_date") + pl.duration(days=2)).first(),
    )
    rows = rows.join(per_row, on=["customer_id", "snapshot_date"], how="left")

    def arm(control: bool, prefix: str) -> list[pl.Expr]:
        keep = pl.col("control") == control
        diff = pl.col("true_diff").filter(keep)
        return [
            diff.mean().alias(f"{prefix}_cf"),
            (Z95 * diff.std(ddof=1) / diff.len().sqrt()).alias(f"{prefix}_cf_half"),
        ]

    true = rows.group_by("action").agg(
        *arm(False, "treated"), *arm(True, "control"),
        treated_retention_none=pl.col("retained_none").filter(~pl.col("control")).cast(
            pl.Float64).mean(),
        effect=pl.col("effect").filter(~pl.col("control")).mean(),
        responders=(pl.col("effect").filter(~pl.col("control")) > 0).cast(pl.Float64).mean(),
        survival_gain=pl.col("survival_gain").filter(~pl.col("control")).mean(),
    )
    table = measured.join(true, on="action", how="left").sort("action")
    first_day = rows.filter(pl.col("snapshot_date") == min(measured_days))
    first_campaign = {"day": min(measured_days)}
    for control, prefix in ((False, "treated"), (True, "control")):
        diff = first_day.filter(pl.col("control") == control)["true_diff"].to_numpy()
        first_campaign[prefix] = (diff.size, float(diff.mean()) if diff.size else float("nan"),
                                  Z95 * float(diff.std(ddof=1)) / math.sqrt(diff.size)
                                  if diff.size > 1 else float("nan"))
    pooled = uplift(first_day.with_columns(all=pl.lit("all")), by=("all",))
    first_campaign["measured"] = pooled.row(0, named=True) if pooled.height else {}
    return table, first_campaign


# ---------------------------------------------------------------- the report


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _pm(pair: tuple[float, float], fmt: str = "{:,.0f}") -> str:
    value, half = pair
    return f"{fmt.format(value)} ± {fmt.format(half)}" if math.isfinite(half) else fmt.format(value)


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.1%}"


def render(config: LoopConfig, numbers: dict, command: str | None, seconds: float,
           home: Path) -> str:
    settings: Settings = numbers["settings"]
    policy = settings.decisions.policy
    first, last = numbers["period"]
    b, r, none = numbers["budget"], numbers["rules"], numbers["none"]
    ratio = numbers["ratio"]
    lines = [
        "# Closed loop: budget policy vs rule policy, judged by the simulator's truth",
        "",
        f"`{command or 'run_loop(' + repr(config) + ')'}`",
        "",
        f"World: {config.customers:,} customers, {config.days} days from {config.start}, seed "
        f"{config.seed}, default dirt. Warm-up through {config.warmup_end}; then "
        f"{len(numbers['steps']['budget'])} decision days every {config.step_days} days "
        f"(decided on day D from data through D, executed on D+1). Judged over {first} .. "
        f"{last}. Run time {seconds / 60:.1f} min; worlds under `{home}`.",
        "",
        f"Pipeline settings: `[labels] horizon_days = {settings.labels.horizon_days}`"
        + (" (the default 90 cannot train on this warm-up)" if settings.labels.horizon_days != 90
           else "")
        + f", `[model] auc_floor = {numbers['auc_floor']}`"
        + (" (lowered for this experiment)" if config.auc_floor is not None
           and config.auc_floor < 0.80 else "")
        + f", `daily_budget = {policy.daily_budget:g}`, `cooldown_days = "
        f"{policy.cooldown_days}`, `control_share = {policy.control_share}`, "
        f"`outcome_window_days = {numbers['window']}`; save rates as configured (no outcome "
        "was measured while the loop ran, so the budget policy learned nothing). Champion: "
        f"churn_model v{numbers['model']['model_version']}, validation ROC-AUC "
        f"{numbers['model']['val_roc_auc']} (baseline {numbers['model']['baseline_val_roc_auc']}),"
        " trained once on the warm-up.",
        "",
        *answer(numbers),
        "## Revenue saved at the same spend (truth)",
        "",
        "| | no action | budget | rules |",
        "| --- | ---: | ---: | ---: |",
        f"| spend (treated cost in decisions.actions) | 0 | {_money(b['spend'])} | "
        f"{_money(r['spend'])} |",
        f"| most spent on one decision day | 0 | {b['max_day_spend']:,.2f} | "
        f"{r['max_day_spend']:,.2f} |",
        f"| treated (control) rows | – | {b['treated']:,} ({b['control']:,}) | "
        f"{r['treated']:,} ({r['control']:,}) |",
        f"| treated rows by action | – | {_actions(b['by_action'])} | "
        f"{_actions(r['by_action'])} |",
        f"| net revenue {first} .. {last} | {_money(none['revenue'])} | {_money(b['revenue'])} | "
        f"{_money(r['revenue'])} |",
        f"| **revenue saved** (vs no action, ±95%) | – | **{_pm(b['saved'])}** | "
        f"**{_pm(r['saved'])}** |",
        f"| saved per unit spend | – | {_per(b)} | {_per(r)} |",
        f"| saved minus spend | – | {_money(b['saved'][0] - b['spend'])} | "
        f"{_money(r['saved'][0] - r['spend'])} |",
        f"| paid orders in the period | {none['orders']:,} | {b['orders']:,} | {r['orders']:,} |",
        f"| orders saved (vs no action, ±95%) | – | {_pm(b['orders_saved'])} | "
        f"{_pm(r['orders_saved'])} |",
        f"| revenue saved via orders (× {none['revenue_per_order']:,.2f} per order, ±95%) | – | "
        f"{_pm(b['saved_via_orders'])} | {_pm(r['saved_via_orders'])} |",
        f"| customers churned in the period (truth) | {none['churned']:,} | {b['churned']:,} | "
        f"{r['churned']:,} |",
        f"| churners prevented (vs no action, ±95%) | – | {_pm(b['prevented'])} | "
        f"{_pm(r['prevented'])} |",
        f"| churns prevented, expected from the truth's hazards | – | "
        f"{b['prevented_expected']:.1f} | {r['prevented_expected']:.1f} |",
        f"| revenue kept, expected from the truth's hazards | – | "
        f"{_money(b['kept_expected'])} | {_money(r['kept_expected'])} |",
        "",
        f"**Ratio budget / rules of revenue saved: {_ratio_text(ratio)}**"
        + f"; of revenue saved per unit spend: {_num(ratio['per_spend'])}. Spends: budget "
        f"{_money(b['spend'])}, rules {_money(r['spend'])} "
        f"({_spend_gap(b['spend'], r['spend'])}). Budget minus rules, directly: "
        f"{_pm(numbers['budget_minus_rules'])}. Of orders saved: "
        f"{_ratio_text(numbers['orders_ratio'])} (budget minus rules "
        f"{_pm(numbers['orders_budget_minus_rules'])} orders). From the truth's hazards (no "
        f"redraw noise), budget / rules: churns prevented "
        f"{_num(numbers['expected_ratio']['prevented'])}, revenue kept "
        f"{_num(numbers['expected_ratio']['kept'])}.",
        "",
        "How to read it. *Revenue saved* is the policy world's net revenue (paid charges + "
        "refunds, from gold `daily_activity` over silver payments) after the warm-up minus the "
        "no-action world's: same seed, so the difference is what the actions caused, in "
        "distribution. Voucher discounts are already deducted in that revenue, so *saved minus "
        "spend* counts them twice (a floor). Same seed does not mean the same draws, though: "
        "the actions' marketing rows consume the simulator's record stream, so from the day "
        "after the first contact every order's amount (and the dirt) is drawn anew for every "
        "customer, and once an action changes who churns, every customer's latent path is "
        "redrawn too. The totals therefore carry noise: the ± is a 95% interval treating "
        "customers as independent draws (conservative). *Orders saved* is free of the amount "
        "redraws (order counts come from the latent state), and *revenue saved via orders* "
        "prices them at the no-action world's net revenue per order. *Expected from "
        "the truth's hazards* is Σ(hazard_untreated − hazard) over the policy world's customer-"
        "days: the churns the actions removed in expectation, without that noise (first order); "
        "*revenue kept* weighs each by what a churn that day would have lost (the customer's "
        "net revenue per day over the warm-up's last 60 days times the days left in the "
        "period). Both are estimates from the truth, not observed money.",
        "",
        "## Uplift measured by the pipeline vs the true effect",
        "",
        f"Campaign days {', '.join(str(d) for d in numbers['measured_days']) or 'none'} (outcome "
        f"window {numbers['window']} days, complete before {last}).",
        "",
        "| policy | action | treated / control | measured uplift [95% CI] | true: vs no-action "
        "world [95%] | placebo: control vs no-action world | true: hazard removed (day after "
        "contact) | responders | true: survival gain in window |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in POLICIES:
        table = numbers[name]["uplift"]
        if table.is_empty():
            lines.append(f"| {name} | (no measured campaign) | | | | | | | |")
            continue
        for row in table.iter_rows(named=True):
            lines.append(
                f"| {name} | {row['action']} | {row['treated_n']:,} / {row['control_n']:,} | "
                f"{_pct(row['uplift'])} [{_pct(row['uplift_low'])}, {_pct(row['uplift_high'])}]"
                f" | {_pct(row['treated_cf'])} ± {_abs(row['treated_cf_half'])} | "
                f"{_pct(row['control_cf'])} ± {_abs(row['control_cf_half'])} | "
                f"{_share(row['effect'])} | {_share(row['responders'])} | "
                f"{_pct(row['survival_gain'])} |")
    lines.append("")
    for name in POLICIES:
        first_campaign = numbers[name].get("first_campaign") or {}
        if not first_campaign:
            continue
        pooled = first_campaign["measured"]
        n_t, cf_t, half_t = first_campaign["treated"]
        n_c, cf_c, half_c = first_campaign["control"]
        lines.append(
            f"- {name}, first campaign alone ({first_campaign['day']}, all actions, {n_t:,} "
            f"treated / {n_c:,} control): measured uplift {_pct(pooled.get('uplift'))} "
            f"[{_pct(pooled.get('uplift_low'))}, {_pct(pooled.get('uplift_high'))}]; true vs "
            f"the no-action world {_pct(cf_t)} ± {_abs(half_t)}; placebo (control) "
            f"{_pct(cf_c)} ± {_abs(half_c)}.")
    lines += [
        "",
        "How to read it. *Measured uplift*: the pipeline's own estimate (decisions.outcomes, "
        "`uplift`): retention (a paid order within the window after the decision) of the treated "
        "minus that of the randomized control hold-out the policy selected alike, with a normal "
        "95% interval. *True: vs no-action world*: for the same treated customer-windows, "
        "retained in the policy world minus retained in the no-action world (the same seed's "
        "counterfactual). It is exact only for the first campaign (decided before the worlds "
        "diverged); later customers were selected on a policy-world history the no-action world "
        "did not share, which the *placebo* column (the control arm, never treated, compared the "
        "same way) shows: it should be 0, and what it is, is that selection's bias. *Hazard "
        "removed*: the truth's treatment_effect, the share of the daily churn hazard the action "
        "removes, on the first day it acts (0 for non-responders; it fades afterwards); "
        "*responders* is the share of treated customers with a non-zero effect. *Survival gain*: "
        "the true increase in the probability of not churning over the window, "
        "Π(1 − hazard) − Π(1 − hazard_untreated) over the days the customer was at risk. "
        "Retention needs an order as well as survival, so the true retention effect is below the "
        "survival gain.",
        "",
        "## Steps",
        "",
        "| decision day | budget: treated / control / spend | rules: treated / control / spend |",
        "| --- | ---: | ---: |",
    ]
    for sb, sr in zip(numbers["steps"]["budget"], numbers["steps"]["rules"], strict=True):
        lines.append(f"| {sb['day']} | {sb['treated']:,} / {sb['control']:,} / "
                     f"{sb['spend']:,.2f} | {sr['treated']:,} / {sr['control']:,} / "
                     f"{sr['spend']:,.2f} |")
    return "\n".join(lines) + "\n"


def _ratio_text(ratio: dict) -> str:
    value = _num(ratio["saved"])
    low, high = ratio.get("saved_ci", (float("nan"), float("nan")))
    if math.isfinite(low):
        return f"{value} (95% bootstrap interval over customers {low:.2f} .. {high:.2f})"
    share = ratio.get("rules_positive_share", float("nan"))
    if ratio.get("rules_total", 1.0) <= 0:
        return (f"not meaningful ({value} as a number, but the rules' saving is not positive; "
                f"positive in {share:.0%} of resamples)")
    return (f"{value} (no interval: the rules' saving is not clearly above zero, positive in "
            f"{share:.0%} of resamples)")


def _covers(interval: tuple[float, float]) -> bool:
    value, half = interval
    return not math.isfinite(half) or abs(value) <= half


def answer(numbers: dict) -> list[str]:
    """The short answer: what the truth says about budget against rules, and about uplift."""
    b, r = numbers["budget"], numbers["rules"]
    expected = numbers["expected_ratio"]
    per_spend = _ratio(b["kept_expected"] / b["spend"] if b["spend"] else float("nan"),
                       r["kept_expected"] / r["spend"] if r["spend"] else float("nan"))
    noisy = all(_covers(x[k]) for x in (b, r) for k in ("saved", "prevented"))
    lines = [
        "## Answer",
        "",
        f"- Spend: budget {_money(b['spend'])}, rules {_money(r['spend'])} "
        f"({_spend_gap(b['spend'], r['spend'])}); neither passed the daily budget on any "
        f"decision day (most: {max(b['max_day_spend'], r['max_day_spend']):,.2f}).",
        f"- Revenue actually saved (policy world minus no-action world): budget "
        f"{_pm(b['saved'])}, rules {_pm(r['saved'])}; ratio budget / rules "
        f"{_ratio_text(numbers['ratio'])}. Churners prevented: budget {_pm(b['prevented'])}, "
        f"rules {_pm(r['prevented'])}."
        + (" None of these is distinguishable from zero: effects of this size drown in the "
           "simulator's redraws (see below)." if noisy else ""),
        f"- Without that noise (the truth's hazards, first order): churns prevented budget "
        f"{b['prevented_expected']:.1f} vs rules {r['prevented_expected']:.1f} (ratio "
        f"{_num(expected['prevented'])}); revenue kept {_money(b['kept_expected'])} vs "
        f"{_money(r['kept_expected'])} (ratio {_num(expected['kept'])}; per unit spend "
        f"{_num(per_spend)}).",
    ]
    for name in POLICIES:
        first_campaign = numbers[name].get("first_campaign") or {}
        if first_campaign and first_campaign.get("measured"):
            pooled = first_campaign["measured"]
            _, cf, half = first_campaign["treated"]
            lines.append(
                f"- {name}, first campaign ({first_campaign['day']}, the one with a clean "
                f"counterfactual): the pipeline measured a retention uplift of "
                f"{_pct(pooled.get('uplift'))} [{_pct(pooled.get('uplift_low'))}, "
                f"{_pct(pooled.get('uplift_high'))}]; the truth (same customers in the "
                f"no-action world) says {_pct(cf)} ± {_abs(half)}.")
    return lines + [""]


def _actions(by_action: dict) -> str:
    short = {"discount_voucher": "voucher", "reengagement_email": "email",
             "loyalty_reward": "loyalty"}
    return ", ".join(f"{short.get(a, a)} {n:,}" for a, n in by_action.items()) or "none"


def _per(numbers: dict) -> str:
    return f"{numbers['saved'][0] / numbers['spend']:.2f}" if numbers["spend"] else "–"


def _num(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "undefined"


def _abs(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _share(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _spend_gap(a: float, b: float) -> str:
    if not a or not b:
        return "one policy spent nothing"
    return f"budget spent {a / b - 1:+.1%} relative to rules"


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m churn_assets.lab.loop",
        description="The closed-loop experiment: budget vs rule policy on one simulated world, "
        "judged by the simulator's truth.")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=date.fromisoformat, default=SimConfig.start)
    parser.add_argument("--warmup-days", type=int, default=150)
    parser.add_argument("--step-days", type=int, default=7)
    parser.add_argument("--budget", type=float, default=500.0, help="daily budget of both policies")
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
                        auc_floor=args.auc_floor)
    out = args.out or paths.reports / "loop_experiment.md"
    home = args.home or paths.home / "loop_experiment"
    command = shlex.join(["python", "-m", "churn_assets.lab.loop", *argv])
    try:
        result = run_loop(config, home, out=out, command=command, force=args.force)
    except (LoopError, RunError, ValueError) as exc:
        print(f"churn_assets.lab.loop: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(result.report)
    print(f"report written to {out}")
    return 0


__all__ = ["LoopConfig", "LoopError", "LoopResult", "main", "run_loop"]

if __name__ == "__main__":
    sys.exit(main())
