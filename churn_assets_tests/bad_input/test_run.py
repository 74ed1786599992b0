"""`churn-assets run` with bad drops and bad days: every good day runs, the run ends non-zero with
a summary of what it skipped and why; the Dagster instance survives concurrent first use and a
killed run does not stay STARTED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta

import dagster as dg

from churn_assets.cli import main
from churn_assets.definitions import daily_partitions
from churn_assets.ingest.landing import MARKER, find_drop, write_drop
from churn_assets.lab.runner import PID_TAG, persistent_instance, plan_run
from churn_assets.settings import load_settings
from churn_assets_tests.bad_input.conftest import TINY_LAST, TINY_START, delta, rows_on

DAY2 = TINY_START + timedelta(days=1)
FUTURE = date(2999, 1, 1)


def break_day2_and_add_a_future_day(paths):
    (paths.landing / "payments" / DAY2.isoformat() / MARKER).write_bytes(b"")
    header = find_drop(paths.landing, "payments", TINY_START).file_paths()[0].read_bytes()
    write_drop(paths.landing, "payments", FUTURE, {"far.csv": header.split(b"\n")[0] + b"\n"})


def test_plan_skips_bad_drops_and_days_outside_the_partitions(tiny_world):
    paths = tiny_world
    break_day2_and_add_a_future_day(paths)
    plan = plan_run(paths, daily_partitions(load_settings(paths)), TINY_START, FUTURE)
    assert plan.ranges[0] == (TINY_START, TINY_START)
    assert plan.ranges[1][0] == DAY2 + timedelta(days=1) and len(plan.ranges) == 2
    assert DAY2 in plan.skipped_days and FUTURE in plan.skipped_days
    reasons = {start: reason for start, _, reason in plan.skipped}
    assert "Hadoop-style" in reasons[DAY2] and f"payments/{DAY2}" in reasons[DAY2]
    assert any("in the future" in reason for reason in reasons.values())


def test_run_runs_every_good_day_and_ends_non_zero(tiny_world, tmp_path, monkeypatch, capsys):
    paths = tiny_world
    break_day2_and_add_a_future_day(paths)
    monkeypatch.setenv("CHURN_HOME", str(paths.home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # no dagster.yaml here: the instance goes under the data root

    assert main(["run", "--through", str(TINY_LAST)]) == 1
    err = capsys.readouterr().err
    assert "not everything ran" in err and f"skipped {DAY2}" in err and "Hadoop-style" in err
    silver = delta(paths, "silver.payments")
    for day in (TINY_START, TINY_LAST):
        assert rows_on(silver, "arrival_date", day) > 0
    assert rows_on(silver, "arrival_date", DAY2) == 0
    assert delta(paths, "gold.customer_features").height > 0


SLOW_RUN = textwrap.dedent("""
    import time, dagster as dg
    from churn_assets.lab.runner import persistent_instance, process_tags

    @dg.op
    def wait():
        time.sleep(120)

    with persistent_instance() as instance:
        dg.GraphDefinition("slow", node_defs=[wait]).to_job().execute_in_process(
            instance=instance, tags=process_tags())
""")


def test_a_killed_run_is_marked_failed_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", SLOW_RUN], cwd=tmp_path, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with persistent_instance() as instance:
                runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            if runs:
                break
            time.sleep(0.5)
        assert runs and runs[0].tags[PID_TAG] == str(child.pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with persistent_instance() as instance:
        run = instance.get_run_by_id(runs[0].run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE


def test_two_first_uses_of_a_new_instance_at_once(tmp_path):
    script = ("from churn_assets.lab.runner import persistent_instance\n"
              "with persistent_instance() as instance:\n    instance.get_runs(limit=1)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CHURN_HOME": str(tmp_path)}
    env.pop("DAGSTER_HOME", None)
    children = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env,
                                 stderr=subprocess.PIPE) for _ in range(2)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
