"""What each data expectation on silver concludes: pure functions, no Dagster, no I/O.

Frame checks take native frames (Polars or PySpark) and are written once in narwhals; they
collect only counts and at most ``MAX_EXAMPLES`` keys. Examples name rows by natural key (or
by file and row number when the key itself is missing), never by personal data: no check reads
a hashed or extra attribute column. The Dagster asset checks turn an ``Outcome`` into an
``AssetCheckResult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import narwhals as nw

from churn_assets.transforms.contracts import (
    ATTRIBUTE_DTYPES,
    KEEPS_EXTRA_COLUMNS,
    LINEAGE,
    NATURAL_KEYS,
    PARTITION_COLUMN,
    SILVER_SCHEMAS,
    VALUE_RULES,
    Rule,
)
from churn_assets.transforms.dates import epoch_day
from churn_assets.transforms.engine import backend

ERROR, WARN = "ERROR", "WARN"
MAX_EXAMPLES = 5
# Rows whose key is missing are named by where they came from instead.
ROW_REF = ("_source_file", "_row_number")


@dataclass(frozen=True)
class Outcome:
    passed: bool
    severity: str  # "ERROR" or "WARN": what the check reports if it fails
    description: str
    metadata: dict[str, object]


def keys_unique_and_present(domain: str, rows: Any) -> Outcome:
    """Every natural key complete and occurring once: gold and dedupe rely on it."""
    frame, keys = _lazy(rows), list(_keys(domain))
    null_key = nw.any_horizontal(*[nw.col(k).is_null() for k in keys], ignore_nulls=False)
    total, null_keys = _counts(frame, nw.len(), _count(null_key))
    repeated = (
        frame.filter(~null_key)
        .group_by(*keys)
        .agg(nw.len().alias("__copies"))
        .filter(nw.col("__copies") > 1)
    )
    (duplicate_keys,) = _counts(repeated, nw.len())
    examples = _examples(repeated, keys) if duplicate_keys else []
    null_rows = _examples(frame.filter(null_key), ROW_REF) if null_keys else []
    problems = []
    if duplicate_keys:
        problems.append(f"{duplicate_keys} key(s) occur more than once (e.g. {_list(examples)})")
    if null_keys:
        problems.append(f"{null_keys} row(s) have a null key part (e.g. {_list(null_rows)}, as file|row)")
    key_name = " + ".join(keys)
    if problems:
        description = f"silver.{domain} ({key_name}): " + "; ".join(problems)
    else:
        description = f"All {total} silver.{domain} rows have a unique, complete {key_name}"
    return Outcome(
        passed=not problems,
        severity=ERROR,
        description=description,
        metadata={
            "rows": total, "null_keys": null_keys, "duplicate_keys": duplicate_keys,
            "examples": examples, "null_key_rows": null_rows,
        },
    )


def values_in_range(domain: str, rows: Any) -> Outcome:
    """Every non-null value obeys ``VALUE_RULES[domain]`` (clean rejects such rows, so a
    violation means silver was written by something else, or the rules changed)."""
    frame, keys = _lazy(rows), _keys(domain)
    broken = {
        column: nw.any_horizontal(*[_breaks(column, r) for r in rules], ignore_nulls=True)
        for column, rules in VALUE_RULES[domain].items()
    }
    if not broken:
        return Outcome(True, ERROR, f"silver.{domain} has no value rules", {"violations": {}})
    counts = dict(zip(broken, _counts(frame, *[_count(b) for b in broken.values()]), strict=True))
    violations = {
        column: {
            "count": n,
            "rule": "; ".join(_rule_text(column, r) for r in VALUE_RULES[domain][column]),
            "examples": _examples(frame.filter(broken[column]), keys),
        }
        for column, n in counts.items()
        if n
    }
    if not violations:
        rules = ", ".join(broken)
        return Outcome(True, ERROR, f"silver.{domain} values obey their rules ({rules})",
                       {"violations": {}})
    parts = [
        f"{v['count']} break '{v['rule']}' (e.g. {_list(v['examples'])})"
        for v in violations.values()
    ]
    return Outcome(
        False, ERROR, f"silver.{domain} has values out of range: " + "; ".join(parts),
        {"violations": violations},
    )


def schema_matches_contract(
    domain: str, rows: Any, attributes: dict[str, str] | None = None
) -> Outcome:
    """Columns and types as ``SILVER_SCHEMAS[domain]``, in order; the customer attributes
    declared in settings (name -> kind) may sit between the contract columns and the lineage.
    Any other column is unexpected: silver keeps personal data by allow-list."""
    _keys(domain)
    frame = _lazy(rows)
    actual = dict(frame.collect_schema())
    expected = SILVER_SCHEMAS[domain]
    on_spark = backend(frame) == "spark"
    declared = (attributes or {}) if domain in KEEPS_EXTRA_COLUMNS else {}
    extras = [c for c in actual if c not in expected and c in declared]
    missing = [c for c in expected if c not in actual]
    unexpected = [c for c in actual if c not in expected and c not in extras]
    wrong_type = [
        f"{c}: {actual[c]} (expected {want})"
        for c, want in [*expected.items(), *[(e, ATTRIBUTE_DTYPES[declared[e]]) for e in extras]]
        if c in actual and not _same_type(actual[c], want, on_spark)
    ]
    order = [
        *[c for c in expected if c in actual and c not in LINEAGE],
        *extras,
        *[c for c in LINEAGE if c in actual],
    ]
    in_order = [c for c in actual if c in order] == order
    problems = [
        f"{label} {_list(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected),
                             ("wrong type", wrong_type))
        if names
    ]
    if not in_order:
        problems.append("columns out of contract order (contract, extra text, lineage)")
    description = (
        f"silver.{domain} does not match its contract: " + "; ".join(problems)
        if problems
        else f"silver.{domain} has its contract's {len(expected)} columns and types"
        + (f" plus {len(extras)} declared attribute column(s)" if extras else "")
    )
    return Outcome(
        passed=not problems,
        severity=ERROR,
        description=description,
        metadata={
            "missing": missing, "unexpected": unexpected, "wrong_type": wrong_type,
            "in_order": in_order,
        },
    )


def references_known_customers(
    domain: str, rows: Any, known_customers: Any, *, max_orphan_share: float = 0.01,
    min_bad_rows: int = 10,
) -> Outcome:
    """Customers named by rows whose ``customer_id`` had not arrived in silver.customers by the
    row's own arrival day, as a share of the customers named that day (each (day, customer) once).
    A few are normal (a customer export running a day behind); many mean broken ids.

    ``known_customers`` has ``customer_id`` and the ``arrival_date`` of each version: a customer
    is known on day D from the first day one of its versions arrived. Judging each day against
    what was known that day (not at the window's end) and each day on its own evidence
    (``share_by_day``) makes the verdict the same whatever window a run covers.
    """
    _keys(domain)
    if domain == "customers":
        return Outcome(True, WARN, "silver.customers references no other table", {})
    frame = _lazy(rows)
    known = (
        frame.select("customer_id", PARTITION_COLUMN).head(0) if known_customers is None
        else _on_engine_of(_lazy(known_customers), frame, ["customer_id", PARTITION_COLUMN])
    )
    known = (
        known
        .group_by("customer_id")
        .agg(nw.col(PARTITION_COLUMN).min().alias("__known_from"))
    )
    flagged = frame.join(known, on="customer_id", how="left").with_columns(
        (nw.col("__known_from").is_null()
         | (nw.col("__known_from") > nw.col(PARTITION_COLUMN))).alias("__orphan")
    )
    # The unit of evidence is the customer, not the row: one late customer export leaves all
    # of that customer's rows orphaned, which says little about the ids of the others.
    referenced = flagged.group_by(PARTITION_COLUMN, "customer_id").agg(
        nw.col("__orphan").max().alias("__orphan"), nw.len().alias("__rows"))
    per_day = _per_day(referenced, _count(nw.col("__orphan")))
    orphans = referenced.filter(nw.col("__orphan"))
    orphan_rows, orphan_customers = _counts(orphans, nw.col("__rows").sum(), nw.len())
    examples = (
        _examples(orphans.filter(~nw.col("customer_id").is_null()), ["customer_id"])
        if orphan_customers else []
    )
    return share_by_day(
        per_day, threshold=max_orphan_share, min_bad_rows=min_bad_rows,
        what=f"customers named by silver.{domain} rows were not yet in silver.customers",
        extra={"orphan_rows": orphan_rows, "examples": examples},
        example_text=f"e.g. {_list(examples)}" if examples else "",
    )


def refunds_reference_orders(rows: Any, known_orders: Any) -> Outcome:
    """Refunds in a window of silver.payments whose ``refund_of_order_id`` is no order known
    by the window's end (``known_orders``: payments with an ``order_id`` column). Gold nets
    refunds into the customer's revenue either way, so an unlinked refund only warns."""
    frame = _lazy(rows).filter(nw.col("transaction_type") == "refund")
    orders = _on_engine_of(_lazy(known_orders).select("order_id"), frame, "order_id")
    orders = orders.filter(~nw.col("order_id").is_null()).unique()
    unlinked = frame.join(orders, left_on="refund_of_order_id", right_on="order_id", how="anti")
    (refunds,) = _counts(frame, nw.len())
    (count,) = _counts(unlinked, nw.len())
    examples = _examples(unlinked, NATURAL_KEYS["payments"]) if count else []
    metadata: dict[str, object] = {"refunds": refunds, "unlinked": count, "examples": examples}
    if not count:
        return Outcome(True, WARN, f"All {refunds} refunds reference a known order", metadata)
    return Outcome(False, WARN, f"{count} of {refunds} refunds reference no known order "
                   f"(e.g. {_list(examples)})", metadata)


def event_time_not_after_arrival(domain: str, rows: Any, *, max_days_ahead: int = 1) -> Outcome:
    """Rows dated after the day they arrived. Gold reads each day's new rows by arrival and
    event date within a bounded window, so rows far in the future would be missed."""
    frame, keys = _lazy(rows), _keys(domain)
    ahead = epoch_day("event_date") - epoch_day(PARTITION_COLUMN)
    frame = frame.with_columns(ahead.alias("__ahead"))
    rows_ahead, too_far, most = _counts(
        frame,
        _count(nw.col("__ahead") > 0),
        _count(nw.col("__ahead") > max_days_ahead),
        nw.col("__ahead").max(),
    )
    # The rows past the tolerance are the ones to look at first.
    worst = nw.col("__ahead") > (max_days_ahead if too_far else 0)
    examples = _examples(frame.filter(worst), keys) if rows_ahead else []
    metadata: dict[str, object] = {
        "rows_ahead": rows_ahead, "rows_too_far_ahead": too_far,
        "most_days_ahead": max(most, 0), "examples": examples,
    }
    if not rows_ahead:
        return Outcome(True, WARN, f"No silver.{domain} row is dated after its arrival day",
                       metadata)
    return Outcome(
        False, ERROR if too_far else WARN,
        f"{rows_ahead} silver.{domain} row(s) are dated after the day they arrived, "
        f"{too_far} by more than the tolerated {max_days_ahead} day(s) (at most {most}; "
        f"e.g. {_list(examples)}): check the source's clock",
        metadata,
    )


def volume_vs_trailing_mean(
    today_rows: int,
    previous_daily_rows: Sequence[int],
    *,
    tolerance: float = 0.5,
    min_history: int = 3,
) -> Outcome:
    """A day far from the recent mean is worth a look, not a stop: volumes do swing."""
    history = list(previous_daily_rows)
    mean = sum(history) / len(history) if history else None
    ratio = today_rows / mean if mean else None
    metadata: dict[str, object] = {
        "rows": today_rows, "trailing_mean": None if mean is None else round(mean, 2),
        "ratio": None if ratio is None else round(ratio, 4), "days_compared": len(history),
    }
    if mean is None or len(history) < min_history:
        return Outcome(True, WARN, f"{today_rows} rows; only {len(history)} earlier day(s), "
                       f"volume is compared from {min_history} on", metadata)
    low, high = mean * (1 - tolerance), mean * (1 + tolerance)
    passed = low <= today_rows <= high
    verdict = "within" if passed else "outside"
    return Outcome(
        passed, WARN,
        f"{today_rows} rows, {verdict} ±{tolerance:.0%} of the {len(history)}-day mean "
        f"{mean:.1f} ({low:.1f}..{high:.1f})",
        metadata,
    )


def volume_by_day(
    rows_per_day: dict[date, int], days: Sequence[date], first_day: date, *,
    tolerance: float = 0.5, history_days: int = 7,
) -> Outcome:
    """``volume_vs_trailing_mean`` for every day of a window, each against its own trailing
    days (``rows_per_day`` must cover them): the verdict does not depend on the run's window."""
    outcomes = {}
    for day in days:
        previous = [rows_per_day.get(day - timedelta(days=k), 0)
                    for k in range(1, history_days + 1) if day - timedelta(days=k) >= first_day]
        outcomes[day] = volume_vs_trailing_mean(rows_per_day.get(day, 0), previous,
                                                tolerance=tolerance)
    outside = [day for day in days if not outcomes[day].passed]
    metadata: dict[str, object] = {
        "days_judged": len(days),
        "days_outside": {day.isoformat(): outcomes[day].metadata for day in outside},
    }
    if days:
        metadata.update(outcomes[days[-1]].metadata)  # the latest day, for the UI's plots
    if not outside:
        last = outcomes[days[-1]].description if days else "no days"
        return Outcome(True, WARN, f"every day within ±{tolerance:.0%} of its trailing mean "
                       f"(latest: {last})", metadata)
    listed = "; ".join(f"{day}: {outcomes[day].description}" for day in outside[:3])
    more = f"; and {len(outside) - 3} more" if len(outside) > 3 else ""
    return Outcome(False, WARN, f"{len(outside)} day(s) outside ±{tolerance:.0%} of their "
                   f"trailing mean: {listed}{more}", metadata)


def reconciled_with_bronze(bronze_rows: int, silver_rows: int, rejected: int,
                           duplicates: int) -> Outcome:
    """Every bronze row of the window lands in exactly one of silver, rejects, duplicates."""
    difference = bronze_rows - (silver_rows + rejected + duplicates)
    metadata: dict[str, object] = {
        "bronze_rows": bronze_rows, "silver_rows": silver_rows, "rejected": rejected,
        "duplicates": duplicates, "difference": difference,
    }
    counts = f"{silver_rows} silver + {rejected} rejected + {duplicates} duplicates"
    if difference == 0:
        return Outcome(True, ERROR, f"{bronze_rows} bronze rows = {counts}", metadata)
    lost = "lost" if difference > 0 else "counted twice"
    return Outcome(False, ERROR, f"{bronze_rows} bronze rows != {counts}: {abs(difference)} "
                   f"row(s) {lost}; rerun the window", metadata)


def reject_share(per_day: dict[date, tuple[int, int]], *, max_share: float = 0.05,
                 min_bad_rows: int = 10) -> Outcome:
    """Many rejects at once point at a broken export (say, every amount with a decimal comma)
    rather than at a few bad rows. ``per_day`` maps each arrival day to (rejected, bronze rows)."""
    return share_by_day(
        per_day, threshold=max_share, min_bad_rows=min_bad_rows,
        what="bronze rows rejected",
        advice="check the export's format before rerunning; the reasons are in the "
        "exceptions table",
    )


# 95 % two-sided normal quantile, for the Wilson score interval.
Z95 = 1.959963984540054


def wilson_interval(bad: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the share ``bad / total`` (``(0, 1)`` for no rows).

    Unlike the normal approximation it stays inside [0, 1] and is honest for a handful of rows,
    which is what a one-day window of a small domain is.
    """
    if total <= 0:
        return 0.0, 1.0
    p = bad / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def share_verdict(bad: int, total: int, *, threshold: float, min_bad_rows: int) -> str:
    """``"pass"`` within tolerance; ``"block"`` only when the evidence says the true share is
    above ``threshold`` (the Wilson interval's lower end is above it) and at least
    ``min_bad_rows`` rows are bad; otherwise ``"warn"``: above the tolerance, not proven."""
    if total == 0 or bad / total <= threshold:
        return "pass"
    low, _ = wilson_interval(bad, total)
    return "block" if bad >= min_bad_rows and low > threshold else "warn"


def share_by_day(
    per_day: dict[date, tuple[int, int]], *, threshold: float, min_bad_rows: int, what: str,
    advice: str = "", extra: dict[str, object] | None = None, example_text: str = "",
) -> Outcome:
    """A share threshold judged day by day (each day is a partition; a window's verdict is its
    worst day's), so 1, 3 or 31-day runs over the same days conclude the same.

    Passed when every day is within tolerance; WARN when some day is above it without proof;
    ERROR (blocking) when some day's share is proven above it. The metadata names the window,
    the totals, and every day above the tolerance with its counts and interval.
    """
    days = sorted(per_day)
    judged = {}
    for day in days:
        bad, total = per_day[day]
        low, high = wilson_interval(bad, total)
        judged[day] = (share_verdict(bad, total, threshold=threshold,
                                     min_bad_rows=min_bad_rows), bad, total, low, high)
    bad_total = sum(b for b, _ in per_day.values())
    rows_total = sum(t for _, t in per_day.values())
    above = [day for day in days if judged[day][0] != "pass"]
    blocking = [day for day in days if judged[day][0] == "block"]
    window = f"{days[0]}..{days[-1]}" if days else "no rows"
    metadata: dict[str, object] = {
        "days_with_rows": window,
        "bad_rows": bad_total,
        "rows": rows_total,
        "share": round(bad_total / rows_total, 6) if rows_total else 0.0,
        "tolerated_share": threshold,
        "min_bad_rows": min_bad_rows,
        "days_judged": len(days),
        "days_above_tolerance": {
            day.isoformat(): {
                "verdict": judged[day][0], "bad": judged[day][1], "rows": judged[day][2],
                "share": round(judged[day][1] / judged[day][2], 6),
                "interval_95": [round(judged[day][3], 6), round(judged[day][4], 6)],
            }
            for day in above
        },
        **(extra or {}),
    }
    if not above:
        share = bad_total / rows_total if rows_total else 0.0
        return Outcome(True, WARN, f"{window}: {bad_total} of {rows_total} {what} ({share:.1%}; "
                       f"every day within the tolerated {threshold:.1%})", metadata)
    worst = blocking or above

    def day_text(day: date) -> str:
        _, bad, total, low, high = judged[day]
        return (f"{day} {bad} of {total} ({bad / total:.1%}, 95% interval "
                f"{low:.1%}-{high:.1%})")

    listed = "; ".join(day_text(day) for day in worst[:3]) + (
        f"; and {len(worst) - 3} more day(s)" if len(worst) > 3 else "")
    if blocking:
        description = (f"{what} above the tolerated {threshold:.1%} beyond doubt on "
                       f"{len(blocking)} day(s): {listed}")
    else:
        description = (f"{what} above the tolerated {threshold:.1%} on {len(above)} day(s), "
                       f"too few rows to be sure (blocks at {min_bad_rows}+ bad rows with the "
                       f"interval above the tolerance): {listed}")
    tail = "; ".join(part for part in (example_text, advice if blocking else "") if part)
    return Outcome(False, ERROR if blocking else WARN,
                   description + (f" ({tail})" if tail else ""), metadata)


def _per_day(frame: nw.LazyFrame, bad: nw.Expr) -> dict[date, tuple[int, int]]:
    """(bad rows, rows) per arrival day of a frame with an arrival_date."""
    counts = (
        frame.group_by(PARTITION_COLUMN)
        .agg(bad.alias("__bad"), nw.len().alias("__rows"))
        .collect()
    )
    return {
        (d.date() if isinstance(d, datetime) else d): (int(b or 0), int(n))
        for d, b, n in counts.rows()
    }


def _keys(domain: str) -> tuple[str, ...]:
    if domain not in NATURAL_KEYS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(NATURAL_KEYS)}")
    return NATURAL_KEYS[domain]


def _lazy(native: Any) -> nw.LazyFrame:
    frame = nw.from_native(native)
    return frame.lazy() if isinstance(frame, nw.DataFrame) else frame


def _on_engine_of(frame: nw.LazyFrame, like: nw.LazyFrame,
                  columns: str | Sequence[str] = "customer_id") -> nw.LazyFrame:
    """Known ids may come from another engine than the rows (an eager Polars frame next to a
    Spark window): bring them over rather than fail (a few small columns)."""
    columns = [columns] if isinstance(columns, str) else list(columns)
    if frame.implementation == like.implementation:
        return frame.select(*columns)
    arrow = frame.select(*columns).collect(backend="pyarrow").to_arrow()
    if backend(like) == "spark":
        return nw.from_native(like.to_native().sparkSession.createDataFrame(arrow))
    return nw.from_native(arrow).lazy(backend="polars")


def _count(condition: nw.Expr) -> nw.Expr:
    # Spark cannot sum booleans; a null condition counts as false on both engines.
    return nw.when(condition).then(nw.lit(1, dtype=nw.Int64)).otherwise(nw.lit(0)).sum()


def _counts(frame: nw.LazyFrame, *exprs: nw.Expr) -> list[int]:
    """One small aggregate row as ints (Spark sums nothing to null, Polars to 0)."""
    row = frame.select(*[e.alias(f"__c{i}") for i, e in enumerate(exprs)]).collect().row(0)
    return [int(v or 0) for v in row]


def _examples(frame: nw.LazyFrame, columns: Sequence[str]) -> list[str]:
    """Up to ``MAX_EXAMPLES`` distinct keys as text (parts joined by '|'), smallest first so
    both engines name the same ones."""
    columns = list(columns)
    top = frame.select(*columns).unique().sort(*columns, nulls_last=True).head(MAX_EXAMPLES)
    return ["|".join(_text(v) for v in row) for row in top.collect().rows()]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC) if value.tzinfo else value
        return stamp.replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _list(values: Sequence[str]) -> str:
    return ", ".join(values)


def _same_type(actual: nw.dtypes.DType, expected: nw.dtypes.DType, on_spark: bool) -> bool:
    # A Spark timestamp is an instant whatever its session time zone; Polars states the zone.
    if on_spark and isinstance(expected, nw.Datetime):
        return isinstance(actual, nw.Datetime) and actual.time_zone is not None
    return actual == expected


def _breaks(column: str, rule: Rule) -> nw.Expr:
    """True where a non-null value breaks ``rule`` (null where the rule does not apply)."""
    value = nw.col(column)
    applies = ~value.is_null()
    if rule.only_if is not None:
        other, expected = rule.only_if
        applies = applies & (nw.col(other) == expected)
    bad = []
    if rule.allowed is not None:
        bad.append(~value.is_in(list(rule.allowed)))
    if rule.minimum is not None:
        bad.append(value < rule.minimum)
    if rule.maximum is not None:
        bad.append(value > rule.maximum)
    return applies & nw.any_horizontal(*bad, ignore_nulls=True)


def _rule_text(column: str, rule: Rule) -> str:
    bounds = []
    if rule.allowed is not None:
        bounds.append(f"in ({', '.join(rule.allowed)})")
    if rule.minimum is not None:
        bounds.append(f">= {rule.minimum:g}")
    if rule.maximum is not None:
        bounds.append(f"<= {rule.maximum:g}")
    condition = f" when {rule.only_if[0]} = {rule.only_if[1]}" if rule.only_if else ""
    return f"{column} {' and '.join(bounds)}{condition}"
