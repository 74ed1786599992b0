"""`churn-assets import` with bad exports: a value that does not parse is a rejected line with its
reason, never a traceback; a file that cannot be imported as a whole is one clear error. In every
accepted import, lines in the file = rows written + rows rejected."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from churn_assets.cli import main
from churn_assets.ingest.importer import (
    ImportDataError,
    ImportMappingError,
    import_customers,
    import_transactions,
    parse_mapping,
)
from churn_assets.ingest.landing import find_drop, list_drops
from churn_assets.ingest.readers import read_landing_file
from churn_assets.settings import Paths

HEADER = "InvoiceNo,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
GOOD = ["1001,2,12/1/2010 8:26,2.50,17850", "1002,1,12/2/2010 9:00,4.00,13047",
        "1003,3,12/3/2010 10:00,1.00,13047"]
MAPPING = parse_mapping(
    "customer_id=CustomerID,timestamp=InvoiceDate,amount=Quantity*UnitPrice,order_id=InvoiceNo,"
    "quantity=Quantity")


@pytest.fixture
def paths(tmp_path) -> Paths:
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.toml").write_text("[partitions]\nstart = 2010-12-01\n")
    return Paths(home)


def export(tmp_path: Path, lines: list[str], name="orders.csv", header=HEADER,
           encoding="utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes((header + "".join(f"{line}\n" for line in lines)).encode(encoding))
    return path


def rejected(paths: Paths, name="orders-payments.csv") -> pl.DataFrame:
    return pl.read_csv(paths.landing / "_rejected" / name, infer_schema=False)


def landed_rows(paths: Paths, domain="payments") -> int:
    return sum(read_landing_file(f).records_in_file
               for d in list_drops(paths.landing, domain) for f in d.file_paths())


def assert_nothing_lost(report, lines: int, paths: Paths, domain="payments"):
    assert report.rows_read == lines == report.rows_written + report.rows_rejected
    assert landed_rows(paths, domain) == report.rows_written


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1004,NaN,12/3/2010 10:00,1.00,13047", "is not a number"),
        ("1004,1,12/3/2010 10:00,inf,13047", "infinite or larger"),
        ("1004,1,12/3/2010 10:00,1e17,13047", "infinite or larger"),
        ("1004,1,13/45/2010 99:00,1.00,13047", "does not match"),
    ],
    ids=["nan", "inf", "huge", "bad_date"],
)
def test_unparseable_values_are_rejected_with_line_and_reason(tmp_path, paths, line, reason):
    report = import_transactions(export(tmp_path, [*GOOD, line]), MAPPING, paths)
    assert_nothing_lost(report, 4, paths)
    (row,) = rejected(paths).rows(named=True)
    assert row["line"] == "5" and reason in row["reason"]


def test_a_far_future_date_is_rejected_with_its_line(tmp_path, paths):
    report = import_transactions(
        export(tmp_path, [*GOOD, "1004,1,1/1/2999 10:00,1.00,13047"]), MAPPING, paths)
    assert_nothing_lost(report, 4, paths)
    (row,) = rejected(paths).rows(named=True)
    assert row["line"] == "5" and "outside the plausible days" in row["reason"]
    assert all(d.day.year == 2010 for d in list_drops(paths.landing))


def test_tomorrow_is_plausible_but_next_week_is_not(tmp_path, paths):
    today = datetime.now(UTC).date()
    lines = [f"1,1,{(today + timedelta(days=1)):%m/%d/%Y} 00:30,1.00,A",
             f"2,1,{(today + timedelta(days=7)):%m/%d/%Y} 00:30,1.00,A"]
    report = import_transactions(export(tmp_path, lines), MAPPING, paths)
    assert report.rows_written == 1 and report.rows_rejected == 1


def test_identical_lines_are_imported_once_unless_kept(tmp_path, paths):
    source = export(tmp_path, [*GOOD, GOOD[0], GOOD[0]])
    report = import_transactions(source, MAPPING, paths)
    assert_nothing_lost(report, 5, paths)
    rows = rejected(paths)
    assert rows["line"].to_list() == ["5", "6"]
    assert rows["value"].to_list() == ["same as line 2"] * 2
    assert "duplicate" in str(report)

    kept = import_transactions(source, MAPPING, paths, keep_duplicates=True)
    assert kept.rows_written == 5 and kept.rows_rejected == 0


def test_a_reimport_empties_days_it_no_longer_has(tmp_path, paths):
    import_transactions(export(tmp_path, GOOD), MAPPING, paths)
    corrected = import_transactions(export(tmp_path, GOOD[:2]), MAPPING, paths)
    assert corrected.days_emptied == (date(2010, 12, 3),)
    assert "1 day(s) emptied" in str(corrected)
    drop = find_drop(paths.landing, "payments", date(2010, 12, 3))
    assert drop.files == () and drop.source_shrank
    assert landed_rows(paths) == 2


def test_a_file_mixing_encodings_names_the_first_bad_line(tmp_path, paths):
    path = tmp_path / "orders.csv"
    path.write_bytes(HEADER.encode() + "1001,2,12/1/2010 8:26,2.50,Zoë\n".encode()
                     + "1002,1,12/2/2010 9:00,4.00,Zoë\n".encode("latin-1"))
    with pytest.raises(ImportDataError, match="mixes encodings.*line 3"):
        import_transactions(path, MAPPING, paths)


def test_a_legacy_encoded_file_is_read_whole_as_windows_1252(tmp_path, paths):
    source = export(tmp_path, ["1001,2,12/1/2010 8:26,2.50,Zoë"], encoding="cp1252")
    report = import_transactions(source, MAPPING, paths)
    assert report.rows_written == 1 and "Windows-1252" in str(report)
    drop = find_drop(paths.landing, "payments", date(2010, 12, 1))
    assert "ZOË" in drop.file_paths()[0].read_text().upper()


@pytest.mark.parametrize("separator", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_other_delimiters_are_detected(tmp_path, paths, separator):
    lines = [line.replace(",", separator) for line in GOOD]
    source = export(tmp_path, lines, header=HEADER.replace(",", separator))
    report = import_transactions(source, MAPPING, paths)
    assert_nothing_lost(report, 3, paths)
    assert "detected from the header" in str(report)


def test_delimiter_can_be_named(tmp_path, paths):
    # A header with no separator at all (one column) cannot be detected: --delimiter says it.
    source = export(tmp_path, ["a;b"], header="only\n")
    with pytest.raises(ImportMappingError, match="no column 'CustomerID'"):
        import_transactions(source, MAPPING, paths, delimiter=";")
    with pytest.raises(ImportMappingError, match="one character"):
        import_transactions(source, MAPPING, paths, delimiter=";;")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
    (b"\xef\xbb\xbf", "the file is empty"),
    (HEADER.encode(), "has a header .* but no rows"),
], ids=["empty", "blank_lines", "bom_only", "header_only"])
def test_empty_and_header_only_files(tmp_path, paths, content, message):
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    with pytest.raises(ImportDataError, match=message):
        import_transactions(path, MAPPING, paths)


def test_a_long_line_is_cut_in_messages(tmp_path, paths, capsys):
    path = tmp_path / "huge.csv"
    path.write_bytes(b"x" * 2_000_000)  # one 2 MB "header", no newline
    assert main_import(paths, path) == 2
    err = capsys.readouterr().err
    assert len(err) < 1000 and "has a header" in err and "…" in err

    path.write_bytes(HEADER.encode() + b"1,1," + b"y" * 2_000_000 + b",1.0,A\n")
    assert main_import(paths, path) == 2
    err = capsys.readouterr().err
    assert len(err) < 1000 and "cannot tell how column 'InvoiceDate'" in err and "characters)" in err


def main_import(paths: Paths, path: Path, *extra: str) -> int:
    import os

    old = os.environ.get("CHURN_HOME")
    os.environ["CHURN_HOME"] = str(paths.home)
    try:
        return main(["import", "transactions", str(path), "--map",
                     "customer_id=CustomerID,timestamp=InvoiceDate,amount=Quantity*UnitPrice",
                     *extra])
    finally:
        if old is None:
            os.environ.pop("CHURN_HOME")
        else:
            os.environ["CHURN_HOME"] = old


def test_crlf_bom_and_nul_bytes(tmp_path, paths):
    path = tmp_path / "orders.csv"
    body = HEADER + "".join(f"{line}\n" for line in GOOD) + "1004,1,12/3/2010 10:00,1.00,AB\x00C\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode())
    report = import_transactions(path, MAPPING, paths)
    assert_nothing_lost(report, 4, paths)
    assert report.rows_written >= 3


CUSTOMERS = "id,created,Email,email_address,Segment\nc1,2011-01-01,a@x.io,b@y.io,smb\n"


def test_extra_column_clashing_with_a_contract_column_ignoring_case(tmp_path, paths):
    path = tmp_path / "crm.csv"
    path.write_text(CUSTOMERS)
    mapping = parse_mapping("customer_id=id,signup_at=created,email=email_address")
    with pytest.raises(ImportMappingError, match="'Email' clashes with the column 'email'"):
        import_customers(path, mapping, paths)
    assert not (paths.landing / "customers").exists()


def test_wrong_types_in_parquet_are_rejected_not_crashed(tmp_path, paths):
    path = tmp_path / "orders.parquet"
    pl.DataFrame({
        "InvoiceNo": [1001, 1002], "Quantity": [2.0, float("nan")],
        "InvoiceDate": [datetime(2010, 12, 1, 8), datetime(2010, 12, 2, 9)],
        "UnitPrice": ["2.50", "x"], "CustomerID": [17850.0, 13047.0],
    }).write_parquet(path)
    report = import_transactions(path, MAPPING, paths)
    assert_nothing_lost(report, 2, paths)
    assert report.rows_rejected == 1


def test_an_unreadable_file_is_one_line(tmp_path, paths, capsys):
    path = export(tmp_path, GOOD)
    path.chmod(0)
    try:
        if path.open("rb"):  # root reads anything: nothing to test then
            pytest.skip("running as a user who can read a mode-000 file")
    except PermissionError:
        pass
    finally:
        pass
    assert main_import(paths, path) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Permission denied" in err
