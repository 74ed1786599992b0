"""The additive building blocks of gold: silver rows summed per customer, event day and
arrival day (``daily_activity``), and the categories of paid orders (``paid_order_categories``).

Slices by arrival day share no key, so the daily results concatenate into one stored table, and
every windowed feature is a sum over it (see ``gold.py``).
"""

from __future__ import annotations

from typing import Any

import narwhals as nw

from churn_assets.transforms.frames import conform, latest, money_sum, to_lazy

ACTIVITY_KEY = ["customer_id", "event_date", "arrival_date"]
TIMESTAMP = nw.Datetime("us", "UTC")

_ACTIVITY_SUMS: dict[str, nw.dtypes.DType] = {
    "payments": nw.Int64(),          # every payment row, whatever its status: makes a customer known
    "orders": nw.Int64(),            # distinct paid orders (an order may have several lines)
    "order_value": nw.Float64(),     # paid charge amount
    "revenue": nw.Float64(),         # paid charge amount + refunds (refunds are negative)
    "failed_payments": nw.Int64(),
    "refunds": nw.Int64(),
    "sessions": nw.Int64(),          # session_start events
    "offers_received": nw.Int64(),
    "offers_redeemed": nw.Int64(),
}
_MONEY = ("order_value", "revenue")
LAST_TICKET: dict[str, nw.dtypes.DType] = {
    "last_ticket_opened_at": TIMESTAMP,
    "last_ticket_updated_at": TIMESTAMP,
    "last_ticket_id": nw.String(),
    "last_ticket_category": nw.String(),
}
# "The last ticket" is the newest opened, in its latest version; the id breaks exact ties.
LAST_TICKET_ORDER = ["last_ticket_opened_at", "last_ticket_updated_at", "last_ticket_id"]

ACTIVITY_SCHEMA: dict[str, nw.dtypes.DType] = {
    "customer_id": nw.String(), "event_date": nw.Date(), "arrival_date": nw.Date(),
    **_ACTIVITY_SUMS, **LAST_TICKET,
}
ORDER_CATEGORY_SCHEMA: dict[str, nw.dtypes.DType] = {
    "customer_id": nw.String(), "category": nw.String(),
    "event_date": nw.Date(), "arrival_date": nw.Date(),
}


def daily_activity(payments: Any = None, events: Any = None, tickets: Any = None,
                   marketing: Any = None) -> Any:
    """Silver rows summed per (customer_id, event_date, arrival_date): ``ACTIVITY_SCHEMA``.

    Pass any slice of silver: one arrival day for the daily run, all history for a rebuild.
    Slices by arrival day share no key, so their results concatenate into one stored table.
    """
    parts = [
        part
        for frame, build in ((payments, _payment_activity), (events, _session_activity),
                             (tickets, _ticket_activity), (marketing, _offer_activity))
        if (lazy := to_lazy(frame)) is not None
        for part in build(lazy.filter(~nw.col("customer_id").is_null()))
    ]
    if not parts:
        raise ValueError("daily_activity needs at least one of payments, events, tickets, "
                         "marketing (pass None only for a domain the business does not have)")
    # Diagonal: each part has the key and its own columns; the others are null in its rows.
    combined = conform(nw.concat(parts, how="diagonal"), ACTIVITY_SCHEMA)
    summed = combined.group_by(ACTIVITY_KEY).agg(
        *(money_sum(c) if c in _MONEY else nw.col(c).sum() for c in _ACTIVITY_SUMS),
        # At most one ticket row per key (see _ticket_activity), so max takes that row.
        *(nw.col(c).max() for c in LAST_TICKET),
    )
    # Spark sums nothing to null where Polars gives 0: fill, so both engines agree.
    return summed.with_columns(nw.col(c).fill_null(0) for c in _ACTIVITY_SUMS).to_native()


def _payment_activity(payments: nw.LazyFrame) -> list[nw.LazyFrame]:
    failed = (nw.col("status") == "failed").fill_null(False)
    flagged = payments.with_columns(
        _paid_charge=((nw.col("transaction_type") == "charge")
                      & (nw.col("status") == "paid")).fill_null(False),
        _refund=(nw.col("transaction_type") == "refund").fill_null(False) & ~failed,
        _failed=failed,
    )
    rows = flagged.with_columns(
        order_value=nw.when(nw.col("_paid_charge")).then(nw.col("amount")).otherwise(0.0),
        revenue=nw.when(nw.col("_paid_charge") | nw.col("_refund"))
        .then(nw.col("amount")).otherwise(0.0),
        failed_payments=nw.col("_failed").cast(nw.Int64),
        refunds=nw.col("_refund").cast(nw.Int64),
    ).group_by(ACTIVITY_KEY).agg(
        nw.len().alias("payments"),
        *(money_sum(c) for c in _MONEY),
        *(nw.col(c).sum() for c in ("failed_payments", "refunds")),
    )
    # Orders, not lines: imported invoices have a row per product under one order_id.
    orders = (
        flagged.filter(nw.col("_paid_charge"))
        .select(*ACTIVITY_KEY, _order=nw.coalesce("order_id", "transaction_id"))
        .unique()
        .group_by(ACTIVITY_KEY)
        .agg(nw.len().alias("orders"))
    )
    return [rows, orders]


def _session_activity(events: nw.LazyFrame) -> list[nw.LazyFrame]:
    sessions = events.filter(nw.col("event_type") == "session_start")
    return [sessions.group_by(ACTIVITY_KEY).agg(nw.len().alias("sessions"))]


def _offer_activity(marketing: nw.LazyFrame) -> list[nw.LazyFrame]:
    kind = nw.col("interaction_type")
    return [
        marketing.filter(kind.is_in(["offer", "redemption"]))
        .with_columns(offers_received=(kind == "offer").cast(nw.Int64),
                      offers_redeemed=(kind == "redemption").cast(nw.Int64))
        .group_by(ACTIVITY_KEY)
        .agg(nw.col("offers_received").sum(), nw.col("offers_redeemed").sum())
    ]


def _ticket_activity(tickets: nw.LazyFrame) -> list[nw.LazyFrame]:
    versions = tickets.filter(~nw.col("opened_at").is_null()).select(
        *ACTIVITY_KEY,
        last_ticket_opened_at=nw.col("opened_at"), last_ticket_updated_at=nw.col("updated_at"),
        last_ticket_id=nw.col("ticket_id"), last_ticket_category=nw.col("category"),
    )
    return [latest(versions, ACTIVITY_KEY, LAST_TICKET_ORDER)]


def paid_order_categories(payments: Any) -> Any:
    """Distinct (customer_id, category, event_date, arrival_date) of paid charges:
    ``ORDER_CATEGORY_SCHEMA``. The per-day input of the categories side table."""
    frame = to_lazy(payments)
    paid = (nw.col("transaction_type") == "charge") & (nw.col("status") == "paid")
    rows = frame.filter(paid & ~nw.col("customer_id").is_null()
                        & ~nw.col("category").is_null())
    return conform(rows, ORDER_CATEGORY_SCHEMA).unique().to_native()
