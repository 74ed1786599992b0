"""Silver transforms on Polars: typing, placeholders, rejects with reasons, dedupe within and
across windows, customer/ticket versions, PII masking, and ``bronze == rows + rejects +
duplicates`` on a tiny simulated dirty world."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import narwhals as nw
import polars as pl
import pytest

from churn_assets.ingest.bronze import ingest_drops
from churn_assets.ingest.columns import COLUMNS, LATE_COLUMNS
from churn_assets.ingest.landing import list_drops
from churn_assets.settings import DOMAINS, Paths
from churn_assets.transforms.contracts import (
    DUPLICATE_SCHEMA,
    NATURAL_KEYS,
    REJECT_SCHEMA,
    SILVER_SCHEMAS,
)
from churn_assets.transforms.silver import clean

KEY = "test-pii-key"
DAY = date(2026, 1, 22)
INGESTED_AT = datetime(2026, 2, 1, tzinfo=UTC)


def tiny_world_bronze(home) -> dict[str, pl.DataFrame]:
    """A tiny dirty simulated world, ingested to bronze rows per domain (shared with parity)."""
    from churn_assets.simulator import DirtConfig, SimConfig, simulate

    paths = Paths(home)
    dirt = DirtConfig(
        duplicate_rate=0.05, late_rate=0.05, malformed_rate=0.03, null_rate=0.03, mixed_tz_rate=0.5
    )
    simulate(paths, SimConfig(customers=120, days=8, seed=3, dirt=dirt))
    return {
        domain: ingest_drops(domain, list_drops(paths.landing, domain), INGESTED_AT).rows
        for domain in DOMAINS
    }


def bronze(domain: str, *rows: dict, day: date = DAY, file: str = "f.csv") -> pl.DataFrame:
    """Bronze rows as ingest writes them: every column text, plus where each row came from.
    A row may set ``_drop_date``/``_row_number``/``_source_file`` to place itself."""
    columns = [*COLUMNS[domain], *LATE_COLUMNS.get(domain, ())]
    extra = [c for r in rows for c in r if c not in columns and not c.startswith("_")]
    records = [
        {c: r.get(c) for c in [*columns, *dict.fromkeys(extra)]}
        | {
            "_source_file": r.get("_source_file", file),
            "_row_number": r.get("_row_number", i + 1),
            "_batch_id": f"{domain}-{r.get('_drop_date', day)}",
            "_ingested_at": INGESTED_AT,
            "_drop_date": r.get("_drop_date", day),
        }
        for i, r in enumerate(rows)
    ]
    text = {c: pl.String for c in [*columns, *dict.fromkeys(extra)]}
    return pl.DataFrame(
        records,
        schema=text | {"_source_file": pl.String, "_row_number": pl.Int64, "_batch_id": pl.String,
                       "_ingested_at": pl.Datetime("us", "UTC"), "_drop_date": pl.Date},
    )


def payment(**values) -> dict:
    return {
        "transaction_id": "T1", "order_id": "O1", "customer_id": "C00000001",
        "transaction_type": "charge", "status": "paid", "amount": "12.50", "currency": "EUR",
        "quantity": "1", "category": "books", "payment_method": "card",
        "created_at": "2026-01-22T10:00:00Z",
    } | values


def customer(**values) -> dict:
    return {
        "customer_id": "C00000001", "signup_at": "2025-12-01T08:00:00Z", "name": "Ada Lovelace",
        "email": "Ada.Lovelace1@Example.com", "phone": "+44 7123 456789", "segment": "plus",
        "region": "UK", "acquisition_channel": "organic", "status": "active",
        "updated_at": "2026-01-22T10:00:00Z",
    } | values


def run(domain: str, frame: pl.DataFrame, prior=None, key: str = KEY):
    result = clean(domain, frame, prior, key)
    return result.rows.to_native(), result.rejects.to_native(), result.duplicates.to_native()


def all_text(frame: pl.DataFrame) -> str:
    """Every text value of a frame, one per line, to search for leaked personal data."""
    values = frame.select(pl.col(pl.String)).unpivot()["value"].drop_nulls()
    return "\n".join(values.to_list())


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_payments_are_typed_conformed_and_in_contract_order():
    frame = bronze("payments", payment(
        transaction_id=" t7 ", order_id="o9", customer_id="17850.0", amount=" 1e2 ",
        transaction_type="CHARGE", status="Paid", currency="eur", quantity="3.0",
        category="???", payment_method="N/A", coupon_code=" save10 ",
        created_at="2026-01-22T14:20:25+05:30",
    ))
    rows, rejects, duplicates = run("payments", frame)
    assert rejects.height == duplicates.height == 0
    assert rows.columns == list(SILVER_SCHEMAS["payments"])
    assert rows.row(0, named=True) == {
        "transaction_id": "T7", "order_id": "O9", "customer_id": "17850",
        "transaction_type": "charge", "status": "paid", "amount": 100.0, "currency": "EUR",
        "quantity": 3, "category": None, "payment_method": None,
        "created_at": utc(2026, 1, 22, 8, 50, 25), "event_date": DAY,
        "refund_of_order_id": None, "coupon_code": "SAVE10", "arrival_date": DAY,
        "_batch_id": f"payments-{DAY}", "_source_file": "f.csv", "_row_number": 1,
    }
    assert rows.schema["created_at"] == pl.Datetime("us", "UTC")


def test_customers_tickets_and_marketing_are_typed():
    customers, _, _ = run("customers", bronze("customers", customer(
        status="Cancelled", cancelled_at="2026-01-22T10:00:00+01:00", segment=" PLUS ",
    )))
    row = customers.row(0, named=True)
    assert (row["status"], row["segment"], row["region"]) == ("cancelled", "plus", "UK")
    assert row["signup_at"] == utc(2025, 12, 1, 8) and row["cancelled_at"] == utc(2026, 1, 22, 9)
    assert row["event_date"] == DAY
    tickets, _, _ = run("tickets", bronze("tickets", {
        "ticket_id": "tk1", "customer_id": "C1", "priority": "HIGH", "channel": "chat",
        "opened_at": "2026-01-21T23:30:00-01:00", "first_response_at": "2026-01-22T01:00:00Z",
        "resolved_at": "2026-01-22T02:00:00Z", "csat": " 4 ", "updated_at": "2026-01-22T02:00:00Z",
    }))
    row = tickets.row(0, named=True)
    assert (row["ticket_id"], row["priority"], row["csat"]) == ("TK1", "high", 4)
    assert row["opened_at"] == utc(2026, 1, 22, 0, 30) and row["event_date"] == DAY
    assert tickets.schema["csat"] == pl.Int64
    marketing, _, _ = run("marketing", bronze("marketing", {
        "interaction_id": "M1", "customer_id": "C1", "campaign_id": "cmp-20260122-0",
        "channel": "Email", "interaction_type": "Offer", "offer_code": "save15",
        "discount_pct": "15", "occurred_at": "2026-01-22T09:00:00Z",
    }))
    row = marketing.row(0, named=True)
    assert (row["campaign_id"], row["channel"], row["interaction_type"]) == (
        "CMP-20260122-0", "email", "offer"
    )
    assert (row["offer_code"], row["discount_pct"]) == ("SAVE15", 15.0)


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_has_its_contract_schema(domain):
    rows, rejects, duplicates = run(domain, bronze(domain))  # no rows at all
    assert nw.from_native(rows).schema == SILVER_SCHEMAS[domain]
    assert nw.from_native(rejects).schema == REJECT_SCHEMA
    assert nw.from_native(duplicates).schema == DUPLICATE_SCHEMA


def test_mixed_offsets_denote_the_same_utc_instant_and_day():
    stamps = [
        "2026-01-22T14:20:25+05:30", "2026-01-22T08:50:25Z", "2026-01-22T08:50:25+00:00",
        "2026-01-22 08:50:25", "2026-01-22T03:50:25-0500", "2026-01-22T17:50:25.000+09:00",
    ]
    frame = bronze("events", *[
        {"event_id": f"E{i}", "customer_id": "C1", "event_type": "login", "occurred_at": s}
        for i, s in enumerate(stamps)
    ], {"event_id": "E9", "customer_id": "C1", "event_type": "login",
        "occurred_at": "2026-01-23T01:00:00+05:30"})
    rows, rejects, _ = run("events", frame)
    assert rejects.height == 0
    rows = rows.sort("event_id")
    assert rows["occurred_at"].to_list()[:-1] == [utc(2026, 1, 22, 8, 50, 25)] * len(stamps)
    # 01:00 in India is still the 22nd in UTC: event_date is the UTC day.
    assert rows["event_date"].to_list() == [DAY] * (len(stamps) + 1)


def test_placeholders_become_null_and_late_columns_are_added():
    frame = bronze("events", {
        "event_id": "E1", "customer_id": "C1", "event_type": "Page_View", "feature": "NULL",
        "page": " - ", "occurred_at": "2026-01-22T08:00:00Z",
    }).drop("device")  # a drop from before the source started sending ``device``
    rows, _, _ = run("events", frame)
    row = rows.row(0, named=True)
    assert (row["event_type"], row["feature"], row["page"], row["device"]) == (
        "page_view", None, None, None
    )


@pytest.mark.parametrize(
    ("domain", "row", "reason"),
    [
        ("payments", payment(amount="N/A"), "amount is missing ('N/A')"),
        ("payments", payment(amount="12,50"), "amount '12,50' is not a number"),
        ("payments", payment(created_at="2026-13-45"), "created_at '2026-13-45' is not a timestamp"),
        ("payments", payment(created_at="2026-02-30T10:00:00Z"), "is not a timestamp"),
        ("payments", payment(customer_id=""), "customer_id is missing"),
        ("payments", payment(quantity="-1"), "quantity -1 is negative"),
        ("payments", payment(amount="-5.00"), "charge amount -5.00 is negative"),
        ("payments", payment(transaction_type="refund", status="refunded", amount="5.00"),
         "refund amount 5.00 is positive"),
        ("payments", payment(status="shipped"), "status 'shipped' is not one of paid, failed, refunded"),
        ("tickets", {"ticket_id": "TK1", "customer_id": "C1", "opened_at": "2026-01-22T08:00:00Z",
                     "updated_at": "2026-01-22T09:00:00Z", "csat": "6"}, "csat 6 outside 1..5"),
        ("marketing", {"interaction_id": "M1", "customer_id": "C1", "interaction_type": "offer",
                       "discount_pct": "15%", "occurred_at": "2026-01-22T08:00:00Z"},
         "discount_pct '15%' is not a number"),
        ("marketing", {"interaction_id": "M1", "customer_id": "C1", "interaction_type": "offer",
                       "discount_pct": "150", "occurred_at": "2026-01-22T08:00:00Z"},
         "discount_pct 150 outside 0..100"),
        ("customers", customer(email="unknown"), "email is not an email address"),
        ("customers", customer(status=None, updated_at="yesterday"),
         "status is missing; updated_at 'yesterday' is not a timestamp"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(domain, row, reason):
    good = {"payments": payment(transaction_id="T2"), "customers": customer(customer_id="C2")}
    frame = bronze(domain, row, *([good[domain]] if domain in good else []))
    rows, rejects, _ = run(domain, frame)
    assert rejects.height == 1, rejects
    assert reason in rejects["reason"][0]
    assert rejects["_row_number"][0] == 1 and rejects["_source_file"][0] == "f.csv"
    assert rows.height == frame.height - 1


def test_within_a_window_the_first_arrival_counts_and_its_last_copy_wins():
    frame = bronze(
        "payments",
        payment(amount="1.00", _drop_date=date(2026, 1, 23), _row_number=5),
        payment(amount="2.00", _row_number=3),
        payment(amount="3.00", _row_number=7),
        payment(transaction_id="T2"),
    )
    rows, rejects, duplicates = run("payments", frame)
    assert rows.sort("transaction_id")["amount"].to_list() == [3.0, 12.5]
    assert rows.filter(transaction_id="T1")["_row_number"].item() == 7
    kinds = dict(duplicates.select("_row_number", "duplicate_of").iter_rows())
    assert kinds == {5: "earlier_day", 3: "same_batch"}
    assert duplicates["natural_key"].to_list() == ["T1", "T1"]


def test_a_range_run_files_records_like_day_by_day_runs():
    """Point in time: a re-delivered record counts from its first arrival, however days are batched."""
    frame = bronze(
        "payments",
        payment(_row_number=1),
        payment(transaction_id="T2", _row_number=2),
        payment(_drop_date=date(2026, 1, 23), _row_number=1),
        payment(transaction_id="T3", _drop_date=date(2026, 1, 23), _row_number=2),
    )
    range_rows, _, range_duplicates = run("payments", frame)

    first_day = frame.filter(pl.col("_drop_date") < date(2026, 1, 23))
    day_rows, _, _ = run("payments", first_day)
    next_rows, _, next_duplicates = run(
        "payments", frame.filter(pl.col("_drop_date") == date(2026, 1, 23)),
        day_rows.select("transaction_id"),
    )
    by_day = pl.concat([day_rows, next_rows])
    columns = ["transaction_id", "arrival_date"]
    assert range_rows.select(columns).sort(columns).rows() == by_day.select(columns).sort(columns).rows()
    assert range_duplicates["duplicate_of"].to_list() == next_duplicates["duplicate_of"].to_list()


def test_keys_already_in_silver_are_earlier_day_duplicates():
    frame = bronze("payments", payment(), payment(transaction_id="T2"))
    prior = pl.DataFrame({"transaction_id": ["T1", "T0"]})
    rows, _, duplicates = run("payments", frame, prior)
    assert rows["transaction_id"].to_list() == ["T2"]
    assert duplicates.select("natural_key", "duplicate_of").rows() == [("T1", "earlier_day")]
    # No prior keys, or an empty frame of them, means nothing is a cross-day duplicate.
    assert run("payments", frame, prior.clear())[0].height == 2


def test_customer_versions_are_kept_and_exact_redeliveries_dropped():
    first = customer()
    later = customer(segment="premium", updated_at="2026-01-22T18:00:00Z")
    # The same version again, on a later day, with its time written in another offset.
    again = customer(updated_at="2026-01-22T11:00:00+01:00", _drop_date=date(2026, 1, 23))
    rows, _, duplicates = run("customers", bronze("customers", first, later, again))
    assert rows.sort("updated_at")["segment"].to_list() == ["plus", "premium"]
    assert duplicates["duplicate_of"].to_list() == ["earlier_day"]
    # The version already in silver from an earlier window is not counted again.
    prior = rows.filter(pl.col("segment") == "plus").select(NATURAL_KEYS["customers"])
    rows2, _, duplicates2 = run("customers", bronze("customers", again), prior)
    assert rows2.height == 0 and duplicates2["duplicate_of"].to_list() == ["earlier_day"]


def test_ticket_versions_are_kept():
    opened = {"ticket_id": "TK1", "customer_id": "C1", "category": "Billing",
              "opened_at": "2026-01-21T08:00:00Z", "updated_at": "2026-01-21T08:00:00Z"}
    resolved = opened | {"resolved_at": "2026-01-22T09:00:00Z", "csat": "4",
                         "updated_at": "2026-01-22T09:00:00Z"}
    rows, _, duplicates = run("tickets", bronze("tickets", opened, resolved, resolved))
    assert rows.sort("updated_at")["csat"].to_list() == [None, 4]
    assert rows["event_date"].to_list() == [date(2026, 1, 21)] * 2  # the day it was opened
    assert rows["category"].to_list() == ["billing"] * 2
    assert duplicates["duplicate_of"].to_list() == ["same_batch"]


def test_personal_data_is_hashed_with_the_key_and_never_output():
    raw = [customer(), customer(customer_id="C2", email=" ada.lovelace1@example.COM ",
                                phone="+447123456789"),
           customer(customer_id="C3", email="unknown", name="Grace Hopper", phone="+1 555 0100")]
    frame = bronze("customers", *raw)
    rows, rejects, duplicates = run("customers", frame)
    assert "name" not in rows.columns and "email" not in rows.columns
    expected_email = hashlib.sha256(f"{KEY}:ada.lovelace1@example.com".encode()).hexdigest()
    expected_phone = hashlib.sha256(f"{KEY}:+447123456789".encode()).hexdigest()
    assert rows["email_hash"].to_list() == [expected_email] * 2  # normalized before hashing
    assert rows["phone_hash"].to_list() == [expected_phone] * 2
    secrets = {r[c] for r in raw for c in ("name", "email", "phone")}
    secrets |= {s.strip().lower() for s in secrets} | {"+15550100", "+447123456789"}
    for output in (rows, rejects, duplicates):
        assert not [s for s in secrets if s in all_text(output)]
    # Stable for the same key, different for another key.
    assert run("customers", frame)[0]["email_hash"].to_list() == rows["email_hash"].to_list()
    other = run("customers", frame, key="another-key")[0]
    assert set(other["email_hash"]).isdisjoint(rows["email_hash"])


def test_declared_customer_attributes_are_kept_typed_and_others_stay_in_bronze():
    frame = bronze("customers", customer(Country=" France ", Tier=" Gold ", Visits="3",
                                         contact_email="x@y.io"))
    result = clean("customers", frame, None, KEY,
                   {"Country": "text", "Tier": "enum", "Visits": "int", "Absent": "float"})
    rows = result.rows.to_native()
    assert rows.select("Country", "Tier", "Visits", "Absent").rows() == [("France", "gold", 3, None)]
    assert rows.columns[-8:] == ["Country", "Tier", "Visits", "Absent", "arrival_date",
                                 "_batch_id", "_source_file", "_row_number"]
    assert "contact_email" not in rows.columns
    # Not declared: nothing beyond the contract.
    undeclared = clean("customers", frame, None, KEY).rows.to_native()
    assert undeclared.columns[-5:] == ["event_date", "arrival_date", "_batch_id", "_source_file",
                                       "_row_number"]


def test_an_email_in_a_categorical_column_is_rejected_without_quoting_it():
    frame = bronze("customers", customer(segment="jane.doe@example.com"),
                   customer(customer_id="C00000002", status="+44 20 7946 0958"))
    rows, rejects, _ = run("customers", frame)
    assert rows.height == 0
    reasons = " ".join(rejects["reason"].to_list())
    assert "segment holds what looks like an e-mail address" in reasons
    assert "jane.doe" not in reasons and "7946" not in reasons


def test_lazy_in_lazy_out_and_eager_in_eager_out():
    frame = bronze("payments", payment())
    assert isinstance(clean("payments", frame.lazy(), None, KEY).rows.to_native(), pl.LazyFrame)
    assert isinstance(clean("payments", frame, None, KEY).rows.to_native(), pl.DataFrame)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, pl.DataFrame]:
    return tiny_world_bronze(tmp_path_factory.mktemp("silver_world"))


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_bronze_row_is_accounted_for(world, domain):
    frame = world[domain]
    rows, rejects, duplicates = run(domain, frame)
    assert frame.height == rows.height + rejects.height + duplicates.height
    lineage = ["_source_file", "_row_number", "arrival_date"]
    seen = pl.concat([o.select(lineage) for o in (rows, rejects, duplicates)])
    assert seen.n_unique() == frame.height  # each bronze row lands exactly once
    assert rows.select(NATURAL_KEYS[domain]).n_unique() == rows.height
    assert rows.null_count().select(NATURAL_KEYS[domain]).sum_horizontal().item() == 0
    assert rejects["reason"].null_count() == 0 and (rejects["reason"] != "").all()


def test_the_dirty_world_exercises_every_path(world):
    outputs = {d: run(d, world[d]) for d in DOMAINS}
    reasons = " ".join(r for d in DOMAINS for r in outputs[d][1]["reason"].to_list())
    assert "is not a timestamp" in reasons and "is missing" in reasons
    assert sum(outputs[d][2].height for d in DOMAINS) > 0  # the duplicates the dirt injected
    events = outputs["events"][0]
    assert events.schema["occurred_at"] == pl.Datetime("us", "UTC")
    assert (events["occurred_at"].dt.date() == events["event_date"]).all()
    customers = world["customers"]
    secrets = set(customers["email"].drop_nulls()) | set(customers["name"].drop_nulls())
    for output in outputs["customers"]:
        text = all_text(output)
        assert not [s for s in secrets if s not in ("n/a", "unknown") and s in text]
