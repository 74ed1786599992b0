"""How each domain's records are held before they are written: one int64 array per column.

Codes, ids, cents and epoch seconds are all int64 with ``NULL`` for a missing value, so dirt can
move, copy and blank rows with cheap numpy indexing; text is made only when a file is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churn_assets.ingest.columns import COLUMNS, LATE_COLUMNS
from churn_assets.simulator import vocab as V

NULL = np.iinfo(np.int64).min

Records = dict[str, np.ndarray]


@dataclass(frozen=True)
class Field:
    """A column's kind: ``vocab`` (codes into ``words``), ``id`` (``prefix`` + number),
    ``customer`` (customer index), ``ts`` (epoch seconds), ``int``, ``money`` (cents),
    ``offer`` (stem * 100 + pct), ``campaign``, or a customer's ``name``/``email``/``phone``."""

    kind: str
    words: tuple[str, ...] = ()
    prefix: str = ""


def _vocab(words: tuple[str, ...]) -> Field:
    return Field("vocab", words=words)


CUSTOMER = Field("customer")
TS = Field("ts")
INT = Field("int")

SCHEMAS: dict[str, dict[str, Field]] = {
    "customers": {
        "customer_id": CUSTOMER, "signup_at": TS, "name": Field("name"), "email": Field("email"),
        "phone": Field("phone"), "segment": _vocab(V.SEGMENTS), "region": _vocab(V.REGIONS),
        "acquisition_channel": _vocab(V.ACQUISITION_CHANNELS),
        "status": _vocab(("active", "cancelled")), "cancelled_at": TS, "updated_at": TS,
    },
    "payments": {
        "transaction_id": Field("id", prefix="T"), "order_id": Field("id", prefix="O"),
        "customer_id": CUSTOMER, "transaction_type": _vocab(("charge", "refund")),
        "status": _vocab(("paid", "failed", "refunded")), "amount": Field("money"),
        "currency": _vocab(V.CURRENCIES), "quantity": INT, "category": _vocab(V.CATEGORIES),
        "payment_method": _vocab(V.PAYMENT_METHODS), "created_at": TS,
        "refund_of_order_id": Field("id", prefix="O"), "coupon_code": Field("offer"),
    },
    "events": {
        "event_id": Field("id", prefix="E"), "customer_id": CUSTOMER,
        "session_id": Field("id", prefix="S"), "event_type": _vocab(V.EVENT_TYPES),
        "feature": _vocab(V.FEATURES), "page": _vocab(V.PAGES), "occurred_at": TS,
        "device": _vocab(V.DEVICES),
    },
    "tickets": {
        "ticket_id": Field("id", prefix="TK"), "customer_id": CUSTOMER,
        "category": _vocab(V.TICKET_CATEGORIES), "priority": _vocab(V.PRIORITIES),
        "channel": _vocab(V.TICKET_CHANNELS), "opened_at": TS, "first_response_at": TS,
        "resolved_at": TS, "csat": INT, "updated_at": TS,
    },
    "marketing": {
        "interaction_id": Field("id", prefix="M"), "customer_id": CUSTOMER,
        "campaign_id": Field("campaign"), "channel": _vocab(V.MARKETING_CHANNELS),
        "interaction_type": _vocab(V.INTERACTIONS), "offer_code": Field("offer"),
        "discount_pct": INT, "occurred_at": TS,
    },
}
# Extra arrays that travel with a domain's rows without being columns: what the email looked
# like at the time of the record, and each timestamp's UTC-offset code (set by dirt).
AUX: dict[str, tuple[str, ...]] = {"customers": ("email_version", "email_domain")}

for _domain, _schema in SCHEMAS.items():
    assert tuple(_schema) == COLUMNS[_domain] + LATE_COLUMNS.get(_domain, ()), _domain


def timestamps(domain: str) -> tuple[str, ...]:
    return tuple(name for name, f in SCHEMAS[domain].items() if f.kind == "ts")


def nullable(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``values`` where ``keep``, else ``NULL``."""
    return np.where(keep, values, NULL)


def take(records: Records, rows: np.ndarray) -> Records:
    return {name: values[rows] for name, values in records.items()}


def concat(parts: list[Records]) -> Records:
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def height(records: Records) -> int:
    return len(next(iter(records.values()))) if records else 0

# Semantically bad values dirt may put in a well-formed line, per domain and column.
COMMA_DECIMAL = "<the amount with a decimal comma>"
BAD_TIMESTAMPS = ("2026-02-30T10:00:00Z", "31/01/2026 14:22", "yesterday", "0000-00-00 00:00:00")
BAD_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "customers": {"signup_at": BAD_TIMESTAMPS, "email": ("n/a", "unknown")},
    "payments": {"amount": ("N/A", "-", "NaN", COMMA_DECIMAL, COMMA_DECIMAL),
                 "created_at": BAD_TIMESTAMPS},
    "events": {"occurred_at": BAD_TIMESTAMPS, "event_type": ("???",)},
    "tickets": {"csat": ("N/A", "6", "five"), "opened_at": BAD_TIMESTAMPS},
    "marketing": {"discount_pct": ("15%", "ten"), "occurred_at": BAD_TIMESTAMPS},
}


def bad(name: str) -> str:
    """The aux array holding, per row, the index of a bad value for column ``name`` (or NULL)."""
    return f"{name}#bad"


def tz(name: str) -> str:
    """The aux array holding each timestamp's UTC-offset code (0 is ``Z``)."""
    return f"{name}#tz"
