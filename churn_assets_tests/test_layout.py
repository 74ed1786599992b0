"""The dependency rules of ARCHITECTURE.md, checked on the package's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import churn_assets

PACKAGE = Path(churn_assets.__file__).parent


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize(("folder", "never"), [
    ("transforms", ("churn_assets.resources", "churn_assets.steps", "churn_assets.assets")),
    ("ml", ("churn_assets.assets", "churn_assets.steps", "churn_assets.lab")),
    ("decisions", ("churn_assets.assets", "churn_assets.steps", "churn_assets.lab")),
    ("simulator", ("churn_assets.assets", "churn_assets.steps", "churn_assets.resources")),
    ("steps", ("churn_assets.assets", "churn_assets.lab", "dagster")),
])
def test_a_layer_never_imports_what_it_must_not(folder, never):
    for path in modules(folder):
        bad = sorted(m for m in imports(path) if m.startswith(never))
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_no_asset_module_imports_another():
    names = {p.stem for p in modules("assets")} - {"__init__", "common"}
    for path in modules("assets"):
        sideways = sorted(m for m in imports(path) for name in names - {path.stem}
                          if m.startswith(f"churn_assets.assets.{name}"))
        assert not sideways, f"assets/{path.name} imports {sideways}: take keys from catalog.py"


def test_the_graph_never_imports_the_lab():
    graph = [p for p in PACKAGE.rglob("*.py")
             if p.parent.name != "lab" and p.name not in ("cli.py",)]
    for path in graph:
        lab = sorted(m for m in imports(path) if m.startswith("churn_assets.lab"))
        assert not lab, f"{path.relative_to(PACKAGE)} imports the lab: {lab}"


# A storage class configured in dagster.yaml can only extend Dagster's own (ARCHITECTURE.md).
PRIVATE_DAGSTER_ALLOWED = {"resources/event_log.py"}


def test_no_private_dagster_imports():
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() in PRIVATE_DAGSTER_ALLOWED:
            continue
        private = sorted(m for m in imports(path) if m.startswith("dagster._"))
        assert not private, f"{path.relative_to(PACKAGE)} imports {private}"


def test_the_modules_the_suite_starts_with_exist():
    """A renamed slow module would silently fall back to xdist's order and unbalance the workers."""
    from churn_assets_tests.conftest import SLOWEST_MODULES

    missing = [m for m in SLOWEST_MODULES if not (PACKAGE.parent / m).is_file()]
    assert not missing, f"conftest.SLOWEST_MODULES names modules that do not exist: {missing}"
