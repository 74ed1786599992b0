"""`churn-assets sql` with a user's mistakes: one line, no traceback; and it reads only the
project's tables, never a file named in the query."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from churn_assets.cli import main
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.settings import Paths


@pytest.fixture
def home(tmp_path, monkeypatch) -> Paths:
    paths = Paths(tmp_path / "home")
    store = DeltaTableStore(root=str(paths.lake))
    store.overwrite("gold.customer_features", pl.DataFrame(
        {"customer_id": ["C1", "C2"], "snapshot_date": [date(2026, 1, 1)] * 2,
         "segment": ["smb", "enterprise"]}))
    secret = tmp_path / "secret.csv"
    secret.write_text("email\nann@example.org\n")
    (tmp_path / "secret.parquet").write_bytes(b"")
    pl.DataFrame({"email": ["ann@example.org"]}).write_parquet(tmp_path / "secret.parquet")
    monkeypatch.setenv("CHURN_HOME", str(paths.home))
    monkeypatch.delenv("CHURN_ENV", raising=False)
    return paths


def sql(capsys, query: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["sql", query])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_question_over_the_tables_works(home, capsys):
    code, out, _ = sql(capsys, "SELECT segment, COUNT(*) AS n FROM gold_customer_features "
                               "GROUP BY segment ORDER BY segment")
    assert code == 0 and "enterprise" in out and "smb" in out


@pytest.mark.parametrize("reader", [
    "read_csv('{dir}/secret.csv')",
    "READ_CSV ('{dir}/secret.csv')",
    '"read_csv"(\'{dir}/secret.csv\')',
    "read_csv/**/('{dir}/secret.csv')",
    "read_parquet('{dir}/secret.parquet')",
])
def test_file_reading_functions_are_refused(home, capsys, reader):
    query = f"SELECT * FROM {reader.format(dir=home.home.parent)}"
    code, out, err = sql(capsys, query)
    assert code == 2 and "ann@example.org" not in out + err
    assert err.count("\n") == 1 and "only the project's tables" in err


@pytest.mark.parametrize(("query", "message"), [
    ("SELEC 1", "sql parser error"),
    ("SELECT nope FROM gold_customer_features", "nope"),
    ("SELECT * FROM scores_daily", "has not been materialized yet"),
    ("SELECT * FROM customers", "no table 'customers'"),
])
def test_user_errors_are_one_line(home, capsys, query, message):
    code, _, err = sql(capsys, query)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_a_documented_question_before_scores_exist(home, capsys):
    code, _, err = sql(capsys, "high_risk_customers")
    assert code == 2 and "scores_daily has not been materialized yet" in err
