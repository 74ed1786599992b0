"""A snapshot of the asset graph's specs, so a renamed key, a lost check or a changed partition is
a failing test rather than a surprise in the UI.

The snapshot (``snapshots/asset_specs.json``) holds, per asset: group, kinds in each environment,
owners, tags, description, partitions, dependencies, automation, freshness and metadata keys;
and per check: its asset, whether it blocks, and its description. When a change to the graph is
intended, regenerate it and review the diff with the change:

    CHURN_UPDATE_SNAPSHOTS=1 python -m pytest churn_assets_tests/test_asset_specs.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from churn_assets import catalog
from churn_assets.definitions import build_definitions
from churn_assets.settings import Paths, Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"
UPDATE = os.environ.get("CHURN_UPDATE_SNAPSHOTS") == "1"


def _partitions(spec: dg.AssetSpec) -> str | None:
    partitions = spec.partitions_def
    if partitions is None:
        return None
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return (f"{type(partitions).__name__}(start={partitions.start.date()}, "
                f"timezone={partitions.timezone}, end_offset={partitions.end_offset})")
    return type(partitions).__name__


def _freshness(spec: dg.AssetSpec) -> dict | None:
    policy = spec.freshness_policy
    if policy is None:
        return None
    return {"fail_window": str(policy.fail_window.to_timedelta()),
            "warn_window": str(policy.warn_window.to_timedelta()) if policy.warn_window else None}


def _condition(condition: dg.AutomationCondition | None) -> str | None:
    """The condition's tree by name (a label like "eager" hides what was changed inside)."""
    if condition is None:
        return None
    children = ", ".join(_condition(child) for child in condition.children)
    return f"{condition.name}({children})" if children else condition.name


def _dep(dep: dg.AssetDep) -> str:
    mapping = dep.partition_mapping
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return (f"{dep.asset_key.to_user_string()} [{mapping.start_offset}, "
                f"{mapping.end_offset}]")
    return dep.asset_key.to_user_string()


def graph_snapshot(tmp_path: Path) -> dict:
    # Settings are the defaults: the snapshot says what a fresh checkout builds.
    paths, settings = Paths(tmp_path), Settings()
    by_env = {env: build_definitions(paths, settings, env=env) for env in ("local", "spark")}
    local = by_env["local"]
    databricks = catalog.label(local.assets, "databricks", settings)
    kinds = {env: {s.key: sorted(s.kinds) for a in defs.assets for s in a.specs}
             for env, defs in by_env.items()}
    kinds["databricks"] = {s.key: sorted(s.kinds) for a in databricks for s in a.specs}

    assets, checks = {}, {}
    for definition in local.assets:
        for spec in definition.specs:
            assets[spec.key.to_user_string()] = {
                "group": spec.group_name,
                "kinds": {env: found[spec.key] for env, found in kinds.items()},
                "owners": list(spec.owners),
                "tags": {k: v for k, v in sorted(spec.tags.items())
                         if not k.startswith("dagster/kind/")},
                "description": spec.description,
                "partitions": _partitions(spec),
                "deps": sorted(_dep(dep) for dep in spec.deps),
                "automation": _condition(spec.automation_condition),
                "freshness": _freshness(spec),
                "skippable": spec.skippable,
                "metadata": sorted(spec.metadata),
            }
        for check in definition.check_specs:
            checks[f"{check.asset_key.to_user_string()}:{check.name}"] = {
                "blocking": check.blocking, "description": check.description}
    for definition in local.asset_checks or []:
        for check in definition.check_specs:
            checks[f"{check.asset_key.to_user_string()}:{check.name}"] = {
                "blocking": check.blocking, "description": check.description}
    return {"assets": dict(sorted(assets.items())), "checks": dict(sorted(checks.items()))}


def test_the_asset_graph_matches_its_snapshot(tmp_path):
    current = graph_snapshot(tmp_path)
    text = json.dumps(current, indent=1, sort_keys=True, default=str) + "\n"
    if UPDATE or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text)
    stored = json.loads(SNAPSHOT.read_text())
    current = json.loads(text)
    added = sorted(set(current["assets"]) - set(stored["assets"]))
    removed = sorted(set(stored["assets"]) - set(current["assets"]))
    assert not added and not removed, (
        f"assets added {added}, removed {removed}: if intended, regenerate the snapshot "
        "(CHURN_UPDATE_SNAPSHOTS=1, see this module's docstring)")
    changed = {key: {field: (stored["assets"][key][field], value)
                     for field, value in spec.items() if stored["assets"][key].get(field) != value}
               for key, spec in current["assets"].items()}
    changed = {key: fields for key, fields in changed.items() if fields}
    assert not changed, (
        f"asset specs changed (snapshot, now): {changed}. If intended, regenerate the snapshot "
        "(CHURN_UPDATE_SNAPSHOTS=1, see this module's docstring)")
    assert current["checks"] == stored["checks"], (
        "asset checks changed: if intended, regenerate the snapshot (CHURN_UPDATE_SNAPSHOTS=1)")


def test_every_asset_is_in_the_catalogue_and_labelled_by_it(tmp_path):
    defs = build_definitions(Paths(tmp_path), Settings(), env="spark")
    for definition in defs.assets:
        for spec in definition.specs:
            table = catalog.table_for(spec.key)
            assert spec.group_name == table.layer
            assert spec.kinds == table.kinds("spark")
            assert {"layer", "domain", "pii"} <= set(spec.tags)
            assert spec.owners == [table.owner]



def test_the_automation_sensor_can_order_the_graph(tmp_path):
    """The automation daemon orders assets by key, ignoring partition offsets: a dependency
    between two gold tables on each other's previous day is a cycle there, and the daemon's
    every tick fails (while definitions still load)."""
    graph = build_definitions(Paths(tmp_path)).resolve_asset_graph()
    levels = graph.toposorted_entity_keys_by_level
    order = {key: i for i, level in enumerate(levels) for key in level}
    gold = [catalog.CUSTOMER_STATE.key, catalog.CUSTOMER_CATEGORIES.key,
            catalog.CUSTOMER_FEATURES.key]
    # The three tables of one computation share their dependencies, so they sit on one level.
    assert len({order[key] for key in gold}) == 1
    assert order[catalog.DAILY_ACTIVITY.key] < order[catalog.CUSTOMER_FEATURES.key]
