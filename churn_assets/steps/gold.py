"""Gold's incremental day loop: each day's customer state and features, over the table store.

Day D of ``gold/customer_features`` is computed from day D-1's ``gold/customer_state`` plus what
became visible on D (the fold, ``transforms/gold.py``, says exactly what that is), so a day costs
the same at day 30 as at day 365. When D-1's state is missing (a first run that starts
mid-history, or a deleted partition) the state is rebuilt from all history instead; both paths
give the same rows.

Reads are bounded by the silver check ``event_time_not_after_arrival``: no row is dated more
than ``max_days_ahead`` after it arrived, so what becomes visible on D arrived in
``[D - max_days_ahead, D]`` and the 90-day windows arrived in ``[D - 90 - max_days_ahead, D]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import narwhals as nw

from churn_assets import catalog
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import DOMAINS
from churn_assets.steps.reads import CHUNK_DAYS, chunks, column_bound
from churn_assets.transforms import gold
from churn_assets.transforms.contracts import PARTITION_COLUMN as ARRIVAL
from churn_assets.transforms.engine import backend, materialize

SNAPSHOT = catalog.SNAPSHOT_DATE
ACTIVITY, CATEGORIES = catalog.DAILY_ACTIVITY.full_name, catalog.ORDER_CATEGORIES.full_name
STATE, STATE_CATEGORIES = catalog.CUSTOMER_STATE.full_name, catalog.CUSTOMER_CATEGORIES.full_name
FEATURES = catalog.CUSTOMER_FEATURES.full_name
CUSTOMERS, TICKETS = catalog.silver("customers").full_name, catalog.silver("tickets").full_name

_log = logging.getLogger(__name__)
# Polars state rows held before a commit: a 31-day chunk of 100,000 customers is ~3M per table.
MAX_PENDING_ROWS = 2_000_000


@dataclass
class FeatureDays:
    """What one run of the day loop wrote."""

    window: DateWindow
    # Days whose previous state was missing, so their state was rebuilt from all history.
    rebuilt_from_history: list[str] = field(default_factory=list)
    # Domains with no delivered rows yet on the window's last day (their features are null).
    absent_domains_on_last_day: set[str] = field(default_factory=set)


def reach_days(max_days_ahead: int) -> int:
    """How far back a day's features read activity: the longest window plus the clock skew."""
    return gold.LONGEST_WINDOW_DAYS + max_days_ahead


def write_feature_days(store: TableStore, window: DateWindow, partition_start: date,
                       max_days_ahead: int, log=_log) -> FeatureDays:
    """Customer state, state categories and features for every day of ``window``, day by day."""
    ahead, reach = max_days_ahead, reach_days(max_days_ahead)
    first_arrivals = {d: _first_arrival_seen(store, catalog.silver(d).full_name, window)
                      for d in DOMAINS}
    result = FeatureDays(window)
    state = None
    for chunk in chunks(window, CHUNK_DAYS):
        # One read per chunk: the days' slices are cut from these in memory.
        activity = _read(store, ACTIVITY, chunk, reach)
        categories = _read(store, CATEGORIES, chunk, ahead)
        customers = _read(store, CUSTOMERS, chunk, ahead)
        tickets = _read(store, TICKETS, chunk, reach)
        # Polars days wait in memory for one commit; a Spark day is written and read back at
        # once, which cuts its plan (see _written_state).
        in_memory = _in_memory(activity)
        pending = _PendingDays(store, MAX_PENDING_ROWS if in_memory else 0)
        for day in chunk.days:
            if state is None and day > partition_start:
                state = _stored_state(store, day - timedelta(days=1))
            if state is None and day > partition_start:
                result.rebuilt_from_history.append(day.isoformat())
                reason, gap = rebuild_reason(store, day)
                (log.warning if gap else log.info)(reason)
                state = _rebuilt_state(store, day)
            else:
                state = gold.advance_state(
                    state, _arrived(activity, day, ahead), _arrived(categories, day, ahead),
                    _arrived(customers, day, ahead), day)
            state = gold.CustomerState(*(materialize(nw.from_native(f)).to_native()
                                         for f in state))
            absent = {d for d, first in first_arrivals.items() if first is None or first > day}
            features = gold.features(
                state, _arrived(activity, day, reach), _arrived(tickets, day, reach), day, absent)
            pending.add(day, state, features)
            if not in_memory:
                state = _written_state(store, day)
            result.absent_domains_on_last_day = absent
        pending.write()
        log.info(f"gold features {chunk} written")
    return result


class _PendingDays:
    """Days of state and features computed but not yet written, written as one commit per
    table once they hold ``max_rows`` state rows (0: every day at once) or when the chunk ends.
    A commit per day and table was half of gold's time on Polars, and each leaves a small
    file."""

    def __init__(self, store: TableStore, max_rows: int):
        self.store, self.max_rows = store, max_rows
        self.days: list[date] = []
        self.frames: dict[str, list] = {STATE: [], STATE_CATEGORIES: [], FEATURES: []}
        self.rows = 0

    def add(self, day: date, state: gold.CustomerState, features) -> None:
        self.days.append(day)
        for table, frame in ((STATE, state.profiles), (STATE_CATEGORIES, state.categories),
                             (FEATURES, features)):
            self.frames[table].append(frame)
        if self.max_rows:
            self.rows += nw.from_native(state.profiles).select(nw.len()).collect().item()
        if self.rows >= self.max_rows:
            self.write()

    def write(self) -> None:
        if not self.days:
            return
        span = DateWindow(self.days[0], self.days[-1] + timedelta(days=1))
        for table, frames in self.frames.items():
            frame = nw.concat([nw.from_native(f) for f in frames]).to_native()
            self.store.replace_window(table, frame, span, SNAPSHOT)
            frames.clear()
        self.days, self.rows = [], 0


@dataclass
class PrunedState:
    """The state days one prune left: the oldest kept of the newest ``keep_days``, and the
    run's last day (which may be older, so that a backfill's next day continues from it)."""

    kept_from: date | None
    days_deleted: int


def prune_state(store: TableStore, last_day: date, keep_days: int) -> PrunedState:
    """Delete the state and state categories of every day older than the newest ``keep_days``
    stored days, except ``last_day``: only the day before is read to continue, and a day whose
    previous state is gone is rebuilt from history to the same rows. So the state grows with
    customers, not with days (Delta frees the deleted files at the next vacuum)."""
    newest = column_bound(store, STATE, SNAPSHOT, "max") if keep_days else None
    if newest is None:
        return PrunedState(None, 0)
    cutoff = newest - timedelta(days=keep_days - 1)
    oldest = column_bound(store, STATE, SNAPSHOT, "min")
    bounds = ((oldest, min(cutoff, last_day)), (last_day + timedelta(days=1), cutoff))
    spans = [DateWindow(start, end) for start, end in bounds if start < end]
    deleted = 0
    for table in (STATE, STATE_CATEGORIES):
        # Replacing a window by no rows deletes it, on either store.
        empty = nw.from_native(store.read(table, DateWindow.day(newest), SNAPSHOT)).head(0)
        for span in spans:
            days = len(store.count_rows_by_day(table, span, SNAPSHOT))
            if days:  # an empty span would still cost a commit
                store.replace_window(table, empty.to_native(), span, SNAPSHOT)
            if table == STATE:
                deleted += days
    return PrunedState(cutoff, deleted)


def rebuild_reason(store: TableStore, day: date) -> tuple[str, bool]:
    """Why ``day``'s state is built from all history, and whether that is a gap (a missing
    day among the kept ones) rather than a first run or a pruned day."""
    oldest = column_bound(store, STATE, SNAPSHOT, "min")
    previous = day - timedelta(days=1)
    if oldest is None:
        return f"no customer state yet: building {day}'s from all history", False
    if previous < oldest:
        return (f"the customer state of {previous} was pruned ([maintenance] state_days): "
                f"building {day}'s from all history"), False
    return f"no customer state for {previous}: building {day}'s from all history", True


def _first_arrival_seen(store: TableStore, table: str, window: DateWindow) -> date | None:
    """The first arrival day of ``table`` as far as ``window``'s days can tell: the day before
    the window when any row arrived before it, else the first arrival in the window (None:
    none yet). One row of history is read, not the whole column, which grew with history."""
    if not store.exists(table):
        return None
    before = DateWindow(date(1970, 1, 1), window.start)
    probe = nw.from_native(store.read(table, before, ARRIVAL, [ARRIVAL])).head(1)
    if len(probe.lazy().collect()):
        return window.start - timedelta(days=1)
    return column_bound(store, table, ARRIVAL, "min", window)


def _in_memory(frame) -> bool:
    return backend(nw.from_native(frame)) == "polars"


def _read(store: TableStore, table: str, chunk: DateWindow, days_before: int):
    window = DateWindow(chunk.start - timedelta(days=days_before), chunk.end)
    return materialize(nw.from_native(store.read(table, window, ARRIVAL))).to_native()


def _arrived(frame, day: date, days_before: int):
    """Rows of a chunk's read that arrived in ``[day - days_before, day]``."""
    start = nw.lit(day - timedelta(days=days_before), dtype=nw.Date())
    return nw.from_native(frame).filter(
        (nw.col(ARRIVAL) >= start) & (nw.col(ARRIVAL) <= nw.lit(day, dtype=nw.Date()))
    ).to_native()


def _stored_state(store: TableStore, day: date) -> gold.CustomerState | None:
    """The state stored for ``day``, or ``None`` when there is none to continue from."""
    if not (store.exists(STATE) and store.exists(STATE_CATEGORIES)):
        return None
    state = _written_state(store, day)
    return state if nw.from_native(state.profiles).select(nw.len()).collect().item() else None


def _written_state(store: TableStore, day: date) -> gold.CustomerState:
    """The state just written for ``day``, read back to start ``day + 1`` from.

    Continuing from the stored table rather than the computed frame keeps each day's plan
    the same size on Spark: a checkpoint cuts the lineage but keeps the plan's size estimate,
    and chained joins multiply it, so by day ~25 estimating it alone exhausted the heap. Read
    back, the estimate is the files' size again. It is also the state a later run starts from.
    """
    window = DateWindow.day(day)
    return gold.CustomerState(*(materialize(nw.from_native(store.read(t, window, SNAPSHOT)))
                                .to_native() for t in (STATE, STATE_CATEGORIES)))


def _rebuilt_state(store: TableStore, day: date) -> gold.CustomerState:
    everything = DateWindow(date(1970, 1, 1), day + timedelta(days=1))
    return gold.customer_state_as_of(
        store.read(ACTIVITY, everything, ARRIVAL), store.read(CATEGORIES, everything, ARRIVAL),
        store.read(CUSTOMERS, everything, ARRIVAL), day)

