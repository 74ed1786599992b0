"""Every ``churn-assets`` command, as a user types it, on a tiny world in a temporary data root.

One world is simulated and run once for the module (``simulate`` then ``run``, with a 3-day
label horizon so it trains, scores and decides); ``sql`` and ``evaluate`` then read what ``run``
wrote. ``import`` gets its own data root. Each command's own tests (the simulator loop, the
importer, the SQL questions) live beside the code they test; these check the commands' wiring:
exit codes, what they print, and what they leave on disk.
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from churn_assets import catalog
from churn_assets.cli import main
from churn_assets.ingest.landing import list_drops
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.settings import Paths

SETTINGS = (
    "[labels]\nhorizon_days = 3\n"
    "[model]\ntraining_days = 12\nvalidation_days = 2\nauc_floor = 0.0\nbeat_recency = false\n"
    "[scoring]\noutcome_window_days = 2\n"
    "[decisions.policy]\ndaily_budget = 40.0\n"
)
# An explicit start: the default world ends yesterday, these dates are the test's own.
SIMULATE = ["simulate", "--customers", "150", "--days", "18", "--start", "2026-01-01", "--seed", "5",
            "--clean"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data root after ``simulate`` and ``run``, with what each printed."""
    home = tmp_path_factory.mktemp("cli") / "home"
    home.mkdir()
    (home / "settings.toml").write_text(SETTINGS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHURN_HOME", str(home))
        patch.delenv("CHURN_ENV", raising=False)
        patch.delenv("DAGSTER_HOME", raising=False)
        # Not the repository root: `run` keeps its Dagster instance under the data root.
        patch.chdir(home)
        printed = {}
        for name, argv in (("simulate", SIMULATE), ("simulate again", SIMULATE), ("run", ["run"])):
            exit_code, out = _call(argv)
            printed[name] = (exit_code, out)
        yield Paths(home), printed


def _call(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exit_code = main(argv)
    return exit_code, out.getvalue()


def test_simulate_writes_the_drops_and_a_repeat_is_a_no_op(world):
    paths, printed = world
    exit_code, out = printed["simulate"]
    assert exit_code == 0 and "simulating 150 customers over 18 days" in out
    assert {d.domain for d in list_drops(paths.landing)} == {
        "customers", "payments", "events", "tickets", "marketing"}
    assert max(d.day for d in list_drops(paths.landing)) == date(2026, 1, 18)
    assert (paths.truth / "customers.parquet").exists()
    exit_code, out = printed["simulate again"]
    assert exit_code == 0 and "nothing to do" in out


def test_run_materializes_the_graph_trains_scores_and_decides(world):
    paths, printed = world
    exit_code, out = printed["run"]
    assert exit_code == 0, out
    assert "running the asset graph for 2026-01-01 .. 2026-01-18" in out
    assert "churn labels for 2026-01-01 .. 2026-01-15" in out
    assert "churn_model v1" in out and "scores and decisions for" in out
    store = DeltaTableStore(root=str(paths.lake))
    for table in (catalog.CUSTOMER_FEATURES, catalog.CHURN_LABELS, catalog.SCORES,
                  catalog.ACTIONS):
        assert store.count_rows(table.full_name) > 0, table.full_name
    # The runs are ordinary Dagster runs in an instance under the data root.
    assert (paths.home / "dagster").is_dir()


def test_sql_lists_tables_and_answers_questions_and_queries(world, monkeypatch):
    paths, _ = world
    monkeypatch.setenv("CHURN_HOME", str(paths.home))
    monkeypatch.delenv("CHURN_ENV", raising=False)

    exit_code, out = _call(["sql", "--tables"])
    assert exit_code == 0
    for name in ("gold_customer_features", "scores_daily", "decisions_actions"):
        assert f"{name}: " in out and "not materialized" not in out.split(f"{name}: ")[1][:20]
    exit_code, out = _call(["sql", "--questions"])
    assert exit_code == 0 and "-- high_risk_customers" in out
    exit_code, out = _call(["sql", "SELECT COUNT(*) AS n FROM scores_daily"])
    scored = DeltaTableStore(root=str(paths.lake)).count_rows(catalog.SCORES.full_name)
    assert exit_code == 0 and str(scored) in out


def test_evaluate_writes_the_report_against_the_truth(world, monkeypatch):
    paths, _ = world
    monkeypatch.setenv("CHURN_HOME", str(paths.home))
    monkeypatch.delenv("CHURN_ENV", raising=False)

    exit_code, out = _call(["evaluate"])

    assert exit_code == 0, out
    report = json.loads((paths.reports / "model_evaluation.json").read_text())
    assert set(report["roc_auc"]) >= {"model", "baseline", "recency_alone", "hazard_oracle",
                                      "label_oracle"}
    assert report["scorer"] in ("lightgbm", "logistic_baseline")
    assert set(report["cltv"]["models"]) >= {"bgnbd_gamma_gamma"}
    assert "ROC-AUC model" in out and "CLTV on the holdout" in out and "full report:" in out


def test_evaluate_without_labels_says_what_to_run(tmp_path, monkeypatch, capsys):
    """Any world can be evaluated (a real one without oracles), once it has labels."""
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))

    assert main(["evaluate"]) == 2
    assert "run `churn-assets run` first" in capsys.readouterr().err


def test_import_turns_an_export_into_daily_drops_once(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.toml").write_text("[partitions]\nstart = 2010-12-01\n")
    monkeypatch.setenv("CHURN_HOME", str(home))
    export = tmp_path / "orders.csv"
    pl.DataFrame({
        "Invoice": ["1", "1", "2", "3"],
        "Customer": ["A", "A", "B", ""],
        "When": ["2010-12-01 08:00", "2010-12-01 08:00", "2010-12-02 09:30", "2010-12-02 10:00"],
        "Total": ["10.5", "10.5", "3.0", "1.0"],
    }).write_csv(export)
    argv = ["import", "transactions", str(export),
            "--map", "customer_id=Customer,timestamp=When,amount=Total,order_id=Invoice"]

    exit_code, out = _call(argv)

    assert exit_code == 0, out
    # Line 3 repeats line 2 exactly: imported once, the copy listed; line 5 has no customer.
    assert "4 rows read" in out and "2 written, 2 rejected" in out and "duplicate" in out
    assert [d.day for d in list_drops(Paths(home).landing, "payments")] == [
        date(2010, 12, 1), date(2010, 12, 2)]
    exit_code, again = _call(argv)
    assert exit_code == 0 and "0 dropped, 2 unchanged" in again


def test_a_user_mistake_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))

    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "no complete drops" in err and "Traceback" not in err
