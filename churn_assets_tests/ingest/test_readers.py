"""Landing file readers: text as delivered, physical line numbers, and nothing silently dropped."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from churn_assets.ingest import readers
from churn_assets.ingest.readers import (
    QUARANTINE_SCHEMA,
    RAW_LIMIT,
    LandingFileError,
    ParsedFile,
    read_landing_file,
)


def parse(tmp_path: Path, name: str, content: bytes) -> ParsedFile:
    path = tmp_path / name
    path.write_bytes(content)
    parsed = read_landing_file(path)
    # The invariant every test relies on: each record is a row or a quarantined line.
    assert parsed.rows.height + parsed.quarantine.height == parsed.records_in_file
    assert dict(parsed.quarantine.schema) == QUARANTINE_SCHEMA
    assert parsed.rows.schema["_row_number"] == pl.Int64
    assert all(
        dtype == pl.String for name, dtype in parsed.rows.schema.items() if name != "_row_number"
    )
    return parsed


def reasons(parsed: ParsedFile) -> dict[int, str]:
    return dict(parsed.quarantine.select("_row_number", "reason").iter_rows())


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_rows_are_text_as_delivered_with_physical_line_numbers(tmp_path):
    content = (
        b"id,name,amount\r\n"
        b"1,alice,10.50\r\n"
        b"\r\n"  # blank line: not a record, but it still counts as a line
        b'2,"bob, jr",007\r\n'
        b'3,"say ""hi""",\r\n'
        b'4,"",""\r\n'
        b"   \r\n"
    )
    parsed = parse(tmp_path, "a.csv", content)
    assert parsed.records_in_file == 4
    assert parsed.quarantine.height == 0
    assert parsed.rows.columns == ["id", "name", "amount", "_row_number"]
    assert parsed.rows.rows() == [
        ("1", "alice", "10.50", 2),
        ("2", "bob, jr", "007", 4),
        ("3", 'say "hi"', "", 5),
        ("4", "", "", 6),
    ]


def test_csv_structural_errors_are_quarantined_with_reasons(tmp_path):
    content = (
        b"id,name,amount\n"
        b"1,alice,10\n"
        b"2,bob\n"
        b"3,carl,5,extra\n"
        b'4,"dana,7\n'
        b"5,\xff\xfeeve,1\n"
        b'6,"fred"x,1\n'
        b"7,gus,3\n"
    )
    parsed = parse(tmp_path, "b.csv", content)
    assert parsed.records_in_file == 7
    assert parsed.rows["_row_number"].to_list() == [2, 8]
    assert reasons(parsed) == {
        3: "expected 3 fields (header), found 2",
        4: "expected 3 fields (header), found 4",
        5: "unbalanced double quote",
        6: "invalid UTF-8",
        7: "stray double quote (quotes must enclose a whole field)",
    }
    raw = dict(parsed.quarantine.select("_row_number", "raw").iter_rows())
    assert raw[3] == "2,bob"
    assert raw[5] == '4,"dana,7'


def test_csv_reasons_for_few_bad_lines_among_many():
    """Regression: polars 2.1 panicked formatting reasons for lines filtered out of a large file."""
    header = "interaction_id,customer_id,campaign_id,channel,interaction_type,offer_code,discount_pct,occurred_at"
    rows = [f"M{i},C{i:08d},CMP-1,email,send,,,2026-04-24T10:00:00Z" for i in range(800)]
    rows[660] = "M660,C00000528,CMP-1,email,send,,2026-04-24T10:00:00Z"
    rows[721] = 'M721,"C00002506,CMP-1,email,send,,,2026-04-24T10:00:00Z'
    parsed = readers.parse_csv(("\n".join([header, *rows]) + "\n").encode())
    assert parsed.quarantine.select(readers.ROW_NUMBER, "reason").rows() == [
        (662, "expected 8 fields (header), found 7"),
        (723, "unbalanced double quote"),
    ]
    assert parsed.rows.height == 798


def test_csv_embedded_newline_is_quarantined_line_by_line(tmp_path):
    """The documented limit: a quoted newline splits a record into two unbalanced lines."""
    parsed = parse(tmp_path, "c.csv", b'id,note\n1,"two\nlines"\n2,ok\n')
    assert parsed.records_in_file == 3
    assert parsed.rows.rows() == [("2", "ok", 4)]
    assert reasons(parsed) == {2: "unbalanced double quote", 3: "unbalanced double quote"}


def test_csv_raw_line_is_truncated(tmp_path):
    parsed = parse(tmp_path, "d.csv", b"a,b\n" + b"x" * 5000 + b"\n")
    assert parsed.quarantine["raw"].str.len_chars().to_list() == [RAW_LIMIT]


def test_csv_bom_header_and_no_trailing_newline(tmp_path):
    parsed = parse(tmp_path, "e.csv", b"\xef\xbb\xbfid,v\n1,2")
    assert parsed.rows.rows() == [("1", "2", 2)]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"id,name,id\n", "duplicate column name 'id'"),
        (b"id,,name\n", "header column 2 has no name"),
        (b'id,"name\n', "header line is malformed (unbalanced double quote)"),
    ],
)
def test_csv_bad_header_fails_the_whole_file(tmp_path, header, message):
    path = tmp_path / "bad_header.csv"
    path.write_bytes(header + b"1,2,3\n")
    with pytest.raises(LandingFileError, match=re.escape(message)) as caught:
        read_landing_file(path)
    assert "bad_header.csv" in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"id,name\n"])
def test_csv_empty_or_header_only(tmp_path, content):
    parsed = parse(tmp_path, "f.csv", content)
    assert parsed.records_in_file == 0
    assert parsed.rows.height == 0


def test_csv_many_rows_keep_order(tmp_path):
    """Large enough to take the parallel line check; one bad line in the middle."""
    frame = pl.DataFrame({"id": [str(i) for i in range(250_000)], "note": ["a, b"] * 250_000})
    path = tmp_path / "big.csv"
    frame.write_csv(path)
    with path.open("ab") as handle:
        handle.write(b"oops\n")
    parsed = read_landing_file(path)
    assert parsed.records_in_file == 250_001
    assert parsed.rows.height == 250_000
    assert parsed.rows["_row_number"].is_sorted()
    assert parsed.rows.row(-1) == ("249999", "a, b", 250_001)
    assert reasons(parsed) == {250_002: "expected 2 fields (header), found 1"}


# --- JSON lines --------------------------------------------------------------------------------


def test_jsonl_values_become_text_and_bad_lines_get_reasons(tmp_path):
    lines = [
        '{"id": "e1", "n": 1, "amount": 12.5, "ok": true, "note": null}',
        "",
        '{"id": "e2", "extra": "late column"}',
        '{"id": "e3", "n": 2',  # truncated
        "[1, 2]",
        "42",
        '{"id": "e4", "nested": {"a": 1}}',
        '{"id": "e5", "text": "braces {inside} [strings] are fine"}',
        '{"id": "e6",}',
    ]
    parsed = parse(tmp_path, "events.jsonl", "\n".join(lines).encode())
    assert parsed.records_in_file == 8
    rows = {row["id"]: row for row in parsed.rows.iter_rows(named=True)}
    assert rows["e1"] | {} == {
        "id": "e1",
        "n": "1",
        "amount": "12.5",
        "ok": "true",
        "note": None,
        "extra": None,
        "text": None,
        "_row_number": 1,
    }
    assert rows["e2"]["extra"] == "late column" and rows["e2"]["n"] is None
    assert rows["e5"]["text"] == "braces {inside} [strings] are fine"
    got = reasons(parsed)
    assert got[4].startswith("invalid JSON: ")
    assert got[5] == got[6] == "not a JSON object"
    assert got[7] == "nested value in field 'nested' (expected a flat object)"
    assert got[9].startswith("invalid JSON: ")
    assert set(got) == {4, 5, 6, 7, 9}


def test_jsonl_invalid_utf8_and_nan(tmp_path):
    content = b'{"id": "a"}\n{"id": "\xff"}\n{"id": "b", "x": NaN}\n'
    parsed = parse(tmp_path, "t.ndjson", content)
    assert parsed.rows["id"].to_list() == ["a"]
    assert reasons(parsed)[2] == "invalid UTF-8"
    assert reasons(parsed)[3].startswith("invalid JSON")


def test_jsonl_fast_path_failure_falls_back_by_halves(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_JSON_LINES_PER_LINE_PATH", 2)
    lines = [json.dumps({"id": i}) for i in range(10)]
    lines[6] = '{"id": "6\\q"}'  # an unknown escape: flat by the grammar, refused by the reader
    lines[8] = '{"id": 8,}'  # not flat by the grammar: straight to the per-line path
    parsed = parse(tmp_path, "halves.json", "\n".join(lines).encode())
    assert parsed.rows["id"].to_list() == [str(i) for i in range(10) if i not in (6, 8)]
    assert list(reasons(parsed)) == [7, 9]


def test_jsonl_only_flat_objects_reach_the_fast_reader():
    flat = re.compile(readers._FLAT_JSON_OBJECT)
    for line in ('{}', ' { "a" : 1 , "b":"x\\"y", "c": null, "d": -2.5e-3, "e": true } ',
                 '{"a": "{[nested text]}"}'):
        assert flat.match(line), line
    for line in ('{"a": {"b": 1}}', '{"a": [1]}', "{'a': 1}", '{"a": 1,}', '{"a": nul}',
                 '"a": 1}', '{"a": 1', '{"a": 01}', '{"a": 1}{"b": 2}', '[{"a": 1}]'):
        assert not flat.match(line), line


def test_jsonl_empty_file(tmp_path):
    parsed = parse(tmp_path, "empty.jsonl", b"\n \n")
    assert parsed.records_in_file == 0


# --- Parquet -----------------------------------------------------------------------------------


def test_parquet_typed_columns_become_text(tmp_path):
    frame = pl.DataFrame(
        {
            "id": [1, 2, None],
            "amount": [12.5, None, 3.0],
            "active": [True, False, None],
            "day": [date(2024, 1, 31), None, date(2024, 2, 29)],
            "at": [datetime(2024, 1, 1, 10, 0), datetime(2024, 1, 1, 10, 0, 0, 250000), None],
            "name": ["a", "", None],
            "tags": [["x", "y"], None, []],
        }
    ).with_columns(at_utc=pl.col("at").dt.replace_time_zone("UTC"))
    frame.write_parquet(tmp_path / "c.parquet")
    parsed = parse(tmp_path, "c.parquet", (tmp_path / "c.parquet").read_bytes())
    assert parsed.records_in_file == 3
    assert parsed.rows.to_dicts()[0] == {
        "id": "1",
        "amount": "12.5",
        "active": "true",
        "day": "2024-01-31",
        "at": "2024-01-01T10:00:00",
        "name": "a",
        "tags": '["x","y"]',
        "at_utc": "2024-01-01T10:00:00+00:00",
        "_row_number": 1,
    }
    assert parsed.rows.row(1, named=True)["at"] == "2024-01-01T10:00:00.250"
    assert parsed.rows.row(1, named=True)["name"] == ""
    assert parsed.rows.row(2, named=True)["id"] is None


def test_corrupt_parquet_is_a_file_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(LandingFileError, match="broken.parquet"):
        read_landing_file(path)


# --- dispatch ----------------------------------------------------------------------------------


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(LandingFileError, match=r"unsupported file type '\.xlsx'"):
        read_landing_file(tmp_path / "x.xlsx")
    with pytest.raises(LandingFileError, match="missing.csv: file not found"):
        read_landing_file(tmp_path / "missing.csv")
