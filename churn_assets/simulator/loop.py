"""Closing the loop: the pipeline's decisions become the simulated world's retention actions.

The pipeline writes ``decisions.actions`` (read by the caller through the environment's table
store and handed in, so the simulator needs no engine): one row per selected customer and ``snapshot_date``, the day whose data the decision was made from.
The CRM contacts the customer the next morning, so a decision of day D is the simulator's action
on ``day = D + 1``: a ``RET-…`` marketing row in that day's drop, and a lower hazard from D + 2 on
(``simulate``). Control-group rows are measured, never treated, so they are not actions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from churn_assets.simulator.config import SimConfig

ACTION_COLUMNS = ("customer_id", "snapshot_date", "action", "control")


def decided_actions(decisions: pl.DataFrame | None, table: str) -> tuple[pl.DataFrame, int]:
    """The treated rows of ``decisions`` (the pipeline's ``decisions.actions``, found at
    ``table``; None when it does not exist) as simulator actions (customer_id, day, action), with
    ``day = snapshot_date + 1``; and how many control rows were left out."""
    if decisions is None:
        raise FileNotFoundError(
            f"--apply-actions: no decisions.actions table at {table} (run the pipeline "
            "through its decisions first, or leave out --apply-actions)")
    missing = [c for c in ACTION_COLUMNS if c not in decisions.columns]
    if missing:
        raise ValueError(f"decisions.actions at {table} lacks columns {missing}; expected at "
                         f"least {', '.join(ACTION_COLUMNS)}")
    treated = decisions.filter(pl.col("control").eq(False))
    actions = treated.select(
        pl.col("customer_id").cast(pl.String),
        day=pl.col("snapshot_date").cast(pl.Date) + timedelta(days=1),
        action=pl.col("action").cast(pl.String),
    ).sort("day", "customer_id", "action")
    return actions, decisions.height - treated.height


def actions_fingerprint(actions: pl.DataFrame | None, through: date) -> str | None:
    """A digest of the actions executed through ``through`` (``None`` when there are none), so a
    run's stamp changes exactly when the simulated world would."""
    if actions is None:
        return None
    due = actions.filter(pl.col("day") <= through).select("customer_id", "day", "action")
    if due.height == 0:
        return None
    text = due.sort(pl.all()).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()


def executed_through(actions: pl.DataFrame, until: date) -> int:
    """How many of ``actions`` are executed on or before ``until``."""
    return actions.filter(pl.col("day") <= until).height


def simulation_stamp(config: SimConfig, until: date, actions: pl.DataFrame | None) -> dict:
    """What a run into a data root simulated: the world (config), how far (until) and what was
    done to it (the actions executed through ``until``). Equal stamps mean equal landing zones."""
    return {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "until": until.isoformat(),
        "actions": actions_fingerprint(actions, until),
    }


def read_stamp(path: Path, config: SimConfig) -> dict | None:
    """The stamp of the previous run, if any. A stamp written before ``until`` existed (the bare
    config) means the whole history, without actions."""
    try:
        stamp = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(stamp, dict):
        return None
    if "config" not in stamp:
        last = config.start + timedelta(days=config.days - 1)
        stamp = {"config": stamp, "until": last.isoformat(), "actions": None}
    return stamp


def check_same_history(previous: dict, wanted: dict, actions: pl.DataFrame | None,
                       landing: Path) -> None:
    """Refuse to change the past: in the same world, the actions of the days already simulated
    must be those applied then, or their drops (maybe ingested already) would be rewritten."""
    if previous.get("config") != wanted["config"]:
        return  # another world: it replaces this one
    before = date.fromisoformat(previous["until"])
    if actions_fingerprint(actions, before) != previous.get("actions"):
        raise ValueError(
            f"the retention actions through {before} (already simulated into {landing}) differ "
            "from those applied then: simulating again would rewrite drops the pipeline may "
            "have ingested. Use a fresh CHURN_HOME, or --force to rewrite them")
