"""The silver contract: each domain's typed columns, natural key, event time and value rules.

Silver is what every later layer may rely on: one row per natural key (versions for customers
and tickets), typed, in UTC, with no raw personal data. ``clean`` in ``silver.py`` enforces
this module; gold and the asset checks read it instead of repeating column lists.

Amounts keep the sign they were delivered with: charges are ``>= 0`` and refunds ``<= 0``
(the simulator and ``churn-assets import`` both write refunds negative), so a plain sum of
``amount`` over paid charges and refunds is net revenue.
"""

from __future__ import annotations

from dataclasses import dataclass

import narwhals as nw

from churn_assets.ingest.columns import COLUMNS, LATE_COLUMNS

# How a raw text column becomes a silver column (see ``silver.py`` for each conversion):
#   id        trimmed, upper-cased, a spreadsheet's "17850.0" loses its ".0"   -> String
#   enum      trimmed, lower-cased                                             -> String
#   text      trimmed                                                          -> String
#   timestamp ISO-8601 with "Z", an offset or none (then UTC), parsed to UTC   -> Datetime(us, UTC)
#   float / int  decimal text (a decimal comma is rejected, not guessed)      -> Float64 / Int64
#   email / phone  normalized, then a keyed SHA-256 under the ``*_hash`` name  -> String
KINDS: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "id", "signup_at": "timestamp", "email": "email", "phone": "phone",
        "segment": "enum", "region": "text", "acquisition_channel": "enum", "status": "enum",
        "cancelled_at": "timestamp", "updated_at": "timestamp",
    },
    "payments": {
        "transaction_id": "id", "order_id": "id", "customer_id": "id", "transaction_type": "enum",
        "status": "enum", "amount": "float", "currency": "id", "quantity": "int",
        "category": "enum", "payment_method": "enum", "created_at": "timestamp",
        "refund_of_order_id": "id", "coupon_code": "id",
    },
    "events": {
        "event_id": "id", "customer_id": "id", "session_id": "id", "event_type": "enum",
        "feature": "enum", "page": "enum", "device": "enum", "occurred_at": "timestamp",
    },
    "tickets": {
        "ticket_id": "id", "customer_id": "id", "category": "enum", "priority": "enum",
        "channel": "enum", "opened_at": "timestamp", "first_response_at": "timestamp",
        "resolved_at": "timestamp", "csat": "int", "updated_at": "timestamp",
    },
    "marketing": {
        "interaction_id": "id", "customer_id": "id", "campaign_id": "id", "channel": "enum",
        "interaction_type": "enum", "offer_code": "id", "discount_pct": "float",
        "occurred_at": "timestamp",
    },
}
# Personal data never reaches silver: names are dropped, email and phone become keyed hashes.
DROPPED: dict[str, tuple[str, ...]] = {"customers": ("name",)}
HASHED: dict[str, dict[str, str]] = {"customers": {"email": "email_hash", "phone": "phone_hash"}}

# The column whose UTC date is ``event_date``. Tickets count from when they were opened (the
# ingest layer files them by ``updated_at``, the day they were last touched).
EVENT_TIME: dict[str, str] = {
    "customers": "updated_at",
    "payments": "created_at",
    "events": "occurred_at",
    "tickets": "opened_at",
    "marketing": "occurred_at",
}
# One silver row per natural key. Customers and tickets are versioned records: a later delivery
# with a later ``updated_at`` is a new version; gold takes the latest version as of a day.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "updated_at"),
    "payments": ("transaction_id",),
    "events": ("event_id",),
    "tickets": ("ticket_id", "updated_at"),
    "marketing": ("interaction_id",),
}
# A row missing any of these (null, empty or a placeholder such as "N/A") is rejected: without
# them a record cannot be keyed, dated, attributed to a customer or counted.
REQUIRED: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "updated_at", "status"),
    "payments": (
        "transaction_id", "customer_id", "transaction_type", "status", "amount", "created_at",
    ),
    "events": ("event_id", "customer_id", "event_type", "occurred_at"),
    "tickets": ("ticket_id", "customer_id", "opened_at", "updated_at"),
    "marketing": ("interaction_id", "customer_id", "interaction_type", "occurred_at"),
}
# Exact text (after trimming) that means "no value" in the exports we receive.
SENTINELS: tuple[str, ...] = ("", "null", "NULL", "None", "N/A", "n/a", "NaN", "-", "???")


@dataclass(frozen=True)
class Rule:
    """A check on a typed, non-null value. ``only_if`` limits it to rows where another column
    has a value (refund amounts); ``allowed`` lists an enum's values."""

    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] | None = None
    only_if: tuple[str, str] | None = None


VALUE_RULES: dict[str, dict[str, tuple[Rule, ...]]] = {
    "customers": {"status": (Rule(allowed=("active", "cancelled")),)},
    "payments": {
        "transaction_type": (Rule(allowed=("charge", "refund")),),
        "status": (Rule(allowed=("paid", "failed", "refunded")),),
        "amount": (
            Rule(minimum=0.0, only_if=("transaction_type", "charge")),
            Rule(maximum=0.0, only_if=("transaction_type", "refund")),
        ),
        "quantity": (Rule(minimum=0),),
    },
    "events": {},
    "tickets": {"csat": (Rule(minimum=1, maximum=5),)},
    "marketing": {
        "interaction_type": (Rule(allowed=("send", "open", "click", "offer", "redemption")),),
        "discount_pct": (Rule(minimum=0.0, maximum=100.0),),
    },
}

# Where a silver row came from; ``arrival_date`` (bronze ``_drop_date``) partitions the table.
PARTITION_COLUMN = "arrival_date"
LINEAGE: dict[str, nw.dtypes.DType] = {
    PARTITION_COLUMN: nw.Date(),
    "_batch_id": nw.String(),
    "_source_file": nw.String(),
    "_row_number": nw.Int64(),
}
# Only customer imports bring attribute columns of their own (e.g. ``Country``); silver keeps
# those declared in settings.toml (``[customers] attributes``), typed, after the contract's
# columns: an allow-list, so an export's ``contact_email`` never leaves bronze. Other domains'
# unknown columns are not carried.
KEEPS_EXTRA_COLUMNS: frozenset[str] = frozenset({"customers"})

_DTYPES: dict[str, nw.dtypes.DType] = {
    "id": nw.String(), "enum": nw.String(), "text": nw.String(), "email": nw.String(),
    "phone": nw.String(), "float": nw.Float64(), "int": nw.Int64(),
    "timestamp": nw.Datetime("us", "UTC"),
}

# An attribute's declared type (settings.toml) -> its silver kind, and that kind's silver type.
ATTRIBUTE_KINDS: dict[str, str] = {
    "text": "text", "category": "enum", "number": "float", "integer": "int",
    "timestamp": "timestamp",
}
ATTRIBUTE_DTYPES: dict[str, nw.dtypes.DType] = {
    kind: _DTYPES[kind] for kind in ATTRIBUTE_KINDS.values()
}

# ``event_date`` follows the event time, except for tickets, whose versions read naturally with
# the date after the whole record (as in the contract document).
_EVENT_DATE_AFTER = {**EVENT_TIME, "tickets": "updated_at"}


def _schema(domain: str) -> dict[str, nw.dtypes.DType]:
    schema: dict[str, nw.dtypes.DType] = {}
    for name, kind in KINDS[domain].items():
        schema[HASHED.get(domain, {}).get(name, name)] = _DTYPES[kind]
        if name == _EVENT_DATE_AFTER[domain]:
            schema["event_date"] = nw.Date()
    return schema | LINEAGE


# {domain: {column: narwhals dtype}} in the exact column order of silver rows.
SILVER_SCHEMAS: dict[str, dict[str, nw.dtypes.DType]] = {d: _schema(d) for d in KINDS}

REJECT_SCHEMA: dict[str, nw.dtypes.DType] = {
    "natural_key": nw.String(), **LINEAGE, "reason": nw.String(),
}
# same_batch: another copy of the same day's delivery counts instead; earlier_day: the record
# already arrived on an earlier day (before or inside the window), which is where it counts.
DUPLICATE_KINDS: tuple[str, ...] = ("same_batch", "earlier_day")
DUPLICATE_SCHEMA: dict[str, nw.dtypes.DType] = {
    "natural_key": nw.String(), **LINEAGE, "duplicate_of": nw.String(),
}
# What silver stores of both, in one ``<domain>_exceptions`` table: kind is rejected | duplicate,
# reason is the rejection reason or the duplicate kind.
EXCEPTION_SCHEMA: dict[str, nw.dtypes.DType] = {
    "natural_key": nw.String(), **LINEAGE, "kind": nw.String(), "reason": nw.String(),
}

for _domain, _kinds in KINDS.items():
    _raw = set(COLUMNS[_domain]) | set(LATE_COLUMNS.get(_domain, ()))
    assert set(_kinds) | set(DROPPED.get(_domain, ())) == _raw, _domain
    assert set(NATURAL_KEYS[_domain]) <= set(REQUIRED[_domain]), _domain
    assert EVENT_TIME[_domain] in REQUIRED[_domain], _domain
