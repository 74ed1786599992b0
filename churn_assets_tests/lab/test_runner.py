"""What `churn-assets run` keys its skips on: the code of the whole package."""

from __future__ import annotations

import shutil
from pathlib import Path

import churn_assets
from churn_assets.lab.runner import code_version


def test_a_change_anywhere_in_the_package_changes_the_code_version(tmp_path):
    package = Path(churn_assets.__file__).resolve().parent
    # The default digests the whole package, not the folder the runner lives in (lab/).
    assert code_version() == code_version(package) != code_version(package / "lab")
    copy = tmp_path / "churn_assets"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_version(copy)
    assert before == code_version(package)
    gold = copy / "transforms" / "gold.py"
    gold.write_text(gold.read_text() + "\n# a changed transform\n")
    assert code_version(copy) != before
