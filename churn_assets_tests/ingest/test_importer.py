"""Bring-your-own-data import: mappings, landing drops per day, rejects, idempotent re-imports."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from churn_assets.ingest.columns import COLUMNS
from churn_assets.ingest.importer import (
    ImportDataError,
    ImportMappingError,
    import_customers,
    import_transactions,
    parse_mapping,
)
from churn_assets.ingest.landing import find_drop, list_drops, write_drop
from churn_assets.ingest.readers import read_landing_file
from churn_assets.settings import Paths

RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)
RETAIL = RETAIL_HEADER + (
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n"
    '536365,71053,"WHITE METAL LANTERN, LARGE",6,12/1/2010 8:26,3.39,17850.0,United Kingdom\n'
    "536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,,United Kingdom\n"
    "C536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,12/2/2010 9:00,2.55,17850.0,United Kingdom\n"
    "C536999,22633,HAND WARMER UNION JACK,-1,12/2/2010 9:05,1.85,13047,United Kingdom\n"
    "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/13/2010 23:59,1.69,13047.0,France\n"
    "536368,84879,SHORT LINE,32,12/13/2010 23:59,1.69\n"
)
RETAIL_MAPPING = "customer_id=CustomerID,timestamp=InvoiceDate,amount=Quantity*UnitPrice,order_id=InvoiceNo,quantity=Quantity"


@pytest.fixture
def paths(tmp_path) -> Paths:
    home = tmp_path / "home"
    home.mkdir()
    # Online Retail data is from 2010: the partitions must start before it.
    (home / "settings.toml").write_text("[partitions]\nstart = 2010-12-01\n")
    return Paths(home)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def landed(paths: Paths, domain: str, day: str) -> pl.DataFrame:
    drop = find_drop(paths.landing, domain, date.fromisoformat(day))
    assert drop is not None, f"no {domain} drop for {day}"
    frames = [read_landing_file(file).rows for file in drop.file_paths()]
    return pl.concat(frames, how="diagonal").drop("_row_number")


# --- mappings ----------------------------------------------------------------------------------


def test_parse_mapping():
    assert parse_mapping(
        " customer_id = CustomerID , timestamp=InvoiceDate,amount=Quantity * UnitPrice,"
    ) == {
        "customer_id": "CustomerID",
        "timestamp": "InvoiceDate",
        "amount": "Quantity*UnitPrice",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id", "must look like target=SourceColumn"),
        ("customer_id=", "must look like target=SourceColumn"),
        ("customer=CustomerID", "unknown mapping target 'customer'"),
        ("customer_id=A,customer_id=B", "mapping target 'customer_id' is given twice"),
        ("customer_id=A,quantity=B*C", "only amount can be a product"),
        ("customer_id=A,amount=B*C*D", "must multiply exactly two columns"),
        ("", "the mapping is empty"),
    ],
)
def test_parse_mapping_errors(text, message):
    with pytest.raises(ImportMappingError, match=message):
        parse_mapping(text)


# --- transactions ------------------------------------------------------------------------------


def test_import_online_retail_export(tmp_path, paths):
    source = write(tmp_path, "online_retail.csv", RETAIL)
    report = import_transactions(source, parse_mapping(RETAIL_MAPPING), paths)

    assert (report.rows_read, report.rows_written, report.rows_rejected) == (7, 5, 2)
    assert report.days_written == (date(2010, 12, 1), date(2010, 12, 2), date(2010, 12, 13))
    assert (report.first_day, report.last_day) == (date(2010, 12, 1), date(2010, 12, 13))
    assert report.dropped_columns == ("StockCode", "Description", "Country")
    assert report.timestamp_format == "%m/%d/%Y %H:%M"
    assert [d.day for d in list_drops(paths.landing, "payments")] == list(report.days_written)

    first = landed(paths, "payments", "2010-12-01")
    assert first.columns == list(COLUMNS["payments"])
    assert first.select(
        "transaction_id",
        "order_id",
        "customer_id",
        "transaction_type",
        "status",
        "amount",
        "quantity",
        "created_at",
    ).rows() == [
        ("536365-1", "536365", "17850", "charge", "paid", "15.30", "6", "2010-12-01T08:26:00Z"),
        ("536365-2", "536365", "17850", "charge", "paid", "20.34", "6", "2010-12-01T08:26:00Z"),
    ]
    refunds = landed(paths, "payments", "2010-12-02")
    assert refunds.select(
        "order_id", "transaction_type", "amount", "quantity", "refund_of_order_id"
    ).rows() == [
        ("C536365", "refund", "-5.10", "2", "536365"),  # 536365 is in the file: linked
        ("C536999", "refund", "-1.85", "1", ""),  # 536999 is not: no guess
    ]

    rejected = pl.read_csv(report.reject_file, infer_schema=False)
    assert report.reject_file == paths.landing / "_rejected" / "online_retail-payments.csv"
    assert rejected.select("line", "reason").rows() == [
        ("4", "empty customer_id"),
        ("8", "expected 8 fields (header), found 6"),
    ]
    text = str(report)
    assert "7 rows read, 5 written, 2 rejected" in text and "Description" in text


def test_reimport_is_idempotent_and_only_changed_days_are_redropped(tmp_path, paths):
    source = write(tmp_path, "orders.csv", RETAIL)
    mapping = parse_mapping(RETAIL_MAPPING)
    import_transactions(source, mapping, paths)
    before = {d.day: (d.revision, d.fingerprint) for d in list_drops(paths.landing, "payments")}

    again = import_transactions(source, mapping, paths)
    assert again.days_written == ()
    assert len(again.days_unchanged) == 3
    assert {
        d.day: (d.revision, d.fingerprint) for d in list_drops(paths.landing, "payments")
    } == before

    write(
        tmp_path,
        "orders.csv",
        RETAIL.replace(
            "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32",
            "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,33",
        ),
    )
    changed = import_transactions(source, mapping, paths)
    assert changed.days_written == (date(2010, 12, 13),)
    assert find_drop(paths.landing, "payments", date(2010, 12, 13)).revision == 2
    assert find_drop(paths.landing, "payments", date(2010, 12, 1)).revision == 1


def test_import_keeps_other_files_of_the_same_day(tmp_path, paths):
    write_drop(paths.landing, "payments", date(2010, 12, 1), {"other.csv": b"transaction_id\nT1\n"})
    import_transactions(write(tmp_path, "orders.csv", RETAIL), parse_mapping(RETAIL_MAPPING), paths)
    drop = find_drop(paths.landing, "payments", date(2010, 12, 1))
    assert drop.files == ("orders.csv", "other.csv")


def test_quantity_and_unit_price_give_the_amount_and_timezone_moves_the_day(tmp_path, paths):
    source = write(
        tmp_path,
        "shop.csv",
        "order,customer,at,qty,price,currency\n"
        "A1,c1,2024-03-01 22:30:00,3,1.10,USD\n"
        "A2,c2,2024-03-02 08:00:00,1,5,USD\n",
    )
    mapping = parse_mapping(
        "customer_id=customer,timestamp=at,quantity=qty,unit_price=price,order_id=order,currency=currency"
    )
    report = import_transactions(source, mapping, paths, timezone="America/New_York")
    assert report.days_written == (date(2024, 3, 2),)  # 22:30 in New York is 03:30 UTC next day
    rows = landed(paths, "payments", "2024-03-02")
    assert rows.select("order_id", "amount", "currency", "created_at").rows() == [
        ("A1", "3.30", "USD", "2024-03-02T03:30:00Z"),
        ("A2", "5.00", "USD", "2024-03-02T13:00:00Z"),
    ]


def test_missing_mapped_column_names_it_and_lists_the_file_columns(tmp_path, paths):
    source = write(tmp_path, "orders.csv", RETAIL)
    with pytest.raises(ImportMappingError) as caught:
        import_transactions(
            source,
            parse_mapping("customer_id=Customer,timestamp=InvoiceDate,amount=Quantity*UnitPrice"),
            paths,
        )
    message = str(caught.value)
    assert "no column 'Customer' (mapped to customer_id)" in message
    assert "InvoiceNo, StockCode, Description" in message


def test_mapping_without_an_amount_is_refused(tmp_path, paths):
    source = write(tmp_path, "orders.csv", RETAIL)
    with pytest.raises(ImportMappingError, match=r"needs amount \(or quantity and unit_price\)"):
        import_transactions(
            source, parse_mapping("customer_id=CustomerID,timestamp=InvoiceDate"), paths
        )


def test_mostly_unparseable_timestamps_abort_with_line_and_hint(tmp_path, paths):
    lines = "".join(f"{i},c{i},{i + 1}/{i + 1}/2011 10:00,9.99\n" for i in range(12))
    lines += "".join(f"{i},c{i},2011-13-{i:02d} 10:00,9.99\n" for i in range(12, 40))
    source = write(tmp_path, "bad_dates.csv", "id,customer,at,amount\n" + lines)
    with pytest.raises(ImportDataError) as caught:
        import_transactions(
            source, parse_mapping("customer_id=customer,timestamp=at,amount=amount"), paths
        )
    message = str(caught.value)
    assert "column 'at'" in message and "--timestamp-format" in message
    assert "line 14: '2011-13-12 10:00'" in message


def test_a_few_bad_values_are_rejected_with_their_line(tmp_path, paths):
    good = "".join(f"o{i},c{i},2024-01-05T10:00:00Z,{i}.50\n" for i in range(30))
    source = write(
        tmp_path,
        "few.csv",
        "id,customer,at,amount\n"
        + good
        + "o99,c1,not a date,1\no98,c1,2024-01-05T11:00:00Z,12 EUR\n",
    )
    report = import_transactions(
        source, parse_mapping("customer_id=customer,timestamp=at,amount=amount,order_id=id"), paths
    )
    assert (report.rows_written, report.rows_rejected) == (30, 2)
    rejected = pl.read_csv(report.reject_file, infer_schema=False)
    assert rejected.rows() == [
        ("32", "timestamp does not match '%Y-%m-%dT%H:%M:%S%.f%#z'", "at", "not a date"),
        ("33", "amount is not a number", "amount", "12 EUR"),
    ]


def test_explicit_timestamp_format(tmp_path, paths):
    source = write(tmp_path, "eu.csv", "customer,at,amount\nc1,05/01/2024 10:00,1\n")
    report = import_transactions(
        source,
        parse_mapping("customer_id=customer,timestamp=at,amount=amount"),
        paths,
        timestamp_format="%d/%m/%Y %H:%M",
    )
    assert report.days_written == (date(2024, 1, 5),)


def test_ambiguous_day_month_order_is_reported(tmp_path, paths):
    source = write(tmp_path, "amb.csv", "customer,at,amount\nc1,05/01/2024 10:00,1\n")
    report = import_transactions(
        source, parse_mapping("customer_id=customer,timestamp=at,amount=amount"), paths
    )
    assert report.days_written == (date(2024, 5, 1),)
    assert "ambiguous" in str(report)


def test_rows_before_the_partition_start_point_to_the_settings(tmp_path, paths):
    source = write(tmp_path, "old.csv", "customer,at,amount\nc1,2009-06-30T10:00:00Z,1\n")
    with pytest.raises(ImportDataError) as caught:
        import_transactions(
            source, parse_mapping("customer_id=customer,timestamp=at,amount=amount"), paths
        )
    message = str(caught.value)
    assert "[partitions]\nstart = 2009-06-30" in message and "settings.toml" in message
    assert not (paths.landing / "payments").exists()


def test_unknown_timezone_and_unsupported_file(tmp_path, paths):
    source = write(tmp_path, "orders.csv", RETAIL)
    with pytest.raises(ImportMappingError, match="unknown timezone 'Mars/Base'"):
        import_transactions(source, parse_mapping(RETAIL_MAPPING), paths, timezone="Mars/Base")
    with pytest.raises(ImportDataError, match="export CSV or Parquet"):
        import_transactions(
            write(tmp_path, "orders.xlsx", "x"), parse_mapping(RETAIL_MAPPING), paths
        )
    with pytest.raises(ImportDataError, match="missing.csv"):
        import_transactions(tmp_path / "missing.csv", parse_mapping(RETAIL_MAPPING), paths)


def test_windows_1252_export_is_read(tmp_path, paths):
    source = tmp_path / "latin.csv"
    source.write_bytes("customer,at,amount,note\nc1,2024-01-05,1.5,café £\n".encode("cp1252"))
    report = import_transactions(
        source, parse_mapping("customer_id=customer,timestamp=at,amount=amount"), paths
    )
    assert report.rows_written == 1
    assert "Windows-1252" in str(report)


def test_parquet_source(tmp_path, paths):
    from datetime import datetime

    source = tmp_path / "orders.parquet"
    pl.DataFrame(
        {
            "cust": [101, 102],
            "ts": [datetime(2024, 2, 1, 9), datetime(2024, 2, 2, 9)],
            "total": [10.0, -4.5],
        }
    ).write_parquet(source)
    report = import_transactions(
        source, parse_mapping("customer_id=cust,timestamp=ts,amount=total"), paths
    )
    assert report.days_written == (date(2024, 2, 1), date(2024, 2, 2))
    refund = landed(paths, "payments", "2024-02-02")
    assert refund.select("customer_id", "transaction_type", "amount").rows() == [
        ("102", "refund", "-4.50")
    ]


# --- customers ---------------------------------------------------------------------------------

CUSTOMERS = (
    "CustomerID,Joined,Email,Country,Tier\n"
    "17850.0,2010-12-01 10:00:00,a@example.com,United Kingdom,gold\n"
    "13047,2010-12-05 23:30:00,,France,\n"
    ",2010-12-05 10:00:00,x@example.com,Spain,silver\n"
)


def test_customers_snapshot_keeps_extra_columns(tmp_path, paths):
    source = write(tmp_path, "crm.csv", CUSTOMERS)
    mapping = parse_mapping("customer_id=CustomerID,signup_at=Joined,email=Email")
    report = import_customers(source, mapping, paths, as_of=date(2011, 1, 1))
    assert (report.rows_written, report.rows_rejected) == (2, 1)
    assert report.extra_columns == ("Country", "Tier")
    drop = find_drop(paths.landing, "customers", date(2011, 1, 1))
    assert drop.files == ("crm.parquet",)
    rows = read_landing_file(drop.file_paths()[0]).rows
    assert rows.columns == [*COLUMNS["customers"], "Country", "Tier", "_row_number"]
    assert rows.select(
        "customer_id", "signup_at", "email", "updated_at", "Country", "Tier"
    ).rows() == [
        (
            "17850",
            "2010-12-01T10:00:00Z",
            "a@example.com",
            "2011-01-01T00:00:00Z",
            "United Kingdom",
            "gold",
        ),
        ("13047", "2010-12-05T23:30:00Z", None, "2011-01-01T00:00:00Z", "France", ""),
    ]
    again = import_customers(source, mapping, paths, as_of=date(2011, 1, 1))
    assert again.days_unchanged == (date(2011, 1, 1),) and again.days_written == ()


def test_customers_land_on_their_signup_day_without_as_of(tmp_path, paths):
    source = write(tmp_path, "crm.csv", CUSTOMERS)
    report = import_customers(
        source,
        parse_mapping("customer_id=CustomerID,signup_at=Joined"),
        paths,
        timezone="Europe/Paris",
    )
    # 23:30 in Paris is 22:30 UTC: still the 5th.
    assert report.days_written == (date(2010, 12, 1), date(2010, 12, 5))
    rows = landed(paths, "customers", "2010-12-05")
    # "Email" is the email column by name (ignoring case), not an extra beside it.
    assert rows.select("customer_id", "updated_at", "email").rows() == [
        ("13047", "2010-12-05T22:30:00Z", None)
    ]


def test_customers_with_no_cancellations_and_clashing_columns(tmp_path, paths):
    source = write(tmp_path, "crm.csv", "id,left,email\nc1,,a@x.io\nc2, ,b@x.io\n")
    report = import_customers(
        source, parse_mapping("customer_id=id,cancelled_at=left"), paths, as_of=date(2024, 1, 2)
    )
    # "email" has a target's name, so it maps itself; an empty cancellation date is no error.
    assert report.rows_written == 2 and report.extra_columns == ()
    rows = landed(paths, "customers", "2024-01-02")
    assert rows.select("customer_id", "email", "cancelled_at").rows() == [
        ("c1", "a@x.io", None),
        ("c2", "b@x.io", None),
    ]

    clashing = write(tmp_path, "clash.csv", "id,name,full_name\nc1,x,Ann Lee\n")
    with pytest.raises(ImportMappingError, match="unmapped column .name. clashes with the column .name."):
        import_customers(
            clashing, parse_mapping("customer_id=id,name=full_name"), paths, as_of=date(2024, 1, 2)
        )
