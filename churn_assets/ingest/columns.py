"""The canonical raw columns of each domain, as the simulator writes them and importers map to.

Bronze keeps whatever columns a drop has (all as text, plus ingestion metadata); silver types
these to a contract. Columns in ``LATE_COLUMNS`` appear only part-way through the history.
"""

from __future__ import annotations

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "customer_id", "signup_at", "name", "email", "phone", "segment", "region",
        "acquisition_channel", "status", "cancelled_at", "updated_at",
    ),
    "payments": (
        "transaction_id", "order_id", "customer_id", "transaction_type", "status", "amount",
        "currency", "quantity", "category", "payment_method", "created_at", "refund_of_order_id",
    ),
    "events": (
        "event_id", "customer_id", "session_id", "event_type", "feature", "page", "occurred_at",
    ),
    "tickets": (
        "ticket_id", "customer_id", "category", "priority", "channel", "opened_at",
        "first_response_at", "resolved_at", "csat", "updated_at",
    ),
    "marketing": (
        "interaction_id", "customer_id", "campaign_id", "channel", "interaction_type",
        "offer_code", "discount_pct", "occurred_at",
    ),
}

# Columns a source starts sending mid-history (schema evolution is part of the contract).
LATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "payments": ("coupon_code",),
    "events": ("device",),
}

# The column whose time decides which daily drop a record belongs to.
EVENT_TIME: dict[str, str] = {
    "customers": "updated_at",
    "payments": "created_at",
    "events": "occurred_at",
    "tickets": "updated_at",
    "marketing": "occurred_at",
}

# Personal data: kept raw only in bronze; never shown in metadata or logs, masked from silver on.
PII_COLUMNS: tuple[str, ...] = ("name", "email", "phone")
