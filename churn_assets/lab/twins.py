"""Judging the closed loop against its exact counterfactual (``loop`` runs the worlds).

The simulator keys every draw by (seed, purpose, day, customer), so a policy world and the
no-action world with the same seed differ only in the customers the policy treated: a
customer's difference between the two worlds is what the actions did to that customer, exactly.
The intervals here are therefore not about simulation noise: they answer "what would this
policy save on another draw of customers like these", treating customers as independent.

Everything here is pure: frames in, numbers and markdown out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import polars as pl

from churn_assets.decisions.experiment import minimum_detectable_uplift
from churn_assets.decisions.uplift import outcomes_from_activity, uplift

Z95 = 1.959964
# Policies of the experiment: the budget policy valuing actions with the uplift model, the rule
# policy, and the budget policy valuing them with the configured save rates.
POLICY_LABELS = {"uplift": "budget, uplift model", "rules": "rules",
                 "budget": "budget, configured save rates"}
TARGET_RATIO, TARGET_COVERAGE, TARGET_QINI = 1.5, 0.90, 0.8


def total_with_ci(diff: np.ndarray) -> tuple[float, float]:
    """The sum of per-customer differences and the half-width of its 95% interval."""
    if diff.size < 2:
        return float(diff.sum()), float("nan")
    return float(diff.sum()), Z95 * math.sqrt(diff.size) * float(diff.std(ddof=1))


def per_customer(revenue: pl.DataFrame, churned: pl.DataFrame) -> pl.DataFrame:
    """customer_id, revenue, orders, churned: one row per customer of the truth."""
    return churned.join(revenue, on="customer_id", how="left").with_columns(
        pl.col("revenue").fill_null(0.0), pl.col("orders").fill_null(0))


def savings(world: pl.DataFrame, none: pl.DataFrame) -> dict:
    """Revenue saved, orders saved and churns prevented against the no-action world, exact per
    customer, with 95% intervals; and the per-customer revenue differences."""
    both = none.join(world, on="customer_id", suffix="_policy")
    saved = (both["revenue_policy"] - both["revenue"]).to_numpy()
    orders = (both["orders_policy"] - both["orders"]).to_numpy().astype(float)
    prevented = (both["churned"].cast(pl.Int64) - both["churned_policy"].cast(pl.Int64)
                 ).to_numpy().astype(float)
    return {"saved": total_with_ci(saved), "orders_saved": total_with_ci(orders),
            "prevented": total_with_ci(prevented), "diff": saved,
            "per_customer": pl.DataFrame({"customer_id": both["customer_id"], "saved": saved}),
            "customers_changed": int((saved != 0).sum() + ((saved == 0) & (orders != 0)).sum())}


def action_economics(per_customer: pl.DataFrame, treated: pl.DataFrame) -> pl.DataFrame:
    """What each action bought: customers whose every treatment in the period was that action
    (``mixed`` when they had several kinds), their treatments and spend, and their revenue saved
    against the twin (exact per customer) with its 95% interval and per unit spend."""
    kinds = treated.group_by("customer_id").agg(
        action=pl.when(pl.col("action").n_unique() == 1).then(pl.col("action").first())
        .otherwise(pl.lit("mixed")),
        treatments=pl.len(), spend=pl.col("cost").sum())
    rows = []
    joined = kinds.join(per_customer, on="customer_id", how="left").with_columns(
        pl.col("saved").fill_null(0.0))
    for action, part in sorted(joined.partition_by("action", as_dict=True).items()):
        saved = total_with_ci(part["saved"].to_numpy())
        spend = float(part["spend"].sum())
        rows.append({"action": action[0], "customers": part.height,
                     "treatments": int(part["treatments"].sum()), "spend": spend,
                     "saved": saved[0], "saved_ci": saved[1],
                     "saved_per_spend": saved[0] / spend if spend else float("nan")})
    return pl.DataFrame(rows)


def exploration_power(outcomes: pl.DataFrame, oracle: pl.DataFrame) -> pl.DataFrame:
    """Per action, the randomized exploration arms the uplift model learns from: their sizes,
    the smallest retention uplift they can detect (95% confidence, 80% power) and the mean true
    effect of the action on those explorers (the oracle's churn reduction over the window)."""
    explored = outcomes.filter(pl.col("assignment") == "explore")
    if explored.is_empty():
        return pl.DataFrame()
    untreated = explored.filter(pl.col("control"))
    base = float(untreated["retained"].cast(pl.Float64).mean()) if untreated.height else 0.5
    keys = ["customer_id", "snapshot_date"]
    rows = []
    for action in sorted(set(oracle["action"].unique().to_list())):
        arm = explored.filter(~pl.col("control") & (pl.col("action") == action))
        effect = explored.select(keys).join(
            oracle.filter(pl.col("action") == action), on=keys, how="inner")
        rows.append({
            "action": action, "treated_n": arm.height, "control_n": untreated.height,
            "control_retention": base,
            "mde": minimum_detectable_uplift(arm.height, untreated.height, base),
            "true_effect": float(effect["true_churn_reduction"].mean()) if effect.height
            else float("nan"),
        })
    return pl.DataFrame(rows)


def measured_vs_true(outcomes: pl.DataFrame, activity: pl.DataFrame, activity_none: pl.DataFrame,
                     oracle: pl.DataFrame, window: int, by: Sequence[str]) -> pl.DataFrame:
    """The pipeline's measured uplift (treated against control, ``decisions.outcomes``) per
    ``by`` group, next to the true uplift on the same treated customer-windows: retained in the
    policy world's final ``activity`` minus in the no-action world's (the same customer, the same
    window, the same draws; both from every row that arrived, late ones included); and the
    oracle's expected churn reduction for them (``oracle``: customer_id, snapshot_date, action,
    true_churn_reduction)."""
    measured = uplift(outcomes, by=by)
    treated = outcomes.filter(~pl.col("control"))
    keys = ["customer_id", "snapshot_date"]
    world = outcomes_from_activity(treated, activity, window).select(*keys, retained_world="retained")
    twin = outcomes_from_activity(treated, activity_none, window).select(*keys, retained_none="retained")
    treated = treated.join(world, on=keys, how="left").join(twin, on=keys, how="left").join(
        oracle, on=[*keys, "action"], how="left")
    true = treated.group_by(by).agg(
        true_uplift=(pl.col("retained_world").fill_null(False).cast(pl.Float64)
                     - pl.col("retained_none").fill_null(False).cast(pl.Float64)).mean(),
        oracle_churn_reduction=pl.col("true_churn_reduction").mean(),
    )
    return measured.join(true, on=list(by), how="left").sort(by)


def coverage(table: pl.DataFrame, min_arm: int) -> tuple[int, int]:
    """(intervals that cover the true uplift, intervals judged) over the rows whose arms both
    reach ``min_arm`` (a normal interval from a handful of customers is not an interval)."""
    judged = table.filter(
        (pl.col("treated_n") >= min_arm) & (pl.col("control_n") >= min_arm)
        & pl.col("uplift_low").is_finite() & pl.col("true_uplift").is_not_null())
    covered = judged.filter(pl.col("true_uplift").is_between(pl.col("uplift_low"),
                                                             pl.col("uplift_high")))
    return covered.height, judged.height


def qini_area(score: np.ndarray, effect: np.ndarray) -> float:
    """Area between the cumulative true effect of customers taken in ``score`` order (best
    first) and that of random targeting, per customer: the Qini coefficient measured with the
    oracle's true effects instead of noisy outcomes. Ties are broken at random (seeded), so a
    constant score scores like random targeting."""
    n = score.size
    if n == 0:
        return float("nan")
    jitter = np.random.default_rng(0).random(n)
    order = np.lexsort((jitter, -score))
    gained = np.cumsum(effect[order])
    random = gained[-1] * np.arange(1, n + 1) / n
    return float((gained - random).mean())


def qini_table(frame: pl.DataFrame, scores: dict[str, str], actions: Sequence[str]) -> pl.DataFrame:
    """Per action, the Qini area of each score (``scores``: label -> column, ``{action}`` filled
    in) against the truth's ``churn_reduction_<action>``, next to the oracle's own (ranking by
    the true effect itself: the most any ranking can reach)."""
    rows = []
    for action in actions:
        effect = frame[f"churn_reduction_{action}"].to_numpy()
        row = {"action": action, "customers": frame.height, "oracle": qini_area(effect, effect)}
        for label, pattern in scores.items():
            column = pattern.format(action=action)
            row[label] = (qini_area(frame[column].fill_null(float("-inf")).to_numpy(), effect)
                          if column in frame.columns else float("nan"))
        rows.append(row)
    return pl.DataFrame(rows)


def target_line(name: str, measured: str, goal: str, met: bool) -> str:
    """``target: <name> = <measured> (goal <goal>): met`` (or ``: missed``)."""
    return f"target: {name} = {measured} (goal {goal}): {'met' if met else 'missed'}"


def oracle_rows(truth: pl.DataFrame, actions: Sequence[str]) -> pl.DataFrame:
    """The truth's per-action churn reduction as (customer_id, snapshot_date, action,
    true_churn_reduction): a decision of snapshot day D is contacted on D + 1, whose truth row
    holds what each action would do."""
    return truth.select(
        "customer_id", snapshot_date=pl.col("day") - timedelta(days=1),
        **{a: pl.col(f"churn_reduction_{a}") for a in actions},
    ).unpivot(index=["customer_id", "snapshot_date"], variable_name="action",
              value_name="true_churn_reduction")


# ---------------------------------------------------------------- the report


def money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


def pm(pair: tuple[float, float], fmt: str = "{:,.0f}") -> str:
    value, half = pair
    return f"{fmt.format(value)} ± {fmt.format(half)}" if math.isfinite(half) else fmt.format(value)


def pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.1%}"


def num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if x is not None and math.isfinite(x) else "undefined"


def targets(numbers: dict) -> list[str]:
    """The four target lines of the issue, computed from the judged numbers."""
    up, rules = numbers["uplift"], numbers["rules"]
    equal_spend = up["spend"] <= rules["spend"] + 1e-9
    if rules["saved"][0] > 0:
        ratio = up["saved"][0] / rules["saved"][0]
        lines = [target_line(
            "uplift budget policy revenue saved / rule policy revenue saved",
            f"{num(ratio)} at spend {money(up['spend'])} vs {money(rules['spend'])}",
            f">= {TARGET_RATIO} at equal or lower spend",
            ratio >= TARGET_RATIO and equal_spend)]
    else:
        # No ratio against a loss: then the uplift policy must save money and beat the rules
        # beyond doubt (the customer-by-customer difference's interval above 0).
        diff = numbers.get("uplift_minus_rules", (float("nan"), float("nan")))
        beyond_doubt = math.isfinite(diff[1]) and diff[0] - diff[1] > 0
        lines = [target_line(
            "uplift budget policy revenue saved / rule policy revenue saved",
            f"undefined: the rules saved {money(rules['saved'][0])}; the uplift policy "
            f"{money(up['saved'][0])}, difference {pm(diff)}, at spend {money(up['spend'])} vs "
            f"{money(rules['spend'])}",
            f">= {TARGET_RATIO}; against a rule policy that saves nothing: a positive saving "
            "whose difference from the rules' is above 0 beyond doubt, at equal or lower spend",
            up["saved"][0] > 0 and beyond_doubt and equal_spend)]
    lines.append(target_line(
        "uplift budget policy revenue saved - spend",
        f"{money(up['saved'][0] - up['spend'])} (saved {money(up['saved'][0])}, spend "
        f"{money(up['spend'])})", "> 0", up["saved"][0] > up["spend"]))
    covered, judged = numbers["coverage"]
    share = covered / judged if judged else float("nan")
    lines.append(target_line(
        "measured per-action intervals covering the true effect",
        f"{num(100 * share, 0)}% ({covered} of {judged})", f">= {TARGET_COVERAGE:.0%}",
        judged > 0 and share >= TARGET_COVERAGE))
    qini = numbers.get("qini")
    if qini is None or qini.is_empty() or "model" not in qini.columns:
        lines.append(target_line("uplift model Qini / oracle Qini", "undefined (no uplift model)",
                                 f">= {TARGET_QINI}", False))
    else:
        # Over the actions the model predicts (an action without a fitted arm has no ranking).
        scored = qini.filter(pl.col("model").is_finite())
        model, oracle = float(scored["model"].sum()), float(scored["oracle"].sum())
        q = model / oracle if oracle > 0 else float("nan")
        over = ", ".join(scored["action"].to_list()) or "no action"
        lines.append(target_line("uplift model Qini / oracle Qini", f"{num(q)} (over {over})",
                                 f">= {TARGET_QINI}", math.isfinite(q) and q >= TARGET_QINI))
    return lines


def savings_table(numbers: dict, policies: Sequence[str]) -> list[str]:
    head = "| | " + " | ".join(POLICY_LABELS.get(p, p) for p in policies) + " |"
    rows = [head, "| --- |" + " ---: |" * len(policies)]

    def row(label: str, cell) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(numbers[p]) for p in policies) + " |")

    row("treated rows (control rows)", lambda n: f"{n['treated']:,} ({n['control']:,})")
    row("treated by action", lambda n: ", ".join(f"{a.split('_')[-1]} {c:,}"
                                                 for a, c in n["by_action"].items()) or "none")
    row("spend", lambda n: money(n["spend"]))
    row("**revenue saved** vs the no-action twin (±95%)", lambda n: f"**{pm(n['saved'])}**")
    row("revenue saved − spend", lambda n: money(n["saved"][0] - n["spend"]))
    row("revenue saved per unit spend",
        lambda n: num(n["saved"][0] / n["spend"]) if n["spend"] else "–")
    row("churns prevented (±95%)", lambda n: pm(n["prevented"], "{:,.1f}"))
    row("paid orders saved (±95%)", lambda n: pm(n["orders_saved"]))
    row("customers whose history changed", lambda n: f"{n['customers_changed']:,}")
    row("churns prevented, oracle's expectation for the treated",
        lambda n: num(n["oracle_prevented"], 1))
    return rows


def uplift_rows(table: pl.DataFrame, policy: str, by: Sequence[str]) -> list[str]:
    rows = []
    for r in table.iter_rows(named=True):
        key = " | ".join(str(r[c]) for c in by)
        rows.append(
            f"| {POLICY_LABELS.get(policy, policy)} | {key} | {r['treated_n']:,} / "
            f"{r['control_n']:,} | {pct(r['uplift'])} [{pct(r['uplift_low'])}, "
            f"{pct(r['uplift_high'])}] | {pct(r['true_uplift'])} | "
            f"{pct(r['oracle_churn_reduction'])} |")
    return rows


def period(first: date, last: date) -> str:
    return f"{first} .. {last}"
