"""Off-policy evaluation: what the current policy, the band rules and doing nothing are worth,
estimated from the logged randomized decisions alone (no simulator needed).

Only exploration rows are read: each is a uniform sample of the day's eligible customers with an
arm drawn uniformly at random, probability ``propensity`` (``experiment.py``), and each records
what the configured policy (``policy_action``) and the rules (``rules_action``) would have chosen
for that customer at the full budget. The inverse-propensity (IPS) estimate of a target policy
``pi``'s value per eligible customer is the mean over those rows of
``1[pi(x) = arm] x (revenue - cost) / propensity``: revenue in the outcome window net of what the
arm spent. It is unbiased because the arm was drawn independently of everything else; its 95 %
interval is the normal one from the rows' spread. Differences (policy minus rules, policy minus
no action) are estimated per row, so the intervals account for the rows both share.

IPS is noisy with few exploration rows (a row counts only where the target agrees with the
random arm, about one in K + 1): the interval says how much. A doubly robust estimate (adding the
uplift model's predictions as a baseline) would narrow it; not built.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from churn_assets.decisions.experiment import NO_ACTION

OPE_SCHEMA: dict[str, pl.DataType] = {
    "estimate": pl.String(), "value_per_customer": pl.Float64(), "low": pl.Float64(),
    "high": pl.Float64(), "rows": pl.Int64(),
}
TARGETS = {"policy": "policy_action", "rules": "rules_action"}


def exploration_rows(measured: pl.DataFrame) -> pl.DataFrame:
    """Measured exploration rows with a propensity and both policies' choices."""
    needed = ("assignment", "propensity", "policy_action", "rules_action")
    if any(c not in measured.columns for c in needed):
        return measured.clear().select([])
    return measured.filter(
        (pl.col("assignment") == "explore") & pl.col("propensity").is_not_null()
        & (pl.col("propensity") > 0) & pl.col("policy_action").is_not_null()
        & pl.col("rules_action").is_not_null())


def off_policy_values(measured: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """IPS values per eligible customer over the outcome window (``OPE_SCHEMA``): ``policy``,
    ``rules``, ``no_action``, ``policy_minus_rules``, ``policy_minus_no_action``."""
    rows = exploration_rows(measured)
    if rows.is_empty():
        return pl.DataFrame(schema=OPE_SCHEMA)
    arm = rows.select(pl.when(pl.col("control")).then(pl.lit(NO_ACTION))
                      .otherwise(pl.col("action")))[:, 0].to_numpy()
    net = (rows["revenue"] - rows["cost"]).to_numpy().astype(np.float64)
    inverse = 1.0 / rows["propensity"].to_numpy().astype(np.float64)
    terms = {name: np.where(rows[column].to_numpy() == arm, net * inverse, 0.0)
             for name, column in TARGETS.items()}
    terms[NO_ACTION] = np.where(arm == NO_ACTION, net * inverse, 0.0)
    terms["policy_minus_rules"] = terms["policy"] - terms["rules"]
    terms["policy_minus_no_action"] = terms["policy"] - terms[NO_ACTION]
    z = stats.norm.ppf(0.5 + confidence / 2)
    n = arm.size
    out = []
    for name, values in terms.items():
        mean = float(values.mean())
        half = float(z * values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        out.append({"estimate": name, "value_per_customer": mean, "low": mean - half,
                    "high": mean + half, "rows": n})
    return pl.DataFrame(out, schema=OPE_SCHEMA)


def verdict(values: pl.DataFrame, min_rows: int = 30) -> tuple[bool, str]:
    """Whether the policy is not shown worse than the rules or than no action, in words."""
    if values.is_empty() or int(values["rows"][0]) < min_rows:
        n = 0 if values.is_empty() else int(values["rows"][0])
        return True, (f"{n} exploration rows with a closed outcome window: at least {min_rows} "
                      "are needed to estimate the policies' values")
    row = {r["estimate"]: r for r in values.iter_rows(named=True)}

    def said(name: str, label: str) -> str:
        r = row[name]
        return f"{label} {r['value_per_customer']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"

    worse = [name for name in ("policy_minus_rules", "policy_minus_no_action")
             if row[name]["high"] < 0]
    text = (f"per eligible customer over the outcome window (IPS, 95% interval, "
            f"{row['policy']['rows']} exploration rows): "
            f"{said('policy', 'policy')}, {said('rules', 'rules')}, "
            f"{said(NO_ACTION, 'no action')}; {said('policy_minus_rules', 'policy - rules')}, "
            f"{said('policy_minus_no_action', 'policy - no action')}")
    if worse:
        text = "the policy is worse than " + " and ".join(
            "the rules" if w == "policy_minus_rules" else "no action" for w in worse) + ": " + text
    return not worse, text
