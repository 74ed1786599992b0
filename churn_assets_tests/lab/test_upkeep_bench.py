"""The Delta upkeep benchmark on a few weeks of tiny commits: the numbers it reports are the
table's own."""

from __future__ import annotations

from churn_assets.lab.upkeep_bench import a_year_of_commits, upkeep_section


def test_three_weeks_of_commits_leave_re_dropped_files_that_upkeep_vacuums(tmp_path):
    result = a_year_of_commits(tmp_path / "a", days=21, customers=5)
    upkeep = result["upkeep"]
    assert result["commits"] == 24 and result["rows"] == 105 and result["identical"]
    assert (upkeep.before.files, upkeep.before.files_on_disk) == (21, 24)
    assert (upkeep.after.files, upkeep.after.files_on_disk) == (21, 21)
    assert upkeep.files_vacuumed == 3 and upkeep.files_compacted == 0


def test_the_section_is_a_markdown_table(tmp_path):
    lines = upkeep_section(tmp_path / "b", days=8, customers=3)
    assert lines[0].startswith("### Delta upkeep: 8 daily commits of 3 rows")
    assert sum(line.startswith("| ") for line in lines) == 4  # header, rule, before, after
    assert "reads back identical" in lines[-1]
