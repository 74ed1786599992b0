"""Silver expectations on real silver rows (small bronze frames through ``clean``), clean and
then deliberately broken; the frame checks also on PySpark, where they must conclude the same."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from churn_assets.transforms import expectations as ex
from churn_assets.transforms.contracts import SILVER_SCHEMAS
from churn_assets.transforms.silver import clean
from churn_assets_tests.spark import spark_session
from churn_assets_tests.transforms.test_silver import DAY, bronze, customer, payment

STAMP = "2026-01-22T10:00:00Z"  # how a customer's updated_at shows in example keys


def silver(domain: str, *rows: dict) -> pl.DataFrame:
    return clean(domain, bronze(domain, *rows), None, "test-key").rows.to_native()


def payments() -> pl.DataFrame:
    return silver(
        "payments",
        payment(),
        payment(transaction_id="T2", customer_id="C00000002", amount="5"),
        payment(transaction_id="T3", transaction_type="refund", status="refunded",
                amount="-5", refund_of_order_id="O1"),
        payment(transaction_id="T4", customer_id="C00000003", quantity="2"),
    )


def customers() -> pl.DataFrame:
    return silver(
        "customers",
        customer(),
        customer(segment="premium", updated_at="2026-01-22T18:00:00Z"),  # a second version
        customer(customer_id="C00000002", email="b@example.com", phone="+33612345678"),
        customer(customer_id="C00000003", email="c@example.com", phone="+33612345679"),
    )


def tickets() -> pl.DataFrame:
    ticket = {"ticket_id": "TK1", "customer_id": "C00000001", "opened_at": "2026-01-22T08:00:00Z",
              "updated_at": "2026-01-22T09:00:00Z", "csat": "4"}
    return silver("tickets", ticket, ticket | {"ticket_id": "TK2", "csat": None})


def events() -> pl.DataFrame:
    return silver("events", {"event_id": "E1", "customer_id": "C00000002",
                             "event_type": "login", "occurred_at": "2026-01-22T07:00:00Z"})


def marketing() -> pl.DataFrame:
    return silver("marketing", {"interaction_id": "M1", "customer_id": "C00000003",
                                "interaction_type": "offer", "discount_pct": "15",
                                "occurred_at": "2026-01-22T07:00:00Z"})


CLEAN = {"payments": payments, "customers": customers, "tickets": tickets, "events": events,
         "marketing": marketing}


def known_ids() -> pl.DataFrame:
    """Customer ids and the day each version arrived (a customer is known from its first)."""
    return customers().select("customer_id", "arrival_date")


def where(column: str, key: str, value, key_column: str = "transaction_id") -> pl.Expr:
    """``column`` set to ``value`` on the row whose key is ``key``."""
    return pl.when(pl.col(key_column) == key).then(value).otherwise(pl.col(column)).alias(column)


@pytest.mark.parametrize("domain", list(CLEAN))
def test_every_frame_check_passes_on_clean_silver(domain):
    rows = CLEAN[domain]()
    assert rows.height > 0
    outcomes = [
        ex.keys_unique_and_present(domain, rows),
        ex.values_in_range(domain, rows),
        ex.schema_matches_contract(domain, rows),
        ex.references_known_customers(domain, rows, known_ids()),
        ex.event_time_not_after_arrival(domain, rows),
    ]
    assert [o.description for o in outcomes if not o.passed] == []
    # Lazy frames in, the same conclusions out.
    assert ex.keys_unique_and_present(domain, rows.lazy()) == outcomes[0]
    assert ex.values_in_range(domain, rows.lazy()) == outcomes[1]


def test_a_duplicated_key_fails_and_names_it():
    rows = payments().with_columns(where("transaction_id", "T2", pl.lit("T1")))
    outcome = ex.keys_unique_and_present("payments", rows)
    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    assert outcome.metadata["duplicate_keys"] == 1 and outcome.metadata["null_keys"] == 0
    assert outcome.metadata["examples"] == ["T1"]
    assert "T1" in outcome.description


def test_a_repeated_customer_version_fails_but_versions_do_not():
    rows = customers()
    again = pl.concat([rows, rows.filter(pl.col("customer_id") == "C00000002")])
    outcome = ex.keys_unique_and_present("customers", again)
    assert not outcome.passed
    assert outcome.metadata["examples"] == [f"C00000002|{STAMP}"]


def test_a_missing_key_part_fails_and_names_the_row():
    rows = customers().with_columns(
        where("updated_at", "C00000003", pl.lit(None), key_column="customer_id")
    )
    outcome = ex.keys_unique_and_present("customers", rows)
    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    assert outcome.metadata["null_keys"] == 1 and outcome.metadata["duplicate_keys"] == 0
    assert outcome.metadata["null_key_rows"] == ["f.csv|4"]  # file|row number in bronze


def test_values_out_of_range_fail_per_column_with_keys():
    rows = payments().with_columns(
        where("amount", "T2", pl.lit(-5.0)),  # a negative charge
        where("quantity", "T4", pl.lit(-1)),
    )
    outcome = ex.values_in_range("payments", rows)
    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    violations = outcome.metadata["violations"]
    assert set(violations) == {"amount", "quantity"}
    assert violations["amount"]["count"] == 1 and violations["amount"]["examples"] == ["T2"]
    assert violations["quantity"]["examples"] == ["T4"]
    assert "T2" in outcome.description and "amount >= 0 when transaction_type = charge" in (
        outcome.description
    )
    # A refund of -5 obeys the refund rule: only the charge is out of range.
    positive_refund = payments().with_columns(where("amount", "T3", pl.lit(5.0)))
    assert ex.values_in_range("payments", positive_refund).metadata["violations"]["amount"][
        "examples"] == ["T3"]


def test_a_csat_of_7_and_an_unknown_status_fail():
    rows = tickets().with_columns(where("csat", "TK1", pl.lit(7), key_column="ticket_id"))
    outcome = ex.values_in_range("tickets", rows)
    assert not outcome.passed
    assert outcome.metadata["violations"]["csat"]["examples"] == ["TK1|2026-01-22T09:00:00Z"]
    status = customers().with_columns(
        where("status", "C00000002", pl.lit("paused"), key_column="customer_id")
    )
    assert ex.values_in_range("customers", status).metadata["violations"]["status"] == {
        "count": 1, "rule": "status in (active, cancelled)", "examples": [f"C00000002|{STAMP}"],
    }


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (lambda f: f.drop("currency"), "missing", ["currency"]),
        (lambda f: f.with_columns(pl.lit("x").alias("note")), "unexpected", ["note"]),
        (lambda f: f.with_columns(pl.col("amount").cast(pl.String)), "wrong_type",
         ["amount: String (expected Float64)"]),
        (lambda f: f.with_columns(pl.col("created_at").dt.replace_time_zone(None)), "wrong_type",
         ["created_at: Datetime(time_unit='us', time_zone=None) "
          "(expected Datetime(time_unit='us', time_zone='UTC'))"]),
        (lambda f: f.select("order_id", pl.exclude("order_id")), "in_order", False),
    ],
)
def test_a_frame_off_contract_fails(change, key, expected):
    outcome = ex.schema_matches_contract("payments", change(payments()))
    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    assert outcome.metadata[key] == expected


def test_declared_customer_attributes_are_allowed_before_the_lineage():
    declared = {"Country": "text"}
    rows = clean("customers", bronze("customers", customer(Country="France")), None, "test-key",
                 declared).rows.to_native()
    assert ex.schema_matches_contract("customers", rows, declared).passed
    undeclared = ex.schema_matches_contract("customers", rows)
    assert not undeclared.passed and "Country" in undeclared.description
    numeric = ex.schema_matches_contract(
        "customers", rows.with_columns(pl.col("Country") == ""), declared)
    assert numeric.metadata["wrong_type"] == ["Country: Boolean (expected String)"]
    late = ex.schema_matches_contract(
        "customers", rows.select(pl.exclude("Country"), "Country"), declared)
    assert (late.passed, late.metadata["in_order"]) == (False, False)
    assert ex.schema_matches_contract("payments", rows).metadata["missing"] == [
        c for c in SILVER_SCHEMAS["payments"] if c not in rows.columns
    ]


def test_orphan_customers_are_judged_on_evidence():
    rows = payments().with_columns(where("customer_id", "T4", pl.lit("C00000099")))
    # 1 orphan customer of the 3 named is above 1 % but proves nothing: it warns.
    outcome = ex.references_known_customers("payments", rows, known_ids())
    assert (outcome.passed, outcome.severity) == (False, "WARN")
    assert outcome.metadata["bad_rows"] == 1 and outcome.metadata["rows"] == 3
    assert outcome.metadata["orphan_rows"] == 1
    assert outcome.metadata["examples"] == ["C00000099"]
    assert outcome.metadata["days_above_tolerance"]["2026-01-22"]["verdict"] == "warn"
    assert "C00000099" in outcome.description and "too few rows" in outcome.description
    # Within tolerance is a pass, with the numbers in the metadata.
    tolerated = ex.references_known_customers("payments", rows, known_ids(),
                                              max_orphan_share=0.34)
    assert tolerated.passed and tolerated.metadata["share"] == 0.333333
    # Enough orphans to be sure stop gold.
    many = pl.concat([rows] * 10).with_columns(
        pl.format("T{}", pl.int_range(pl.len())).alias("transaction_id"),
        pl.format("C9{}", pl.int_range(pl.len())).alias("customer_id"))
    proven = ex.references_known_customers("payments", many, known_ids(), min_bad_rows=10)
    assert (proven.passed, proven.severity) == (False, "ERROR")
    # Known ids may be lazy, and customers reference nothing.
    assert ex.references_known_customers("payments", rows, known_ids().lazy()) == outcome
    assert ex.references_known_customers("customers", customers(), known_ids().head(0)).passed


def test_a_customer_counts_as_known_from_the_day_it_arrived():
    rows = payments()
    arrives_later = known_ids().with_columns(
        pl.when(pl.col("customer_id") == "C00000003").then(pl.lit(DAY + timedelta(days=1)))
        .otherwise(pl.col("arrival_date")).alias("arrival_date"))
    outcome = ex.references_known_customers("payments", rows, arrives_later,
                                            max_orphan_share=0.0)
    assert outcome.metadata["bad_rows"] == 1 and outcome.metadata["examples"] == ["C00000003"]
    assert ex.references_known_customers("payments", rows, None).metadata["bad_rows"] == 3


def test_wilson_interval_and_the_share_verdict():
    low, high = ex.wilson_interval(1, 6)
    assert 0.02 < low < 0.04 and 0.55 < high < 0.59  # 1 of 6: anything from 3 % to 56 %
    assert ex.wilson_interval(0, 0) == (0.0, 1.0)
    rules = {"threshold": 0.10, "min_bad_rows": 10}
    assert ex.share_verdict(1, 6, **rules) == "warn"        # the UI backfill that failed
    assert ex.share_verdict(2, 11, **rules) == "warn"
    assert ex.share_verdict(4, 24, **rules) == "warn"
    assert ex.share_verdict(4, 636, **rules) == "pass"      # within tolerance is a pass
    assert ex.share_verdict(9_000, 10_000, **rules) == "block"  # a broken export
    assert ex.share_verdict(9, 9, **rules) == "warn"        # proven, but fewer than 10 rows
    assert ex.share_verdict(110, 1_000, **rules) == "warn"  # 11 %: interval reaches below 10 %
    assert ex.share_verdict(200, 1_000, **rules) == "block"


def test_share_checks_judge_each_day_so_the_window_does_not_matter():
    day = DAY
    per_day = {day + timedelta(days=i): (1, 6) for i in range(5)}
    per_day[day + timedelta(days=5)] = (500, 1000)  # a broken export on one day
    whole = ex.reject_share(per_day, max_share=0.1)
    assert (whole.passed, whole.severity) == (False, "ERROR")
    assert list(whole.metadata["days_above_tolerance"]) == [
        (day + timedelta(days=i)).isoformat() for i in range(6)]
    assert str(day + timedelta(days=5)) in whole.description
    # Day by day: the same days above the tolerance, the same verdict on each.
    singles = {d: ex.reject_share({d: n}, max_share=0.1) for d, n in per_day.items()}
    assert [o.severity for o in singles.values()] == ["WARN"] * 5 + ["ERROR"]
    merged = {k: v for o in singles.values() for k, v in o.metadata["days_above_tolerance"].items()}
    assert merged == whole.metadata["days_above_tolerance"]


def test_refunds_of_unknown_orders_warn_and_name_the_refund():
    rows = payments()
    assert ex.refunds_reference_orders(rows, rows).passed
    unlinked = rows.with_columns(where("refund_of_order_id", "T3", pl.lit("O404")))
    outcome = ex.refunds_reference_orders(unlinked, rows)
    assert (outcome.passed, outcome.severity) == (False, "WARN")
    assert outcome.metadata == {"refunds": 1, "unlinked": 1, "examples": ["T3"]}


def late_payment(days_ahead: int, transaction_id: str) -> dict:
    when = DAY + timedelta(days=days_ahead)
    return payment(transaction_id=transaction_id, created_at=f"{when}T10:00:00Z")


def test_rows_dated_after_arrival_warn_within_the_skew_and_fail_beyond():
    """Real rows: a source clock ahead gives created_at after the drop day they arrived in."""
    skewed = silver("payments", payment(), late_payment(1, "T2"))
    outcome = ex.event_time_not_after_arrival("payments", skewed)
    assert (outcome.passed, outcome.severity) == (False, "WARN")
    assert outcome.metadata["rows_ahead"] == 1 and outcome.metadata["examples"] == ["T2"]
    far = silver("payments", payment(), late_payment(1, "T2"), late_payment(3, "T3"))
    outcome = ex.event_time_not_after_arrival("payments", far)
    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    assert outcome.metadata == {"rows_ahead": 2, "rows_too_far_ahead": 1, "most_days_ahead": 3,
                                "examples": ["T3"]}  # the rows past the tolerance first
    assert ex.event_time_not_after_arrival("payments", far, max_days_ahead=3).severity == "WARN"


@pytest.mark.parametrize(
    ("today", "history", "passed", "ratio"),
    [
        (100, [90, 100, 110], True, 1.0),
        (149, [100] * 7, True, 1.49),
        (40, [100] * 7, False, 0.4),
        (151, [100] * 7, False, 1.51),
        (5, [100, 100], True, 0.05),  # too little history to judge
        (0, [], True, None),
        (3, [0, 0, 0], False, None),
    ],
)
def test_volume_warns_outside_the_trailing_mean(today, history, passed, ratio):
    outcome = ex.volume_vs_trailing_mean(today, history)
    assert (outcome.passed, outcome.severity) == (passed, "WARN")
    assert outcome.metadata["ratio"] == ratio
    assert outcome.metadata["days_compared"] == len(history)


def test_bronze_reconciles_with_silver_rejects_and_duplicates():
    frame = bronze("payments", payment(), payment(), payment(transaction_id="T2", amount="x"),
                   payment(transaction_id="T3"))
    result = clean("payments", frame, None, "test-key")
    counts = [len(result.rows.to_native()), len(result.rejects.to_native()),
              len(result.duplicates.to_native())]
    assert counts == [2, 1, 1]
    assert ex.reconciled_with_bronze(frame.height, *counts).passed
    lost = ex.reconciled_with_bronze(frame.height + 1, *counts)
    assert (lost.passed, lost.severity, lost.metadata["difference"]) == (False, "ERROR", 1)


def test_a_broken_export_rejects_too_many_rows():
    frame = bronze("payments", *[
        payment(transaction_id=f"T{i}", amount=f"{i},50") for i in range(1, 13)  # decimal commas
    ], payment(transaction_id="T99"))
    rejected = len(clean("payments", frame, None, "test-key").rejects.to_native())
    outcome = ex.reject_share({DAY: (rejected, frame.height)})
    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    assert (outcome.metadata["bad_rows"], outcome.metadata["rows"]) == (12, 13)
    assert "check the export's format" in outcome.description
    assert ex.reject_share({DAY: (1, 20)}).passed
    assert not ex.reject_share({DAY: (2, 20)}, max_share=0.05).passed
    assert ex.reject_share({}).passed and ex.reject_share({DAY: (0, 0)}).passed


def test_volume_is_judged_for_every_day_of_the_window():
    days = [DAY + timedelta(days=i) for i in range(10)]
    rows = {d: 100 for d in days} | {days[4]: 10}
    whole = ex.volume_by_day(rows, days, DAY)
    assert list(whole.metadata["days_outside"]) == [days[4].isoformat()]
    assert not whole.passed and whole.severity == "WARN"
    assert [ex.volume_by_day(rows, [d], DAY).passed for d in days] == [
        d != days[4] for d in days]


def test_outcomes_carry_no_personal_data():
    raw = customer(customer_id="C00000002", email="b@example.com", phone="+33612345678")
    secrets = {"Ada Lovelace", "Ada.Lovelace1@Example.com", "ada.lovelace1@example.com",
               "+44 7123 456789", "+447123456789", *(raw[c] for c in ("email", "phone"))}
    rows = pl.concat([customers(), customers()]).with_columns(  # duplicates, nulls, bad values
        pl.lit("paused").alias("status"), pl.lit(None, pl.Date).alias("event_date")
    )
    outcomes = [ex.keys_unique_and_present("customers", rows),
                ex.values_in_range("customers", rows),
                ex.schema_matches_contract("customers", rows.drop("email_hash"))]
    assert not any(o.passed for o in outcomes)
    text = repr(outcomes)
    hashes = set(rows["email_hash"]) | set(rows["phone_hash"])
    assert not [s for s in secrets | hashes if s in text]


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    session = spark_session()
    session.sparkContext.setLogLevel("ERROR")
    return session


def test_frame_checks_conclude_the_same_on_spark(spark):
    broken = {
        "keys": customers().with_columns(
            where("customer_id", "C00000003", pl.lit("C00000002"), key_column="customer_id")
        ),
        "orphans": payments().with_columns(where("customer_id", "T4", pl.lit("C00000099"))),
        "ahead": silver("payments", payment(), late_payment(1, "T2"), late_payment(3, "T3")),
    }

    def outcomes(to_engine):
        known = to_engine(known_ids())
        return [
            ex.keys_unique_and_present("customers", to_engine(broken["keys"])),
            ex.references_known_customers("payments", to_engine(broken["orphans"]), known),
            # Known ids from Polars next to rows on Spark are brought over.
            ex.references_known_customers("payments", to_engine(broken["orphans"]), known_ids()),
            ex.event_time_not_after_arrival("payments", to_engine(broken["ahead"])),
            ex.schema_matches_contract("payments", to_engine(payments())),
        ]

    on_polars = outcomes(lambda frame: frame)
    on_spark = outcomes(lambda frame: spark.createDataFrame(frame.to_arrow()))
    assert [o.passed for o in on_polars] == [False, False, False, False, True]
    assert on_spark == on_polars
