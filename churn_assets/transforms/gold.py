"""gold/customer_features: one point-in-time row per known customer per snapshot day.

The row for day D uses only silver rows that were *visible* on D: arrived by D
(``arrival_date <= D``) and happened by the end of D (``event_date <= D``). A row therefore
becomes visible on ``max(event_date, arrival_date)``: a late arrival counts from the day it
arrived and changes no earlier snapshot.

The cost of a day does not grow with history. Three small frames carry it:

- ``daily_activity``: silver rows summed per (customer_id, event_date, arrival_date). Additive,
  so windows are sums over a 90-day slice and lifetime totals are running sums.
- ``CustomerState``: lifetime state per customer as of D (running sums, first/last dates, the
  latest profile, the last ticket, the latest ``RECENT_ORDER_DAYS`` order days with their order
  value), plus a side table of the categories each customer bought (Delta-friendly: no list
  columns). ``advance_state`` folds the rows that become visible on D
  into yesterday's state; ``customer_state_as_of`` computes the same state directly from history.
- ``features`` reads the state and a 90-day window of activity and tickets.

Every reduction in the fold is a sum, a min, a max, "the latest by a total order" or "the latest
k days, each summed", so folding day by day equals computing at once (``features_as_of``): the gold tests hold both to equality.

A day D of the daily assets reads only bounded inputs:
  activity[D]   = daily_activity(silver rows with arrival_date == D), and
  categories[D] = paid_order_categories(the same payments)             (stored by arrival day)
  state[D]      = advance_state(state[D-1], activity and categories rows with arrival_date == D
                  or event_date == D, silver customers likewise, D)
  features[D]   = features(state[D], activity rows with arrival_date <= D and event_date in
                  (D-90, D], silver tickets likewise, D, absent_domains)

Tickets are versioned (a ticket is re-delivered when it is answered or rated), so they are not
summed into activity, where each version would count again: the window features take the latest
version of each ticket opened in the last 90 days. ``None`` for a domain means the business has
no such data at all: its features are null rather than zero.

Every function takes native frames (Polars or PySpark; Polars eager frames are made lazy) or
narwhals frames, and returns a native lazy frame: ``polars.LazyFrame`` or a Spark ``DataFrame``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any, NamedTuple

import narwhals as nw

from churn_assets.transforms.activity import (
    LAST_TICKET,
    LAST_TICKET_ORDER,
    TIMESTAMP,
    daily_activity,
    paid_order_categories,
)
from churn_assets.transforms.dates import (
    days_since,
    epoch_day,
    in_window,
    utc_date,
    visible_by,
    visible_on,
)
from churn_assets.transforms.frames import conform, latest, money_sum, to_lazy

LONGEST_WINDOW_DAYS = 90
DOMAINS = ("customers", "payments", "events", "tickets", "marketing")

_PROFILE: dict[str, nw.dtypes.DType] = {
    "signup_at": TIMESTAMP, "segment": nw.String(), "region": nw.String(),
    "acquisition_channel": nw.String(), "status": nw.String(), "cancelled_at": TIMESTAMP,
    "profile_updated_at": TIMESTAMP, "profile_arrival_date": nw.Date(),
}
# The latest profile version wins; on equal ``updated_at`` the later delivery does.
_PROFILE_ORDER = ["profile_updated_at", "profile_arrival_date"]
_LIFETIME_SUMS = {"orders_total": "orders", "order_value_total": "order_value",
                  "revenue_total": "revenue"}

# The latest order days kept per customer (1 = the latest), with the value ordered on each: the
# rhythm of a sparse buyer's last gaps and baskets. Bounded, so the state grows with customers.
RECENT_ORDER_DAYS = 5
_RECENT_DATES = [f"recent_order_date_{k}" for k in range(1, RECENT_ORDER_DAYS + 1)]
_RECENT_VALUES = [f"recent_order_value_{k}" for k in range(1, RECENT_ORDER_DAYS + 1)]
STATE_SCHEMA: dict[str, nw.dtypes.DType] = {
    "snapshot_date": nw.Date(), "customer_id": nw.String(),
    "first_seen_date": nw.Date(),  # null: seen only in events/tickets/marketing, not yet known
    **_PROFILE,
    "orders_total": nw.Int64(), "order_value_total": nw.Float64(), "revenue_total": nw.Float64(),
    "first_order_date": nw.Date(), "last_order_date": nw.Date(), "last_session_date": nw.Date(),
    **LAST_TICKET,
    **{c: nw.Date() for c in _RECENT_DATES}, **{c: nw.Float64() for c in _RECENT_VALUES},
}
CATEGORY_STATE_SCHEMA: dict[str, nw.dtypes.DType] = {
    "snapshot_date": nw.Date(), "customer_id": nw.String(), "category": nw.String(),
}

_WINDOWED: dict[str, tuple[str, int]] = {  # feature: (activity column, window days)
    "orders_7d": ("orders", 7), "orders_30d": ("orders", 30), "orders_90d": ("orders", 90),
    "revenue_90d": ("revenue", 90), "sessions_7d": ("sessions", 7),
    "sessions_30d": ("sessions", 30), "failed_payments_90d": ("failed_payments", 90),
    "refunds_90d": ("refunds", 90), "offers_received_90d": ("offers_received", 90),
    "offers_redeemed_90d": ("offers_redeemed", 90),
}
_I, _F, _S = nw.Int64(), nw.Float64(), nw.String()
_PAY, _EVT, _TKT, _MKT, _CUS = "payments", "events", "tickets", "marketing", "customers"
# feature: (dtype, the silver domain it needs: null, not zero, when the business has none)
_FEATURES: dict[str, tuple[nw.dtypes.DType, str | None]] = {
    "snapshot_date": (nw.Date(), None), "customer_id": (_S, None),
    "segment": (_S, _CUS), "region": (_S, _CUS), "acquisition_channel": (_S, _CUS),
    "status": (_S, _CUS), "tenure_days": (_I, None), "days_since_last_order": (_I, _PAY),
    "orders_total": (_I, _PAY), "revenue_total": (_F, _PAY), "avg_order_value": (_F, _PAY),
    "category_diversity": (_I, _PAY), "orders_7d": (_I, _PAY), "orders_30d": (_I, _PAY),
    "orders_90d": (_I, _PAY), "revenue_90d": (_F, _PAY),
    "days_since_first_order": (_I, _PAY), "mean_days_between_orders": (_F, _PAY),
    "order_gap_ratio": (_F, _PAY), "orders_per_tenure_month": (_F, _PAY),
    "spend_trend": (_F, _PAY), "recent_gap_cv": (_F, _PAY), "last_gap_ratio": (_F, _PAY),
    "overdue_in_spreads": (_F, _PAY), "basket_trend": (_F, _PAY), "sessions_7d": (_I, _EVT),
    "sessions_30d": (_I, _EVT), "days_since_last_session": (_I, _EVT),
    "engagement_trend": (_F, _EVT), "tickets_30d": (_I, _TKT),
    "last_ticket_category": (_S, _TKT), "csat_trend": (_F, _TKT),
    "failed_payments_90d": (_I, _PAY), "refunds_90d": (_I, _PAY),
    "offers_received_90d": (_I, _MKT), "offers_redeemed_90d": (_I, _MKT),
    "is_cancelled": (nw.Boolean(), _CUS),
}
FEATURE_SCHEMA: dict[str, nw.dtypes.DType] = {name: t for name, (t, _) in _FEATURES.items()}


class CustomerState(NamedTuple):
    """Lifetime state as of a day: ``profiles`` (``STATE_SCHEMA``, one row per customer seen in
    any domain) and ``categories`` (``CATEGORY_STATE_SCHEMA``, one row per category bought)."""

    profiles: Any
    categories: Any


# ---------------------------------------------------------------- lifetime state


def advance_state(previous: CustomerState | None, activity: Any, categories: Any,
                  customers: Any, snapshot_date: date) -> CustomerState:
    """Yesterday's state plus what becomes visible on ``snapshot_date`` (D).

    ``previous`` must be the state as of D-1 (``None`` before the first day). ``activity``
    (``daily_activity``), ``categories`` (``paid_order_categories``) and ``customers`` (silver)
    may be supersets, with no row twice, of what becomes visible on D: e.g. the rows with
    ``arrival_date == D or event_date == D`` (the second catches rows dated in the future by a
    skewed clock, due today). Rows visible on any other day are ignored.
    """
    return _state(previous, activity, categories, customers, snapshot_date,
                  visible_on(snapshot_date))


def customer_state_as_of(activity: Any, categories: Any, customers: Any,
                         snapshot_date: date) -> CustomerState:
    """The state as of ``snapshot_date`` computed directly from all history (a rebuild, or the
    starting point of an incremental chain)."""
    return _state(None, activity, categories, customers, snapshot_date,
                  visible_by(snapshot_date))


def _state(previous: CustomerState | None, activity: Any, categories: Any, customers: Any,
           snapshot_date: date, visible: nw.Expr) -> CustomerState:
    rows = []
    if previous is not None:
        rows.append(to_lazy(previous.profiles))
    if (frame := to_lazy(activity)) is not None:
        rows.append(_activity_contribution(frame.filter(visible)))
    if (frame := to_lazy(customers)) is not None:
        rows.append(_profile_contribution(frame.filter(visible)))
    # Previous state and today's contributions are candidates of one reduction per customer.
    if not rows:
        raise ValueError("a customer state needs a previous state or some silver input")
    candidates = conform(nw.concat(rows, how="diagonal"), STATE_SCHEMA).drop("snapshot_date")

    totals = candidates.group_by("customer_id").agg(
        nw.col("first_seen_date").min(), nw.col("first_order_date").min(),
        *(money_sum(c) if STATE_SCHEMA[c] == nw.Float64() else nw.col(c).sum()
          for c in _LIFETIME_SUMS),
        *(nw.col(c).max() for c in ("last_order_date", "last_session_date")),
    ).with_columns(nw.col(c).fill_null(0) for c in _LIFETIME_SUMS)
    profile = latest(
        candidates.filter(~nw.col("profile_updated_at").is_null())
        .select("customer_id", *_PROFILE), ["customer_id"], _PROFILE_ORDER)
    last_ticket = latest(
        candidates.filter(~nw.col("last_ticket_opened_at").is_null())
        .select("customer_id", *LAST_TICKET), ["customer_id"], LAST_TICKET_ORDER)
    profiles = (
        totals.join(profile, on="customer_id", how="left")
        .join(last_ticket, on="customer_id", how="left")
        .join(_recent_orders(previous, activity, visible, candidates), on="customer_id",
              how="left")
        .with_columns(snapshot_date=nw.lit(snapshot_date, dtype=nw.Date))
    )
    return CustomerState(
        profiles=conform(profiles, STATE_SCHEMA).to_native(),
        categories=_category_state(previous, categories, snapshot_date, visible, candidates),
    )


def _activity_contribution(activity: nw.LazyFrame) -> nw.LazyFrame:
    def on_days_with(count: str) -> nw.Expr:
        return nw.when(nw.col(count) > 0).then(nw.col("event_date"))

    return activity.select(
        "customer_id", *LAST_TICKET,
        *(nw.col(source).alias(total) for total, source in _LIFETIME_SUMS.items()),
        first_seen_date=on_days_with("payments"),
        first_order_date=on_days_with("orders"),
        last_order_date=on_days_with("orders"),
        last_session_date=on_days_with("sessions"),
    )


def _recent_orders(previous: CustomerState | None, activity: Any, visible: nw.Expr,
                   like: nw.LazyFrame) -> nw.LazyFrame:
    """Per customer, the latest ``RECENT_ORDER_DAYS`` days with an order and the order value of
    each (``recent_order_date_k``/``recent_order_value_k``, 1 = the latest): yesterday's days
    and today's visible ones, summed per day, the latest kept. A late order for a day already
    kept adds to it; one older than every kept day stays out, as it would in a rebuild."""
    long = {"customer_id": nw.String(), "order_date": nw.Date(), "order_value": nw.Float64()}
    rows = []
    if previous is not None:
        # A state written before these columns existed holds none: they fill from today on.
        kept = conform(to_lazy(previous.profiles), {
            "customer_id": nw.String(), **{c: STATE_SCHEMA[c] for c in _RECENT_DATES},
            **{c: STATE_SCHEMA[c] for c in _RECENT_VALUES}})
        rows.extend(conform(kept.select("customer_id", order_date=nw.col(d),
                                        order_value=nw.col(v)), long)
                    for d, v in zip(_RECENT_DATES, _RECENT_VALUES, strict=True))
    if (frame := to_lazy(activity)) is not None:
        rows.append(conform(frame.filter(visible & (nw.col("orders") > 0)).select(
            "customer_id", order_date=nw.col("event_date"), order_value=nw.col("order_value")),
            long))
    if not rows:  # no payments at all: nothing to join, on the same engine
        return like.select("customer_id").head(0)
    days = (nw.concat(rows).filter(~nw.col("order_date").is_null())
            .group_by("customer_id", "order_date").agg(money_sum("order_value"))
            .with_columns(_latest=nw.col("order_date").cum_count(reverse=True)
                          .over("customer_id", order_by="order_date"))
            .filter(nw.col("_latest") <= RECENT_ORDER_DAYS))
    spread = days.with_columns(
        *(nw.when(nw.col("_latest") == k).then(nw.col("order_date")).alias(d)
          for k, d in enumerate(_RECENT_DATES, 1)),
        *(nw.when(nw.col("_latest") == k).then(nw.col("order_value")).alias(v)
          for k, v in enumerate(_RECENT_VALUES, 1)))
    return spread.group_by("customer_id").agg(
        *(nw.col(c).max() for c in (*_RECENT_DATES, *_RECENT_VALUES)))


def _profile_contribution(customers: nw.LazyFrame) -> nw.LazyFrame:
    customers = customers.filter(~nw.col("customer_id").is_null()).with_columns(
        profile_updated_at=nw.col("updated_at"), profile_arrival_date=nw.col("arrival_date"),
        first_seen_date=nw.col("event_date"),
    )
    return customers.select("customer_id", "first_seen_date", *_PROFILE)


def _category_state(previous: CustomerState | None, categories: Any, snapshot_date: date,
                    visible: nw.Expr, like: nw.LazyFrame) -> Any:
    pairs = {"customer_id": nw.String(), "category": nw.String()}
    rows = []
    if previous is not None:
        rows.append(conform(to_lazy(previous.categories), pairs))
    if (frame := to_lazy(categories)) is not None:
        rows.append(conform(frame.filter(visible), pairs))
    if not rows:  # a business without payments: an empty side table on the same engine
        rows.append(conform(like.head(0), pairs))
    merged = nw.concat(rows).unique().with_columns(
        snapshot_date=nw.lit(snapshot_date, dtype=nw.Date))
    return conform(merged, CATEGORY_STATE_SCHEMA).to_native()


# ---------------------------------------------------------------- features


def features(state: CustomerState, recent_activity: Any, recent_tickets: Any,
             snapshot_date: date, absent_domains: Collection[str] = ()) -> Any:
    """``FEATURE_SCHEMA`` rows for ``snapshot_date``, one per known customer.

    ``state`` is the state as of ``snapshot_date``; ``recent_activity`` (``daily_activity``) and
    ``recent_tickets`` (silver tickets) may be supersets of the last 90 days: rows outside the
    window or not yet visible are ignored. ``absent_domains`` names the silver domains the
    business does not have (``None`` inputs count as absent too).
    """
    absent = set(absent_domains)
    unknown = absent - set(DOMAINS)
    if unknown:
        raise ValueError(f"unknown domains {sorted(unknown)}; expected some of {DOMAINS}")
    day = nw.lit(snapshot_date, dtype=nw.Date)
    known = to_lazy(state.profiles).filter(~nw.col("first_seen_date").is_null())
    rows = known.join(_category_counts(state.categories), on="customer_id", how="left")

    if (activity := to_lazy(recent_activity)) is None:
        absent |= {"payments", "events", "marketing"}
    else:
        rows = rows.join(_window_totals(activity, snapshot_date), on="customer_id", how="left")
    if (tickets := to_lazy(recent_tickets)) is None:
        absent.add("tickets")
    else:
        rows = rows.join(_ticket_window(tickets, snapshot_date), on="customer_id", how="left")
    rows = utc_date(utc_date(rows, "signup_at", "_signup_date"), "cancelled_at", "_cancel_date")
    rows = _with_rhythm(rows)

    counts = {name: nw.col(name).fill_null(0) for name in _WINDOWED}
    tenure = days_since(nw.coalesce("_signup_date", "first_seen_date"), snapshot_date)
    sessions_7d, sessions_30d = (nw.col(c).fill_null(0).cast(nw.Float64)
                                 for c in ("sessions_7d", "sessions_30d"))
    values: dict[str, nw.Expr] = {
        "snapshot_date": day,
        "customer_id": nw.col("customer_id"),
        **{c: nw.col(c) for c in ("segment", "region", "acquisition_channel", "status")},
        "tenure_days": tenure,
        **_sparse_history(tenure, snapshot_date),
        "days_since_last_order": days_since("last_order_date", snapshot_date),
        "orders_total": nw.col("orders_total"),
        "revenue_total": nw.col("revenue_total"),
        "avg_order_value": nw.when(nw.col("orders_total") > 0)
        .then(nw.col("order_value_total") / nw.col("orders_total")),
        "category_diversity": nw.col("category_diversity").fill_null(0),
        **counts,
        "days_since_last_session": days_since("last_session_date", snapshot_date),
        # Sessions per day this week over sessions per day this month: > 1 is warming up.
        "engagement_trend": nw.when(sessions_30d > 0)
        .then((sessions_7d * 30) / (sessions_30d * 7)),
        "tickets_30d": nw.col("tickets_30d").fill_null(0),
        "last_ticket_category": nw.col("last_ticket_category"),
        "csat_trend": nw.col("csat_recent") - nw.col("csat_prior"),
        "is_cancelled": nw.when(~nw.col("status").is_null()).then(
            (nw.col("status") == "cancelled")
            & (nw.col("_cancel_date").is_null() | (nw.col("_cancel_date") <= day))
        ),
    }
    out = rows.select(
        (nw.lit(None, dtype=dtype) if domain in absent else values[name]).alias(name)
        for name, (dtype, domain) in _FEATURES.items()
    )
    return conform(out, FEATURE_SCHEMA).to_native()


def _sparse_history(tenure: nw.Expr, snapshot_date: date) -> dict[str, nw.Expr]:
    """Features for customers who buy a few times a year, where windowed counts are mostly 0.

    - ``mean_days_between_orders``: first to last order over the gaps between them (2+ orders);
    - ``order_gap_ratio``: the gap still open (days since the last order) over that usual gap,
      so 3 means "three of their usual gaps without an order";
    - ``orders_per_tenure_month``: lifetime orders per 30 days of tenure (at least one day);
    - ``spend_trend``: revenue of the last 90 days over the customer's usual 90 days' revenue
      (lifetime revenue per day x 90, over at least 90 days): below 1 is spending less.

    All from the lifetime state and the 90-day window, so they fold incrementally like the
    columns they come from. Divisions are of floats, so Polars and Spark agree.
    """
    orders = nw.col("orders_total").cast(nw.Float64)
    span = (epoch_day("last_order_date") - epoch_day("first_order_date")).cast(nw.Float64)
    usual_gap = nw.when(nw.col("orders_total") > 1).then(span / (orders - 1))
    since_last = days_since("last_order_date", snapshot_date).cast(nw.Float64)
    days = tenure.cast(nw.Float64)
    revenue = nw.col("revenue_total").cast(nw.Float64)
    return {
        "days_since_first_order": days_since("first_order_date", snapshot_date),
        "mean_days_between_orders": usual_gap,
        # Orders on the same day give a usual gap of 0: count it as one day.
        "order_gap_ratio": since_last / nw.when(usual_gap < 1.0).then(1.0).otherwise(usual_gap),
        "orders_per_tenure_month": nw.when(days < 1.0).then(orders * 30.0)
        .otherwise(orders * 30.0 / days),
        "spend_trend": nw.when(revenue > 0.0).then(
            nw.col("revenue_90d").fill_null(0.0).cast(nw.Float64)
            * nw.when(days < 90.0).then(90.0).otherwise(days) / (revenue * 90.0)),
        **_recent_rhythm(since_last),
    }


def _with_rhythm(rows: nw.LazyFrame) -> nw.LazyFrame:
    """``rows`` (the state) with the helper columns of ``_recent_rhythm``, in stages: an
    expression that repeats its parts inline grows exponentially with the nesting, and Spark's
    analyzer runs out of heap on it."""
    dates = [epoch_day(c).cast(nw.Float64) for c in _RECENT_DATES]
    rows = rows.with_columns(
        *((newer - older).alias(f"_gap_{k}")
          for k, (newer, older) in enumerate(zip(dates, dates[1:], strict=False), 1)),
        *(nw.col(v).cast(nw.Float64).alias(f"_basket_{k}")
          for k, v in enumerate(_RECENT_VALUES, 1)))
    gaps = [nw.col(f"_gap_{k}") for k in range(1, RECENT_ORDER_DAYS)]
    baskets = [nw.col(f"_basket_{k}") for k in range(1, RECENT_ORDER_DAYS + 1)]

    def present(exprs: list[nw.Expr]) -> nw.Expr:
        return nw.sum_horizontal(*((~e.is_null()).cast(nw.Float64) for e in exprs))

    def total(exprs: list[nw.Expr]) -> nw.Expr:
        return nw.sum_horizontal(*(e.fill_null(0.0) for e in exprs))

    rows = rows.with_columns(
        _gaps=present(gaps), _gap_sum=total(gaps), _gap_squares=total([g * g for g in gaps]),
        _earlier_sum=total(gaps[1:]), _baskets=present(baskets), _basket_sum=total(baskets))
    rows = rows.with_columns(
        _gap_mean=nw.when(nw.col("_gaps") > 0).then(nw.col("_gap_sum") / nw.col("_gaps")),
        _earlier_mean=nw.when(nw.col("_gaps") > 1)
        .then(nw.col("_earlier_sum") / (nw.col("_gaps") - 1)),
        _basket_mean=nw.when(nw.col("_baskets") > 1)
        .then(nw.col("_basket_sum") / nw.col("_baskets")))
    variance = (nw.col("_gap_squares") / nw.col("_gaps")
                - nw.col("_gap_mean") * nw.col("_gap_mean"))
    return rows.with_columns(
        _gap_spread=nw.when(nw.col("_gaps") > 0).then(
            nw.when(variance > 0.0).then(variance).otherwise(0.0).sqrt()))


def _recent_rhythm(since_last: nw.Expr) -> dict[str, nw.Expr]:
    """The rhythm of the latest order days (``RECENT_ORDER_DAYS`` of them, so up to 4 gaps),
    where RFM sees only averages; from ``_with_rhythm``'s columns. Each needs 2 gaps (3 order
    days) or 2 baskets, else null:

    - ``recent_gap_cv``: spread of the recent gaps over their mean: ~0 for a replenishment
      buyer who comes back like clockwork, ~1 for a Poisson one;
    - ``last_gap_ratio``: the latest completed gap over the earlier recent ones: > 1 is
      stretching, as customers' gaps do before they leave;
    - ``overdue_in_spreads``: days since the last order minus the mean recent gap, in units of
      the gaps' spread (at least one day): how unusual today's silence is for this customer;
    - ``basket_trend``: the latest order day's value over the mean of the recent ones.

    Population moments of floats, so both engines agree.
    """
    enough = nw.col("_gaps") >= 2
    mean, spread = nw.col("_gap_mean"), nw.col("_gap_spread")
    earlier = nw.col("_earlier_mean")
    return {
        "recent_gap_cv": nw.when(enough & (mean > 0.0)).then(spread / mean),
        "last_gap_ratio": nw.when(enough).then(
            nw.col("_gap_1") / nw.when(earlier < 1.0).then(1.0).otherwise(earlier)),
        "overdue_in_spreads": nw.when(enough).then(
            (since_last - mean)
            / nw.when(spread < 1.0).then(1.0).otherwise(spread)),
        "basket_trend": nw.when(nw.col("_basket_mean") > 0.0).then(
            nw.col("_basket_1") / nw.col("_basket_mean")),
    }


def _category_counts(categories: Any) -> nw.LazyFrame:
    return to_lazy(categories).group_by("customer_id").agg(
        nw.len().cast(nw.Int64).alias("category_diversity"))


def _window_totals(activity: nw.LazyFrame, snapshot_date: date) -> nw.LazyFrame:
    recent = activity.filter(
        (nw.col("arrival_date") <= nw.lit(snapshot_date, dtype=nw.Date))
        & in_window("event_date", snapshot_date, LONGEST_WINDOW_DAYS)
    ).with_columns(
        nw.when(in_window("event_date", snapshot_date, days)).then(nw.col(column))
        .otherwise(0).alias(name)
        for name, (column, days) in _WINDOWED.items()
    )
    return recent.group_by("customer_id").agg(
        money_sum(name) if _FEATURES[name][0] == _F else nw.col(name).sum() for name in _WINDOWED)


def _ticket_window(tickets: nw.LazyFrame, snapshot_date: date) -> nw.LazyFrame:
    """Per customer: tickets opened in the last 30 days and the csat trend, from the latest
    version (as of the day) of each ticket opened in the last 90 days."""
    visible = tickets.filter(
        visible_by(snapshot_date)
        & in_window("event_date", snapshot_date, LONGEST_WINDOW_DAYS)
        & ~nw.col("ticket_id").is_null() & ~nw.col("customer_id").is_null()
    ).select("ticket_id", "customer_id", "event_date", "updated_at", "arrival_date",
             csat=nw.col("csat").cast(nw.Float64))
    newest = latest(visible, ["ticket_id"], ["updated_at", "arrival_date"])
    recent = in_window("event_date", snapshot_date, 30)
    prior = in_window("event_date", snapshot_date, LONGEST_WINDOW_DAYS, until_days=30)
    return newest.with_columns(
        _opened_30d=recent.cast(nw.Int64),
        _csat_recent=nw.when(recent).then(nw.col("csat")),
        _csat_prior=nw.when(prior).then(nw.col("csat")),
    ).group_by("customer_id").agg(
        nw.col("_opened_30d").sum().alias("tickets_30d"),
        nw.col("_csat_recent").mean().alias("csat_recent"),
        nw.col("_csat_prior").mean().alias("csat_prior"),
    )


def features_as_of(*, snapshot_date: date, payments: Any = None, customers: Any = None,
                   events: Any = None, tickets: Any = None, marketing: Any = None) -> Any:
    """The direct, non-incremental ``customer_features`` for ``snapshot_date`` from all silver
    history: what the incremental chain must equal, and a way to rebuild one day."""
    inputs = {"payments": payments, "customers": customers, "events": events,
              "tickets": tickets, "marketing": marketing}
    activity_inputs = (payments, events, tickets, marketing)
    activity = (daily_activity(*activity_inputs)
                if any(f is not None for f in activity_inputs) else None)
    categories = paid_order_categories(payments) if payments is not None else None
    state = customer_state_as_of(activity, categories, customers, snapshot_date)
    absent = {name for name, frame in inputs.items() if frame is None}
    return features(state, activity, tickets, snapshot_date, absent)
