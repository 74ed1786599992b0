"""`churn-assets run` against a persistent Dagster home: a rerun recomputes only what changed."""

from __future__ import annotations

import re

from churn_assets.cli import main


def test_a_rerun_after_a_horizon_change_recomputes_only_the_labels(
        dirty_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHURN_HOME", str(dirty_world.home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    dirty_world.settings_file.write_text("[labels]\nhorizon_days = 4\n")
    assert main(["run", "--days-per-run", "7"]) == 0
    first = capsys.readouterr().out
    assert "skipped" not in first and "churn labels for" in first

    dirty_world.settings_file.write_text("[labels]\nhorizon_days = 3\n")
    assert main(["run", "--days-per-run", "7"]) == 0
    second = capsys.readouterr().out
    daily, labels = second.split("churn labels for")
    chunks = re.findall(r"^\[\d+/\d+\] .*$", daily, flags=re.M)
    assert chunks and all("unchanged" in line and "skipped" in line for line in chunks), daily
    label_chunks = re.findall(r"^\[\d+/\d+\] .*$", labels, flags=re.M)
    assert label_chunks and not any("skipped" in line for line in label_chunks), labels

    # Nothing changed at all: nothing is recomputed.
    assert main(["run", "--days-per-run", "7"]) == 0
    third = capsys.readouterr().out
    lines = re.findall(r"^\[\d+/\d+\] .*$", third, flags=re.M)
    assert lines and all("skipped" in line for line in lines), third
