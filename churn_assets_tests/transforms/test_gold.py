"""Gold transforms on Polars with a hand-built silver world whose every number is checkable.

The world (snapshot day S = 2026-03-10; 7-day window 03-04..03-10, 30-day 02-09..03-10,
90-day 2025-12-11..03-10):

- c1: a long-time customer. Orders o1 (2025-12-05, outside 90 days), o2 12-20, o3 03-05
  (refunded -10 on 03-06), o4 03-08 (a failed attempt, then paid), o5 03-04 *arriving late on
  03-09*. Sessions 02-01, 03-02, 2x 03-06, 03-09. Ticket T1 (01-20, csat 2), T2 (03-05,
  re-delivered 03-07 as "returns" with csat 4). Profile upgraded to enterprise on 03-05.
- c2: one order 02-20; cancels on 03-07.
- c3: no profile (known by payments): o7 03-03, a failed charge 03-07, o9 03-06 *arriving 03-10*.
- c4: a profile since 03-02, no orders; a session 03-04 and one dated 03-11 that arrived 03-10.
- c5: a session 03-01 while still unknown; first order 03-09.
- c6: sessions only: never a known customer.
Rows after S (arrivals 03-12 and later) exist only for the labels.

History before March arrives in one import on 03-01 (as a business bringing its own data
would), so a day-by-day chain from an empty state is 12 days long, yet the 30- and 90-day
windows and lifetime totals still see months of events.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets.transforms.activity import ACTIVITY_SCHEMA
from churn_assets.transforms.contracts import EVENT_TIME, SILVER_SCHEMAS
from churn_assets.transforms.dates import days_since, epoch_day, in_window
from churn_assets.transforms.gold import (
    CATEGORY_STATE_SCHEMA,
    DOMAINS,
    FEATURE_SCHEMA,
    STATE_SCHEMA,
    CustomerState,
    advance_state,
    customer_state_as_of,
    daily_activity,
    features,
    features_as_of,
    paid_order_categories,
)
from churn_assets.transforms.labels import LABEL_SCHEMA, churn_labels, labels_available

S = date(2026, 3, 10)
FIRST_ARRIVAL = date(2026, 3, 1)  # the history import
LAST_DAY = date(2026, 3, 12)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def silver(domain: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows typed to the silver contract; event_date from the event time, arrival defaulting to
    the event date (the history import for older rows), unused contract columns null."""
    for row in rows:
        row["event_date"] = row[EVENT_TIME[domain]].date()
        row.setdefault("arrival_date", max(row["event_date"], FIRST_ARRIVAL))
    frame = nw.from_native(pl.DataFrame(rows, strict=False, infer_schema_length=None))
    return frame.select(
        (nw.col(c).cast(t) if c in frame.columns else nw.lit(None, dtype=t)).alias(c)
        for c, t in SILVER_SCHEMAS[domain].items()
    ).to_native()


def pay(txn, customer, when, amount, category=None, *, order=None, kind="charge",
        status="paid", arrived=None):
    row = {"transaction_id": txn, "order_id": order or txn, "customer_id": customer,
           "transaction_type": kind, "status": status, "amount": amount,
           "category": category, "created_at": at(when)}
    return row | ({"arrival_date": arrived} if arrived else {})


def event(eid, customer, when, kind="session_start", arrived=None):
    row = {"event_id": eid, "customer_id": customer, "event_type": kind, "occurred_at": at(when)}
    return row | ({"arrival_date": arrived} if arrived else {})


def ticket(tid, customer, opened, updated, category, csat=None):
    return {"ticket_id": tid, "customer_id": customer, "category": category,
            "opened_at": at(opened), "updated_at": at(updated), "csat": csat,
            "arrival_date": max(at(updated).date(), FIRST_ARRIVAL)}


def touch(iid, customer, when, kind):
    return {"interaction_id": iid, "customer_id": customer, "interaction_type": kind,
            "occurred_at": at(when)}


def profile(customer, signup, updated, segment, region, channel, status="active",
            cancelled=None):
    return {"customer_id": customer, "signup_at": at(signup), "updated_at": at(updated),
            "segment": segment, "region": region, "acquisition_channel": channel,
            "status": status, "cancelled_at": at(cancelled) if cancelled else None}


def world() -> dict[str, pl.DataFrame]:
    late = date(2026, 3, 9)
    return {
        "customers": silver("customers", [
            profile("c1", "2025-11-20 08:00", "2025-12-01 09:00", "smb", "north", "ads"),
            profile("c1", "2025-11-20 08:00", "2026-03-05 12:00", "enterprise", "north", "ads"),
            profile("c2", "2026-01-10 10:00", "2026-01-10 10:00", "consumer", "south", "organic"),
            profile("c2", "2026-01-10 10:00", "2026-03-07 10:00", "consumer", "south", "organic",
                    status="cancelled", cancelled="2026-03-07 10:00"),
            profile("c4", "2026-03-02 07:00", "2026-03-02 07:00", "consumer", "east", "referral"),
            # Future: c4 cancels inside the label window.
            profile("c4", "2026-03-02 07:00", "2026-03-14 07:00", "consumer", "east", "referral",
                    status="cancelled", cancelled="2026-03-14 07:00"),
        ]),
        "payments": silver("payments", [
            pay("p1", "c1", "2025-12-05 10:00", 100.0, "books", order="o1"),
            pay("p2", "c1", "2025-12-20 10:00", 40.0, "garden", order="o2"),
            pay("p3", "c1", "2026-03-05 10:00", 20.0, "books", order="o3"),
            pay("p4", "c1", "2026-03-06 10:00", -10.0, "books", order="o3", kind="refund",
                status="refunded"),
            pay("p5", "c1", "2026-03-08 10:00", 30.0, "toys", order="o4", status="failed"),
            pay("p6", "c1", "2026-03-08 10:05", 30.0, "toys", order="o4"),
            pay("p7", "c1", "2026-03-04 23:59", 50.0, "garden", order="o5", arrived=late),
            pay("p8", "c2", "2026-02-20 10:00", 60.0, "books", order="o6"),
            pay("p9", "c3", "2026-03-03 10:00", 25.0, "toys", order="o7"),
            pay("p10", "c3", "2026-03-07 10:00", 15.0, "toys", order="o8", status="failed"),
            pay("p11", "c3", "2026-03-06 10:00", 35.0, "books", order="o9", arrived=S),
            pay("p12", "c5", "2026-03-09 10:00", 10.0, "toys", order="o10"),
            # Future, for the labels (window 03-11..03-17):
            pay("p13", "c1", "2026-03-12 10:00", 20.0, "books", order="o11"),
            pay("p14", "c3", "2026-03-18 10:00", 20.0, "books", order="o12"),
            pay("p15", "c3", "2026-03-13 10:00", 20.0, "books", order="o13", status="failed"),
            pay("p16", "c5", "2026-03-17 23:00", 20.0, "books", order="o14"),
            pay("p17", "c4", "2026-03-12 10:00", 20.0, "books", order="o15"),
        ]),
        "events": silver("events", [
            event("e1", "c1", "2026-02-01 10:00"),
            event("e2", "c1", "2026-03-02 10:00"),
            event("e3", "c1", "2026-03-06 10:00"),
            event("e4", "c1", "2026-03-06 18:00"),
            event("e5", "c1", "2026-03-09 10:00"),
            event("e6", "c1", "2026-03-09 10:01", kind="page_view"),
            event("e7", "c4", "2026-03-04 10:00"),
            event("e8", "c4", "2026-03-11 00:30", arrived=S),  # a skewed clock: future-dated
            event("e9", "c5", "2026-03-01 10:00"),
            event("e10", "c6", "2026-03-05 10:00"),
        ]),
        "tickets": silver("tickets", [
            ticket("t1", "c1", "2026-01-20 10:00", "2026-01-20 10:00", "billing"),
            ticket("t1", "c1", "2026-01-20 10:00", "2026-01-22 10:00", "billing", csat=2),
            ticket("t2", "c1", "2026-03-05 09:00", "2026-03-05 09:00", "delivery"),
            ticket("t2", "c1", "2026-03-05 09:00", "2026-03-07 09:00", "returns", csat=4),
        ]),
        "marketing": silver("marketing", [
            touch("m1", "c1", "2025-11-15 10:00", "offer"),
            touch("m2", "c1", "2026-03-01 10:00", "offer"),
            touch("m3", "c1", "2026-03-02 10:00", "send"),
            touch("m4", "c1", "2026-03-05 10:00", "redemption"),
        ]),
    }


def collect(frame: Any) -> pl.DataFrame:
    return nw.from_native(frame).lazy().collect(backend="polars").to_native()


def slice_rows(frame: Any, condition: nw.Expr) -> Any:
    return None if frame is None else nw.from_native(frame).filter(condition).to_native()


class Resume(NamedTuple):
    """What the stored tables hold after the day before a resumed chain."""

    state: CustomerState
    activity: Any
    categories: Any


def run_chain(silver_frames: dict[str, Any], days: list[date], store=collect,
              start: Resume | None = None) -> dict[date, pl.DataFrame]:
    """The daily assets' loop, with ``store`` standing in for writing and re-reading a table:

    1. activity and paid-order categories of the rows that arrived today, added to the stored
       tables (empty, or as ``start`` left them);
    2. state = yesterday's state + what becomes visible today (arrived today, or dated today);
    3. features from the state and a 90-day window of stored activity and silver tickets.
    """
    frames = {d: silver_frames.get(d) for d in DOMAINS}
    absent = {d for d, f in frames.items() if f is None}

    def summarize(rows: nw.Expr) -> tuple[Any, Any]:
        sliced = {d: slice_rows(f, rows) for d, f in frames.items()}
        activity = daily_activity(*(sliced[d] for d in DOMAINS if d != "customers"))
        payments = sliced["payments"]
        return activity, (paid_order_categories(payments) if payments is not None else None)

    state, activity, categories = start or (None, None, None)
    out = {}
    for day in days:
        today = nw.lit(day, dtype=nw.Date)
        arrived_activity, arrived_categories = summarize(nw.col("arrival_date") == today)
        activity = store(_concat([activity, arrived_activity]))
        if (all_categories := _concat([categories, arrived_categories])) is not None:
            categories = store(all_categories)

        due = (nw.col("arrival_date") == today) | (nw.col("event_date") == today)
        state = advance_state(state, slice_rows(activity, due), slice_rows(categories, due),
                              slice_rows(frames["customers"], due), day)
        state = CustomerState(store(state.profiles), store(state.categories))

        window = (nw.col("arrival_date") <= today) & in_window("event_date", day, 90)
        out[day] = collect(features(state, slice_rows(activity, window),
                                    slice_rows(frames["tickets"], window), day, absent))
    return out


def _concat(frames: list[Any]) -> Any:
    present = [nw.from_native(f) for f in frames if f is not None]
    present = [f.lazy() if isinstance(f, nw.DataFrame) else f for f in present]
    return nw.concat(present).to_native() if present else None


def resume_after(frames: dict[str, Any], day: date) -> Resume:
    """The stored tables after ``day`` as a rebuild would write them (Polars, collected)."""
    arrived = {d: slice_rows(f, nw.col("arrival_date") <= nw.lit(day, dtype=nw.Date))
               for d, f in frames.items()}
    payments = arrived.get("payments")
    activity = collect(daily_activity(payments, arrived.get("events"), arrived.get("tickets"),
                                      arrived.get("marketing")))
    categories = collect(paid_order_categories(payments))
    state = customer_state_as_of(activity, categories, arrived.get("customers"), day)
    return Resume(CustomerState(collect(state.profiles), collect(state.categories)),
                  activity, categories)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def row(frame: pl.DataFrame, customer: str) -> dict[str, Any]:
    (found,) = frame.filter(pl.col("customer_id") == customer).to_dicts()
    return found


@pytest.fixture(scope="module")
def silver_world() -> dict[str, pl.DataFrame]:
    return world()


@pytest.fixture(scope="module")
def chain(silver_world) -> dict[date, pl.DataFrame]:
    return run_chain(silver_world, days_between(FIRST_ARRIVAL, LAST_DAY))


def test_day_helpers_match_python():
    days = [date(1970, 1, 1), date(1999, 12, 31), date(2000, 2, 29), date(2024, 3, 1),
            date(2100, 3, 1), date(2026, 3, 10)]
    frame = nw.from_native(pl.DataFrame({"d": days})).select(
        n=epoch_day("d"), since=days_since("d", S), week=in_window("d", S, 7)).to_native()
    assert frame["n"].to_list() == [(d - date(1970, 1, 1)).days for d in days]
    assert frame["since"].to_list() == [(S - d).days for d in days]
    assert frame["week"].to_list() == [False, False, False, False, False, True]


def test_feature_values_on_the_snapshot_day(silver_world):
    features_s = collect(features_as_of(snapshot_date=S, **silver_world))
    assert dict(features_s.schema) == {c: _polars(t) for c, t in FEATURE_SCHEMA.items()}
    assert sorted(features_s["customer_id"]) == ["c1", "c2", "c3", "c4", "c5"]  # not c6

    c1 = row(features_s, "c1")
    assert c1 | {"engagement_trend": None} == {
        "snapshot_date": S, "customer_id": "c1", "segment": "enterprise", "region": "north",
        "acquisition_channel": "ads", "status": "active",
        "tenure_days": 110,                    # signup 2025-11-20
        "days_since_last_order": 2,            # o4 on 03-08
        "orders_total": 5,                     # o1..o5: o4's failed attempt is not an order
        "revenue_total": 230.0,                # 100+40+20-10+30+50
        "avg_order_value": 48.0,               # 240 of orders / 5
        "category_diversity": 3,               # books, garden, toys
        "orders_7d": 3, "orders_30d": 3, "orders_90d": 4,  # o3, o4, o5 (+ o2 12-20)
        "revenue_90d": 130.0,                  # 40+20-10+30+50
        "days_since_first_order": 95,          # o1 on 2025-12-05
        "mean_days_between_orders": 23.25,     # 93 days from o1 to o4, over 4 gaps
        "order_gap_ratio": 2 / 23.25,          # 2 days into a usual gap of 23.25
        "orders_per_tenure_month": 5 * 30 / 110,
        "spend_trend": 130 * 110 / (230 * 90),  # the last 90 days against the usual 90 days
        # Order days, latest first: 03-08, 03-05, 03-04 (o5, arrived late), 12-20, 12-05;
        # gaps 3, 1, 74, 15 (mean 23.25, population variance 5711/4 - 23.25^2 = 887.1875).
        "recent_gap_cv": math.sqrt(887.1875) / 23.25,
        "last_gap_ratio": 3 / 30,              # the latest gap over the mean of 1, 74, 15
        "overdue_in_spreads": (2 - 23.25) / math.sqrt(887.1875),
        "basket_trend": 30 / 48,               # 03-08's 30 over the mean of 30, 20, 50, 40, 100
        "sessions_7d": 3, "sessions_30d": 4,   # 03-06 x2, 03-09 (+ 03-02); not the page_view
        "days_since_last_session": 1, "engagement_trend": None,
        "tickets_30d": 1,                      # t2, delivered twice, counts once
        "last_ticket_category": "returns",     # t2's latest version
        "csat_trend": 2.0,                     # t2's 4 (last 30 days) - t1's 2 (days 31-90)
        "failed_payments_90d": 1, "refunds_90d": 1,
        "offers_received_90d": 1, "offers_redeemed_90d": 1,  # m1 is too old; sends don't count
        "is_cancelled": False,
    }
    assert c1["engagement_trend"] == pytest.approx((3 / 7) / (4 / 30))

    c2 = row(features_s, "c2")
    assert (c2["status"], c2["is_cancelled"], c2["tenure_days"]) == ("cancelled", True, 59)
    assert (c2["orders_total"], c2["orders_30d"], c2["orders_7d"]) == (1, 1, 0)
    assert c2["days_since_last_order"] == 18
    assert (c2["sessions_30d"], c2["engagement_trend"], c2["days_since_last_session"]) == (
        0, None, None)
    assert (c2["tickets_30d"], c2["last_ticket_category"], c2["csat_trend"]) == (0, None, None)

    c3 = row(features_s, "c3")  # known by payments only: no profile
    assert (c3["segment"], c3["status"], c3["is_cancelled"]) == (None, None, None)
    assert c3["tenure_days"] == 7  # first seen 03-03
    assert (c3["orders_total"], c3["revenue_total"], c3["avg_order_value"]) == (2, 60.0, 30.0)
    assert (c3["failed_payments_90d"], c3["category_diversity"]) == (1, 2)
    assert c3["days_since_last_order"] == 4

    c4 = row(features_s, "c4")  # a profile without orders; its 03-11 session is not yet due
    assert (c4["tenure_days"], c4["orders_total"], c4["revenue_total"]) == (8, 0, 0.0)
    assert (c4["avg_order_value"], c4["days_since_last_order"]) == (None, None)
    assert (c4["sessions_7d"], c4["sessions_30d"]) == (1, 1)
    assert c4["engagement_trend"] == pytest.approx(30 / 7)

    c5 = row(features_s, "c5")  # its session before it was known still counts
    assert (c5["tenure_days"], c5["days_since_last_session"]) == (1, 9)
    assert (c5["sessions_7d"], c5["sessions_30d"], c5["engagement_trend"]) == (0, 1, 0.0)


def test_point_in_time_profile_and_ticket_versions(silver_world):
    before = collect(features_as_of(snapshot_date=date(2026, 3, 6), **silver_world))
    c1, c2 = row(before, "c1"), row(before, "c2")
    assert (c1["segment"], c2["status"], c2["is_cancelled"]) == ("enterprise", "active", False)
    # t2 as delivered on 03-05: still "delivery" and unrated, so there is no recent csat.
    assert (c1["last_ticket_category"], c1["tickets_30d"], c1["csat_trend"]) == (
        "delivery", 1, None)
    earlier = collect(features_as_of(snapshot_date=date(2026, 3, 4), **silver_world))
    assert row(earlier, "c1")["segment"] == "smb"
    assert "c5" not in earlier["customer_id"].to_list()


def test_late_arrival_changes_no_past_snapshot(chain):
    # o5 happened 03-04 but arrived 03-09: absent before, counted (in its 7-day window) after.
    assert [row(chain[date(2026, 3, d)], "c1")["orders_7d"] for d in (4, 8, 9)] == [0, 2, 3]
    assert row(chain[date(2026, 3, 8)], "c1")["orders_total"] == 4
    assert row(chain[date(2026, 3, 9)], "c1")["orders_total"] == 5
    # o9 (03-06) arrived on S itself.
    assert row(chain[date(2026, 3, 9)], "c3")["orders_total"] == 1
    assert [row(chain[S], "c3")[f] for f in ("orders_7d", "orders_30d")] == [1, 2]
    # c4's session dated 03-11 arrived on S: it counts on 03-11, not before.
    assert row(chain[S], "c4")["sessions_7d"] == 1
    assert row(chain[date(2026, 3, 11)], "c4")["days_since_last_session"] == 0


def test_incremental_chain_equals_rebuild_every_day(silver_world, chain):
    for day, incremental in chain.items():
        rebuilt = collect(features_as_of(snapshot_date=day, **silver_world))
        assert_frame_equal(incremental.sort("customer_id"), rebuilt.sort("customer_id"))
    assert sorted(chain[FIRST_ARRIVAL]["customer_id"]) == ["c1", "c2"]


def test_recent_order_days_fold_like_a_rebuild():
    """Seven order days: the state keeps the latest five, each day's value summed. A late
    order for a kept day adds to it; one older than every kept day stays out, as in a rebuild,
    on every day of the chain."""
    day = date(2026, 3, 2)
    payments = silver("payments", [
        *(pay(f"p{d}", "c9", f"2026-03-{d:02d} 10:00", 10.0 * d) for d in range(2, 9)),
        pay("late_kept", "c9", "2026-03-07 11:00", 5.0, arrived=date(2026, 3, 10)),
        pay("late_old", "c9", "2026-03-01 11:00", 7.0, arrived=date(2026, 3, 11)),
        pay("failed", "c9", "2026-03-09 10:00", 99.0, status="failed"),
    ])
    chained = run_chain({"payments": payments}, days_between(day, LAST_DAY))
    for snapshot, incremental in chained.items():
        rebuilt = collect(features_as_of(snapshot_date=snapshot, payments=payments))
        assert_frame_equal(incremental, rebuilt)
    state = collect(customer_state_as_of(collect(daily_activity(payments)), None, None,
                                         LAST_DAY).profiles)
    kept = row(state, "c9")
    assert [kept[f"recent_order_date_{k}"].day for k in range(1, 6)] == [8, 7, 6, 5, 4]
    assert [kept[f"recent_order_value_{k}"] for k in range(1, 6)] == [80.0, 75.0, 60.0, 50.0,
                                                                      40.0]
    last = row(chained[LAST_DAY], "c9")
    assert last["recent_gap_cv"] == 0.0 and last["last_gap_ratio"] == 1.0  # daily, like clockwork
    assert last["overdue_in_spreads"] == (LAST_DAY - date(2026, 3, 8)).days - 1.0
    assert last["basket_trend"] == 80.0 / 61.0


def test_state_tables_are_plain_columns(silver_world):
    frames = silver_world
    state = advance_state(None, daily_activity(frames["payments"], frames["events"],
                                               frames["tickets"], frames["marketing"]),
                          paid_order_categories(frames["payments"]), frames["customers"], S)
    profiles, categories = collect(state.profiles), collect(state.categories)
    assert dict(profiles.schema) == {c: _polars(t) for c, t in STATE_SCHEMA.items()}
    assert dict(categories.schema) == {c: _polars(t) for c, t in CATEGORY_STATE_SCHEMA.items()}
    activity = collect(daily_activity(frames["payments"]))
    assert dict(activity.schema) == {c: _polars(t) for c, t in ACTIVITY_SCHEMA.items()}


def test_transactions_only_business(silver_world):
    only_payments = {"payments": silver_world["payments"]}
    rebuilt = collect(features_as_of(snapshot_date=S, **only_payments))
    assert sorted(rebuilt["customer_id"]) == ["c1", "c2", "c3", "c5"]  # c4 had no payments
    c1 = row(rebuilt, "c1")
    assert (c1["orders_total"], c1["revenue_total"], c1["orders_7d"]) == (5, 230.0, 3)
    assert c1["tenure_days"] == 95  # no signup: first seen on its first payment, 2025-12-05
    absent = ["segment", "region", "acquisition_channel", "status", "is_cancelled",
              "sessions_7d", "sessions_30d", "days_since_last_session", "engagement_trend",
              "tickets_30d", "last_ticket_category", "csat_trend",
              "offers_received_90d", "offers_redeemed_90d"]
    assert rebuilt.select(pl.col(absent).null_count()).row(0) == (rebuilt.height,) * len(absent)

    chained = run_chain(only_payments, days_between(date(2026, 3, 1), S),
                        start=resume_after(only_payments, date(2026, 2, 28)))
    assert_frame_equal(chained[S].sort("customer_id"), rebuilt.sort("customer_id"))


def test_labels(silver_world):
    known = collect(features_as_of(snapshot_date=S, **silver_world))
    labels = collect(churn_labels(known, silver_world["payments"], silver_world["customers"],
                                  S, horizon_days=7)).sort("customer_id")
    assert dict(labels.schema) == {c: _polars(t) for c, t in LABEL_SCHEMA.items()}
    assert labels.select("customer_id", "churned", "reason").rows() == [
        ("c1", False, None),              # ordered 03-12
        ("c2", True, "no_paid_order"),    # cancelled before D: no order after
        ("c3", True, "no_paid_order"),    # a failed charge in the window, a paid one after it
        ("c4", True, "cancelled"),        # ordered 03-12, then cancelled 03-14
        ("c5", False, None),              # ordered on the window's last day
    ]
    assert set(labels["label_window_end"]) == {date(2026, 3, 17)}
    assert set(labels["snapshot_date"]) == {S}

    no_profiles = collect(churn_labels(known, silver_world["payments"], None, S, 7))
    assert no_profiles.filter(pl.col("customer_id") == "c4")["reason"].item() is None


def test_labels_available():
    assert labels_available(date(2026, 3, 17), S, 7)
    assert not labels_available(date(2026, 3, 16), S, 7)
    assert not labels_available(None, S, 7)
    with pytest.raises(ValueError, match="horizon_days"):
        labels_available(S, S, 0)


def _polars(dtype: nw.dtypes.DType) -> pl.DataType:
    empty = nw.from_native(pl.DataFrame()).select(x=nw.lit(None, dtype=dtype)).to_native()
    return empty.schema["x"]
