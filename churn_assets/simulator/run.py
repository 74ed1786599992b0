"""Run the simulated business day by day: landing drops, ground truth, and a summary.

Each day is generated, dirtied and handed to one background writer thread, so serializing and
writing day ``t`` overlaps generating day ``t + 1``; a single writer keeps the order of drops
(and so every revision number) deterministic. Memory holds a day or two at a time, plus the few
late rows and re-drops still owed to later days.

Ground truth, under ``paths.truth`` (the pipeline never reads it):

- ``customers.parquet``: customer_id, signup_date, churn_date (null: still a customer; else
  the first day without activity, and the day an explicit cancellation is recorded),
  churn_kind (explicit | silent), segment, region,
  acquisition_channel and the latent traits (base engagement/satisfaction, drift, price
  sensitivity, responder, payment risk, frailty).
- ``hazard/<YYYY-MM-DD>.parquet``: for every customer at risk that day: hazard (after any
  retention action), hazard_untreated, engagement and satisfaction (0-1), treated (an action
  in the last 30 days, responder or not), treatment_effect (the share of the hazard the
  action removes that day; 0 for non-responders) and churned. And the oracle of what each
  action would do if the customer were contacted that day (a decision of snapshot day D is
  contacted on D + 1: its oracle is in ``hazard/<D+1>``): churn_probability_window (no action,
  over the next 30 days), revenue_rate (expected paid revenue per day), and per action
  ``effect_<action>``, ``churn_reduction_<action>``, ``revenue_kept_<action>``
  (``BusinessState._true_effects``).
- ``summary.json``: ``SimSummary.to_dict()``; ``state/``: the final ``BusinessState``.

A run can stop early (``until``) and a later run can go further into the same home: the
history is a pure function of the config and the actions, day by day. Every random draw is keyed
by (seed, purpose, day, customer, item) (``keyed``), not drawn from a shared stream: what a
customer does on a day depends only on the seed, the days before and the actions taken on that
customer, and the dirt on a row only on the row. So an action on customer C on day D changes C's
rows from D + 1 on (its own marketing row on D) and nothing else, dirt included: a world with
actions and its no-action twin are exact counterfactuals of each other, customer by customer.
Whatever is planned "for the end of the history" (late rows, re-drops owed past the last day,
the day new columns appear) follows ``config.days``, not ``until``. So the drops of days <= X are
byte-identical whether a run stops at X or later, and whatever actions are dated after X; rows
and re-drops owed to days after ``until`` are simply not written yet. With ``until``, the truth
describes the world on that day: hazard files through it, ``customers.parquet`` with churn (and
traits such as the segment) as of that day (a later churn is null), ``state/`` after it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from churn_assets.ingest.landing import (
    DOMAIN_FORMATS,
    SIMULATOR,
    SUFFIXES,
    DropError,
    find_drop,
    write_drop,
)
from churn_assets.settings import DOMAINS, Paths
from churn_assets.simulator import vocab as V
from churn_assets.simulator.config import SimConfig
from churn_assets.simulator.dirt import Dirt, Export
from churn_assets.simulator.domains import build_day
from churn_assets.simulator.state import BusinessState, DayPlan
from churn_assets.simulator.writer import Renderer

# What each action would do to each customer at risk, if contacted that day (the oracle).
ORACLE_COLUMNS = ("churn_probability_window", "revenue_rate", *(
    f"{kind}_{action}" for action in V.ACTIONS
    for kind in ("effect", "churn_reduction", "revenue_kept")))
# A day with more rows than this is written before the next one is generated (bounds memory).
BIG_DAY_ROWS = 2_000_000
DIRT_KINDS = ("duplicates", "late", "malformed", "bad_values", "nulls", "mixed_tz", "redrops",
              "redrop_missing_rows")


@dataclass(frozen=True)
class SimSummary:
    """What one simulation wrote.

    ``rows`` counts data rows (lines or Parquet rows, broken ones included) in the final revision
    of every drop; ``records`` counts the business's records before dirt. Over the whole history
    ``rows == records + duplicates`` per domain: late rows move between drops, they do not vanish.
    ``dirt[domain][kind]`` counts what was injected (kinds in ``DIRT_KINDS``; ``nulls`` and
    ``mixed_tz`` count cells, ``redrops`` count drops, the rest count rows).
    """

    days: int
    customers: int
    start: date
    churned: int
    churned_explicit: int
    rows: dict[str, int]
    records: dict[str, int]
    dirt: dict[str, dict[str, int]]
    redropped: tuple[tuple[str, date], ...] = ()
    switch_day: date | None = None
    # The last simulated day: ``start + days - 1`` unless the run stopped early.
    until: date | None = None
    seconds: float = field(default=0.0, compare=False)

    def dirt_totals(self) -> dict[str, int]:
        return {kind: sum(self.dirt[d][kind] for d in DOMAINS) for kind in DIRT_KINDS}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["switch_day"] = self.switch_day.isoformat() if self.switch_day else None
        out["until"] = self.until.isoformat() if self.until else None
        out["redropped"] = [[d, day.isoformat()] for d, day in self.redropped]
        out["dirt_totals"] = self.dirt_totals()
        out.pop("seconds")
        return out


def simulate(
    paths: Paths,
    config: SimConfig,
    actions: pl.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
    until: date | None = None,
) -> SimSummary:
    """Simulate ``config.days`` days (or through ``until``) into ``paths.landing``, and the ground
    truth into ``paths.truth``.

    ``actions`` (customer_id, day, action) are retention actions. ``day`` is the day the customer
    is contacted: the action is a marketing row (``RET-…`` campaign, 09:00-10:00) in that day's
    drop, and lowers the customer's hazard from ``day + 1`` on (that day's own hazard and churn
    are drawn before the contact). A decision made from data through day D is executed on
    ``day = D + 1``. Actions for customers not active that day (not yet signed up, or churned)
    are dropped; actions after ``until`` are not executed yet.

    ``until`` (a day in ``start .. start + days - 1``; default the last) stops the run after that
    day; the same ``config`` gives the same world whatever ``until`` (see the module docstring).
    ``progress(day_index, total_days)`` is called once per simulated day, 1-based, after that
    day's drops are on disk. Rerunning into the same landing zone, to the same or a later
    ``until``, leaves the drops already written unchanged (same bytes, same revision) and only
    adds what is new; the truth is rewritten.
    """
    started = time.perf_counter()
    last = _last_day_index(config, until)
    start_epoch = (config.start - date(1970, 1, 1)).days * 86400
    todo = _index_actions(actions, config)
    hazard_dir = paths.truth / "hazard"
    hazard_dir.mkdir(parents=True, exist_ok=True)
    resumed = _resume(paths, config, todo, last)
    if resumed is None:
        state = BusinessState(config.customers, config.days, start_epoch, config.seed)
        dirt = Dirt(config.dirt, config.days, state.keyed)
        progress_so_far = _Progress(first=0, owed=[], redropped=[])
        stale = hazard_dir.glob("*.parquet")
    else:
        state, dirt, progress_so_far = resumed
        stale = (f for f in hazard_dir.glob("*.parquet")
                 if (date.fromisoformat(f.stem) - config.start).days >= progress_so_far.first)
    for old in stale:
        old.unlink()
    static = {k: getattr(state, k) for k in ("first_name", "last_name", "region", "phone_number")}
    renderer = Renderer(config.customers, start_epoch, static)
    try:
        redropped = _run_days(paths, config, state, renderer, dirt, todo, progress, last,
                              progress_so_far)
    finally:
        renderer.close()

    counts = dirt.counts
    switch = dirt.switch_day
    summary = SimSummary(
        days=config.days,
        customers=config.customers,
        start=config.start,
        churned=int((state.churn_day >= 0).sum()),
        churned_explicit=int(state.churn_explicit.sum()),
        rows={d: counts[d]["rows"] for d in DOMAINS},
        records={d: counts[d]["records"] for d in DOMAINS},
        dirt={d: {k: counts[d][k] for k in DIRT_KINDS} for d in DOMAINS},
        redropped=tuple((domain, config.start + timedelta(days=t)) for domain, t in redropped),
        switch_day=None if switch is None or switch >= config.days else config.start + timedelta(days=switch),
        until=config.start + timedelta(days=last),
        seconds=time.perf_counter() - started,
    )
    _write_truth(paths, state, renderer, config, summary)
    return summary


@dataclass
class _Progress:
    """Where a run stands between days: the next day to simulate, the flawed drops whose
    complete version is still owed, and the re-drops done so far."""

    first: int
    owed: list[Export]
    redropped: list[tuple[str, int]]


def _run_days(paths, config: SimConfig, state: BusinessState, renderer: Renderer, dirt: Dirt,
              todo: dict, progress, last: int, done: _Progress) -> list[tuple[str, int]]:
    """The day loop from ``done.first`` through day index ``last``: generate and dirty in this
    thread, render and write in one writer thread.

    At most two days are in flight (one for very big days), so memory does not grow with the
    history. Returns the re-dropped (domain, day index) pairs in the order they were re-dropped.
    A run that stops before the end leaves a checkpoint for the next (``_resume``).
    """
    owed: list[Export] = list(done.owed)
    redropped: list[tuple[str, int]] = list(done.redropped)
    futures: list[Future] = []
    reported = done.first
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-writer") as writer:
        for t in range(done.first, last + 1):
            plan = state.step(t, todo.get(t))
            records = build_day(state, plan)
            exports = [
                e for e in (dirt.export(domain, t, records[domain]) for domain in DOMAINS)
                if e.domain in config.domains
            ]
            due = [e for e in owed if e.redrop_day == t]
            owed = [e for e in owed if e.redrop_day != t] + [e for e in exports if e.flawed is not None]
            redropped += [(e.domain, e.t) for e in due]
            hazard = _hazard_frame(renderer, plan, config.start)
            futures.append(writer.submit(_write_day, renderer, paths, config.start, t, exports, due, hazard))
            in_flight = 1 if sum(e.rows for e in exports) > BIG_DAY_ROWS else 2
            while (reported - done.first < len(futures)
                   and (len(futures) - (reported - done.first) > in_flight
                        or futures[reported - done.first].done())):
                futures[reported - done.first].result()
                reported += 1
                if progress:
                    progress(reported, last + 1)
        if last == config.days - 1:
            # Days whose re-drop would fall after the history are re-dropped at its end; a run
            # that stops earlier leaves every re-drop still owed to a later run.
            futures.append(writer.submit(_write_redrops, renderer, paths, config.start, owed))
            redropped += [(e.domain, e.t) for e in owed]
        for future in futures[reported - done.first:]:
            future.result()
    for day in range(reported, last + 1):
        if progress:
            progress(day + 1, last + 1)
    if last < config.days - 1:
        _save_checkpoint(paths, config, todo, _Progress(last + 1, owed, redropped), state, dirt)
    return redropped


CHECKPOINT = "resume.pkl"


def _actions_digest(todo: dict, through: int) -> str:
    """A digest of the actions executed on days ``0 .. through`` (the simulator's own index)."""
    digest = hashlib.sha256()
    for t in sorted(k for k in todo if k <= through):
        customers, codes = todo[t]
        digest.update(np.int64(t).tobytes())
        digest.update(np.ascontiguousarray(customers, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _save_checkpoint(paths: Paths, config: SimConfig, todo: dict, done: _Progress,
                     state: BusinessState, dirt: Dirt) -> None:
    """Everything a later run needs to go on from day ``done.first`` instead of day 0: the
    state, the dirt's late rows and counts, the owed re-drops; keyed draws carry no stream
    position, so going on gives the same bytes as one run."""
    folder = paths.truth / "state"
    folder.mkdir(parents=True, exist_ok=True)
    body = {"config": repr(config), "first": done.first,
            "actions": _actions_digest(todo, done.first - 1),
            "state": state, "dirt": dirt, "owed": done.owed, "redropped": done.redropped}
    tmp = folder / (CHECKPOINT + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(body, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(folder / CHECKPOINT)


def _resume(paths: Paths, config: SimConfig, todo: dict, last: int
            ) -> tuple[BusinessState, Dirt, _Progress] | None:
    """The checkpoint of an earlier run into this data root, if this run can go on from it: the
    same world, the same actions on the days it simulated, and not past ``last``. None means
    simulate from day 0 (always correct, only slower)."""
    path = paths.truth / "state" / CHECKPOINT
    try:
        with path.open("rb") as f:
            body = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    first = body.get("first", 0)
    if (body.get("config") != repr(config) or not 0 < first <= last + 1
            or body.get("actions") != _actions_digest(todo, first - 1)
            or not (paths.truth / "hazard" / f"{config.start + timedelta(days=first - 1)}.parquet").exists()):
        return None
    return body["state"], body["dirt"], _Progress(first, body["owed"], body["redropped"])


def _file_name(domain: str, day: date) -> str:
    return f"{domain}-{day.isoformat()}{SUFFIXES[DOMAIN_FORMATS[domain]]}"


def _write_day(renderer: Renderer, paths: Paths, start: date, t: int, exports: list[Export],
               due: list[Export], hazard: pl.DataFrame) -> None:
    day = start + timedelta(days=t)
    for e in exports:
        name = _file_name(e.domain, day)
        if e.flawed is None:
            content = renderer.file(e.domain, e.records, e.columns, e.broken)
        elif _holds(paths, e.domain, day, name,
                    lambda e=e: renderer.file(e.domain, e.records, e.columns, e.broken)):
            # An earlier run went past the re-drop day and left the complete version: writing
            # the flawed first version again would be a new revision of a finished drop.
            continue
        else:
            content = renderer.file(e.domain, e.flawed, e.columns, [])
        write_drop(paths.landing, e.domain, day, {name: content}, source=SIMULATOR)
    _write_redrops(renderer, paths, start, due)
    hazard.write_parquet(paths.truth / "hazard" / f"{day.isoformat()}.parquet", statistics=False)


def _write_redrops(renderer: Renderer, paths: Paths, start: date, due: list[Export]) -> None:
    for e in due:
        day = start + timedelta(days=e.t)
        content = renderer.file(e.domain, e.records, e.columns, e.broken)
        write_drop(
            paths.landing, e.domain, day, {_file_name(e.domain, day): content}, source=SIMULATOR
        )


def _holds(paths: Paths, domain: str, day: date, name: str, content: Callable[[], bytes]) -> bool:
    """Whether the landing zone already holds exactly ``content()`` (rendered only if needed)."""
    try:
        drop = find_drop(paths.landing, domain, day)
    except DropError:
        return False  # a broken marker: write the drop again
    if drop is None or drop.files != (name,):
        return False
    path = drop.path / name
    expected = content()
    return path.stat().st_size == len(expected) and path.read_bytes() == expected


def _hazard_frame(renderer: Renderer, plan: DayPlan, start: date) -> pl.DataFrame:
    h = plan.hazard
    return pl.DataFrame(
        {
            "customer_id": renderer.customer_ids.gather(h["customer"]),
            "day": pl.repeat(start + timedelta(days=plan.t), h["customer"].size, dtype=pl.Date, eager=True),
            "hazard": h["hazard"],
            "hazard_untreated": h["hazard_untreated"],
            "engagement": h["engagement"],
            "satisfaction": h["satisfaction"],
            "treated": h["treated"],
            "treatment_effect": h["treatment_effect"],
            "churned": h["churned"],
            # Single precision: the oracle is a model's expectation, and it halves the bytes.
            **{name: pl.Series(h[name], dtype=pl.Float32) for name in ORACLE_COLUMNS},
        }
    )


def _write_truth(paths: Paths, state: BusinessState, renderer: Renderer, config: SimConfig,
                 summary: SimSummary) -> None:
    churned = state.churn_day >= 0
    start = pl.lit(config.start)
    frame = pl.DataFrame(
        {
            "customer_id": renderer.customer_ids.head(config.customers),
            "signup_offset": state.signup_day,
            "churn_offset": pl.Series(state.churn_day).set(pl.Series(~churned), None),
            "churn_kind": pl.Series(np.where(state.churn_explicit, "explicit", "silent")).set(pl.Series(~churned), None),
            "segment": pl.Series(V.SEGMENTS).gather(state.segment),
            "region": pl.Series(V.REGIONS).gather(state.region),
            "acquisition_channel": pl.Series(V.ACQUISITION_CHANNELS).gather(state.channel),
            **state.traits(),
        }
    ).with_columns(
        signup_date=start + pl.duration(days=pl.col("signup_offset")),
        churn_date=start + pl.duration(days=pl.col("churn_offset")),
    ).select("customer_id", "signup_date", "churn_date", "churn_kind", pl.exclude(
        "customer_id", "signup_date", "churn_date", "churn_kind", "signup_offset", "churn_offset"))
    frame = frame.with_columns(pl.col("signup_date", "churn_date").cast(pl.Date))
    frame.write_parquet(paths.truth / "customers.parquet", statistics=False)
    (paths.truth / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1, sort_keys=True))
    state.save(paths.truth / "state")


def _last_day_index(config: SimConfig, until: date | None) -> int:
    """The index of the last day to simulate, checking ``until`` against the configured days."""
    if until is None:
        return config.days - 1
    last = config.start + timedelta(days=config.days - 1)
    if not isinstance(until, date) or isinstance(until, datetime) or not config.start <= until <= last:
        raise ValueError(f"until {until} is outside the simulated days {config.start} .. {last} "
                         f"(start {config.start}, {config.days} days)")
    return (until - config.start).days


def _index_actions(actions: pl.DataFrame | None, config: SimConfig) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Validate retention actions and group them by simulated day index."""
    if actions is None or actions.height == 0:
        return {}
    missing = {"customer_id", "day", "action"} - set(actions.columns)
    if missing:
        raise ValueError(f"actions need columns customer_id, day, action; missing {sorted(missing)}")
    unknown = set(actions["action"].unique().to_list()) - set(V.ACTIONS)
    if unknown:
        raise ValueError(f"unknown actions {sorted(map(str, unknown))}; expected one of {', '.join(V.ACTIONS)}")
    frame = actions.select(
        number=pl.col("customer_id").cast(pl.String).str.strip_prefix("C").cast(pl.Int64, strict=False),
        t=(pl.col("day").cast(pl.Date) - pl.lit(config.start)).dt.total_days(),
        code=pl.col("action").replace_strict(list(V.ACTIONS), list(range(len(V.ACTIONS))), return_dtype=pl.Int64),
        customer_id=pl.col("customer_id"),
    )
    bad = frame.filter(pl.col("number").is_null() | (pl.col("number") < 0) | (pl.col("number") >= config.customers))
    if bad.height:
        raise ValueError(f"actions name {bad.height} unknown customers, e.g. {bad['customer_id'][:3].to_list()}")
    frame = frame.filter(pl.col("t").is_between(0, config.days - 1))
    return {
        int(t[0]): (part["number"].to_numpy(), part["code"].to_numpy())
        for t, part in frame.partition_by("t", as_dict=True, maintain_order=True).items()
    }
