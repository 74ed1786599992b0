"""Control groups: a deterministic random hold-out per (customer, campaign).

A customer's draw is ``u = int(sha256(f"{campaign_id}:{customer_id}").hexdigest()[:13], 16)
/ 2**52``, uniform in [0, 1); the customer is in the control group of that campaign when ``u <
control_share``. The draw depends on nothing but the two ids, so it is stable across reruns,
machines and Python processes (unlike ``hash()`` or Polars' ``Expr.hash``), independent of which
other customers are in the frame, and fresh for every campaign (a campaign is one action on one
day: ``RET-<action>-<YYYY-MM-DD>``). The same draw in Spark SQL / Databricks:
``conv(substr(sha2(concat(campaign_id, ':', customer_id), 256), 1, 13), 16, 10) / pow(2, 52)``.

Control customers are selected by the policy like everyone else (so the two arms are comparable),
kept in the output with ``control=True, treated=False``, and sent nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import polars as pl

_BITS = 52  # 13 hex digits: exactly representable in a float64


def campaign_id(action: str, day) -> str:
    """``RET-<action>-<YYYY-MM-DD>``."""
    return f"RET-{action}-{day.isoformat()}"


def campaign_id_expr(action: str = "action", day: str = "snapshot_date") -> pl.Expr:
    """``campaign_id`` as a Polars expression over an action and a date column."""
    return pl.format("RET-{}-{}", pl.col(action), pl.col(day).dt.strftime("%Y-%m-%d")).alias(
        "campaign_id")


def control_draw(customer_id: str, campaign: str) -> float:
    """The customer's uniform draw in [0, 1) for ``campaign``."""
    digest = hashlib.sha256(f"{campaign}:{customer_id}".encode()).hexdigest()
    return int(digest[: _BITS // 4], 16) / 2**_BITS


def control_draws(customer_ids: pl.Series, campaigns: pl.Series) -> pl.Series:
    """``control_draw`` for aligned series (one sha256 per row, ~1 µs each)."""
    if customer_ids.len() != campaigns.len():
        raise ValueError("customer ids and campaign ids must have the same length")
    return pl.Series(
        "control_draw",
        [control_draw(c, k) for c, k in zip(customer_ids.cast(pl.String).to_list(),
                                             campaigns.cast(pl.String).to_list(), strict=True)],
        dtype=pl.Float64,
    )


def assign_control(decisions: pl.DataFrame, control_share: float | Mapping[str, float]
                   ) -> pl.DataFrame:
    """Add ``campaign_id`` (when absent), ``control`` and ``treated`` (= not control).

    ``decisions`` needs ``customer_id``, and ``campaign_id`` or ``action`` and ``snapshot_date``.
    ``control_share`` is one share, or a share per action (then ``action`` is needed; an action
    it does not name gets no control group).
    """
    shares = control_share.values() if isinstance(control_share, Mapping) else [control_share]
    for share in shares:
        if not 0 <= share < 1:
            raise ValueError(f"control_share must be in [0, 1); got {share}")
    frame = decisions
    if "campaign_id" not in frame.columns:
        missing = [c for c in ("action", "snapshot_date") if c not in frame.columns]
        if missing:
            raise ValueError(f"assign_control needs campaign_id, or action and snapshot_date to "
                             f"build it; missing {missing}")
        frame = frame.with_columns(campaign_id_expr())
    draws = control_draws(frame["customer_id"], frame["campaign_id"])
    if isinstance(control_share, Mapping):
        if "action" not in frame.columns:
            raise ValueError("a control share per action needs the action column")
        share = frame["action"].replace_strict(dict(control_share), default=0.0,
                                               return_dtype=pl.Float64)
    else:
        share = control_share
    control = draws < share
    return frame.with_columns(control=control, treated=~control)
