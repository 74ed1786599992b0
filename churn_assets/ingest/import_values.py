"""Column mappings and value parsing for ``churn-assets import``: every check is an expression.

A check marks the rows it fails with a reason; rows failing any check are rejected (listed with
their line), unless a check that should almost never fail fails on more than ``REJECT_LIMIT`` of
the rows: then the mapping or the format is wrong, and the import stops with the first bad line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

from churn_assets.ingest.readers import ROW_NUMBER

# fmt: off
TARGETS: dict[str, tuple[str, ...]] = {
    "payments": (
        "customer_id", "timestamp", "amount", "order_id", "quantity", "category", "unit_price",
        "transaction_id", "status", "currency", "payment_method",
    ),
    "customers": (
        "customer_id", "signup_at", "name", "email", "phone", "segment", "region",
        "acquisition_channel", "status", "cancelled_at",
    ),
}
# A check that fails on more than this share of rows (and on more than REJECT_FLOOR rows, or on
# every row) aborts the import: a wrong mapping or format, not a few bad records.
REJECT_LIMIT = 0.05
REJECT_FLOOR = 10
# Tried in order when no --timestamp-format is given; the one parsing most values wins.
TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
    "%d/%m/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M", "%Y/%m/%d",
)
# fmt: on
# Amounts are written as exact cents in 64-bit integers; anything near that limit (about 9.2e16
# cents) is an export error long before it is a real order.
MAX_ABS_AMOUNT = 1e12
# Values quoted in messages are cut to this many characters: a line can be megabytes long.
QUOTE_LIMIT = 120


class ImportDataError(ValueError):
    """The file cannot be imported as it is (unreadable, unparseable values, dates out of range)."""


class ImportMappingError(ValueError):
    """The column mapping is malformed or does not fit the file."""


def parse_mapping(text: str, domain: str | None = None) -> dict[str, str]:
    """``"customer_id=CustomerID,timestamp=InvoiceDate,amount=Quantity*UnitPrice"`` -> dict.

    Targets are checked against ``domain``'s targets, or against every domain's when not given.
    Only ``amount`` accepts ``ColumnA*ColumnB`` (a product of two columns).
    """
    known = (
        TARGETS[domain]
        if domain
        else tuple(dict.fromkeys(t for ts in TARGETS.values() for t in ts))
    )
    mapping: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        target, equals, source = (piece.strip() for piece in entry.partition("="))
        if not equals or not target or not source:
            raise ImportMappingError(f"mapping entry {entry!r} must look like target=SourceColumn")
        if target not in known:
            raise ImportMappingError(
                f"unknown mapping target {target!r}; known targets: {', '.join(known)}"
            )
        if target in mapping:
            raise ImportMappingError(f"mapping target {target!r} is given twice")
        mapping[target] = source
    _check_products(mapping)
    if not mapping:
        raise ImportMappingError("the mapping is empty; give at least customer_id=<column>")
    return mapping


def _check_products(mapping: dict[str, str]) -> None:
    for target, source in mapping.items():
        if "*" not in source:
            continue
        operands = [operand.strip() for operand in source.split("*")]
        if target != "amount":
            raise ImportMappingError(
                f"only amount can be a product of columns, not {target}={source}"
            )
        if len(operands) != 2 or not all(operands):
            raise ImportMappingError(
                f"amount={source} must multiply exactly two columns: amount=A*B"
            )
        mapping[target] = "*".join(operands)


def resolve_mapping(
    mapping: dict[str, str], domain: str, columns: list[str], path: Path
) -> tuple[dict[str, str], list[str]]:
    """Validate a mapping against the file; columns already named like a target map themselves."""
    targets = TARGETS[domain]
    unknown = [target for target in mapping if target not in targets]
    if unknown:
        raise ImportMappingError(
            f"unknown {domain} mapping target(s) {', '.join(unknown)}; known: {', '.join(targets)}"
        )
    mapping = dict(mapping)
    _check_products(mapping)
    notes = []
    used = {column for source in mapping.values() for column in source.split("*")}
    for target in targets:
        if target in mapping:
            continue
        # Same name, ignoring case ("Email" is email), when exactly one unused column has it.
        same = [c for c in columns if c.strip().lower() == target and c not in used]
        if len(same) == 1:
            mapping[target] = same[0]
            used.add(same[0])
            notes.append(f"column {same[0]!r} used as {target} (same name)")
    required = ["customer_id"] + (["timestamp"] if domain == "payments" else [])
    missing = [target for target in required if target not in mapping]
    if (
        domain == "payments"
        and "amount" not in mapping
        and not {"quantity", "unit_price"} <= set(mapping)
    ):
        missing.append("amount (or quantity and unit_price)")
    if missing:
        raise ImportMappingError(
            f"the {domain} mapping needs {', '.join(missing)}, e.g. customer_id=CustomerID; "
            f"{path.name} has the columns: {', '.join(_visible(columns))}"
        )
    for target, source in mapping.items():
        for column in source.split("*"):
            if column not in columns:
                hint = ""
                if len(_visible(columns)) == 1 and any(s in columns[0] for s in ";\t|"):
                    hint = (" (one column whose name holds ';', tab or '|': pass --delimiter "
                            "with the file's separator)")
                raise ImportMappingError(
                    f"{path.name} has no column {cut(column, 60)} (mapped to {target}); "
                    f"its columns are: {', '.join(_visible(columns))}{hint}"
                )
    return mapping, notes


def _visible(columns: list[str]) -> list[str]:
    """Column names for a message: each cut, at most 30 of them."""
    names = [column if len(column) <= 60 else f"{column[:60]}…"
             for column in columns if column != ROW_NUMBER]
    return names if len(names) <= 30 else [*names[:30], f"… ({len(names) - 30} more)"]


@dataclass(frozen=True)
class Check:
    """Rows where ``failed`` holds are rejected with ``reason``; ``value`` shows the culprit."""

    failed: pl.Expr
    reason: str
    column: str
    value: pl.Expr
    abort_hint: str | None = None  # set: too many failures abort the import with this advice


def apply_checks(frame: pl.DataFrame, checks: list[Check], path: Path) -> pl.DataFrame:
    """Add ``_reason``/``_column``/``_value`` (the first failing check), or abort on mass failure."""
    marks = frame.select(
        [check.failed.fill_null(True).alias(f"_f{i}") for i, check in enumerate(checks)]
    )
    for i, check in enumerate(checks):
        failed = frame.filter(marks[f"_f{i}"])
        too_many = failed.height > max(REJECT_LIMIT * frame.height, REJECT_FLOOR)
        if check.abort_hint and failed.height and (too_many or failed.height == frame.height):
            line, value = failed.select(pl.col(ROW_NUMBER), check.value).row(0)
            raise ImportDataError(
                f"{path.name}: {failed.height:,} of {frame.height:,} rows fail: {check.reason} "
                f"(column {check.column!r}); the first is line {line}: {cut(value)}. "
                f"{check.abort_hint}"
            )
    # One when/then chain per output column; built from the last check so the first one wins.
    reason = column = value = pl.lit(None, pl.String)
    for i, check in reversed(list(enumerate(checks))):
        hit = pl.col(f"_f{i}")
        reason = pl.when(hit).then(pl.lit(check.reason)).otherwise(reason)
        column = pl.when(hit).then(pl.lit(check.column)).otherwise(column)
        value = pl.when(hit).then(check.value.cast(pl.String)).otherwise(value)
    frame = pl.concat([frame, marks], how="horizontal")
    frame = frame.with_columns(_reason=reason, _column=column, _value=value)
    return frame.drop(marks.columns)


def rejects(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("_reason").is_not_null()).select(
        pl.col(ROW_NUMBER).alias("line"),
        pl.col("_reason").alias("reason"),
        pl.col("_column").alias("column"),
        pl.col("_value").alias("value"),
    )


def quarantine_rejects(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Lines the file reader could not parse, in the reject file's shape."""
    return quarantine.select(
        pl.col(ROW_NUMBER).alias("line"),
        pl.col("reason"),
        pl.lit(None, pl.String).alias("column"),
        pl.col("raw").alias("value"),
    )


def text_getter(mapping: dict[str, str]):
    """Mapped text, trimmed, with empty as null; null for an unmapped target."""

    def get(target: str) -> pl.Expr:
        if target not in mapping:
            return pl.lit(None, pl.String).alias(target)
        value = pl.col(mapping[target]).str.strip_chars()
        return pl.when(value != "").then(value).alias(target)

    return get


def customer_id(column: str) -> pl.Expr:
    """Trimmed ids; a spreadsheet's float-looking integer id ("17850.0") loses its ".0"."""
    value = pl.col(column).str.strip_chars().str.replace(r"^(-?\d+)\.0+$", "$1")
    return pl.when(value != "").then(value)


def customer_id_check(column: str) -> Check:
    return Check(customer_id(column).is_null(), "empty customer_id", column, pl.col(column))


def number(column: str) -> pl.Expr:
    return pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)


def cut(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a value, cut for a message (a 10 MB line is never echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def finite_check(value: pl.Expr, what: str, column: str) -> Check:
    """Parsed numbers that are infinite or implausibly large (NaN is 'not a number')."""
    return Check(
        (value.is_infinite() | (value.abs() > MAX_ABS_AMOUNT)).fill_null(False),
        f"{what} is infinite or larger than {MAX_ABS_AMOUNT:,.0f} in absolute value",
        column,
        value.cast(pl.String),
    )


def duplicate_line_check(columns: list[str]) -> Check:
    """Later copies of an identical line: an export repeating a line is not two orders."""
    first = pl.col(ROW_NUMBER).min().over(columns)
    return Check(
        pl.col(ROW_NUMBER) != first,
        "exact duplicate of an earlier line, imported once (--keep-duplicates imports every copy)",
        "(whole line)",
        pl.format("same as line {}", first),
    )


def plausible_day_check(moment: pl.Expr, target: str, column: str, earliest: date,
                        latest: date) -> Check:
    day = moment.dt.date()
    return Check(
        ((day > latest) | (day < earliest)).fill_null(False),
        f"{target} is outside the plausible days {earliest} .. {latest} ([imports] "
        "max_days_after_today and earliest in settings.toml)",
        column,
        pl.col(column),
    )


def number_check(column: str, what: str) -> Check:
    return Check(
        number(column).is_null() | number(column).is_nan(),
        f"{what} is not a number",
        column,
        pl.col(column),
        "Map the right column, or write numbers with '.' as the decimal point "
        "and without currency symbols or thousands separators.",
    )


def money(amount: pl.Expr) -> pl.Expr:
    """Two decimals, as the simulator writes amounts (``-12.30``); exact via integer cents."""
    # Not strict: rejected rows (inf, 1e300) are computed too, and must not raise.
    cents = (amount * 100).round(0).cast(pl.Int64, strict=False)
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    whole = (cents.abs() // 100).cast(pl.String)
    fraction = (cents.abs() % 100).cast(pl.String).str.zfill(2)
    return pl.concat_str([sign, whole, pl.lit("."), fraction])


def integral_text(value: pl.Expr) -> pl.Expr:
    """``6.0`` -> ``"6"``; other numbers keep their decimals."""
    whole = value.round(0) == value
    return (
        pl.when(whole)
        .then(value.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(value.cast(pl.String))
    )


def iso_utc(moment: pl.Expr) -> pl.Expr:
    return moment.dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")


@dataclass(frozen=True)
class Timestamps:
    column: str
    format: str
    timezone: str
    local: pl.Expr  # as written (naive or with its own offset)
    values: pl.Expr  # UTC
    notes: tuple[str, ...] = ()

    def check(self, target: str, optional: bool = False) -> list[Check]:
        written = pl.col(self.column).str.strip_chars()
        hint = (
            f"Pass --timestamp-format to say how {self.column!r} is written (strftime codes, "
            f"e.g. '%d/%m/%Y %H:%M'); it was read as {self.format!r}."
        )
        present = written.is_not_null() & (written != "")
        checks = [
            Check(
                present & self.local.is_null(),
                f"{target} does not match {self.format!r}",
                self.column,
                pl.col(self.column),
                hint,
            ),
            Check(
                self.local.is_not_null() & self.values.is_null(),
                f"{target} does not exist in {self.timezone} (daylight saving gap)",
                self.column,
                pl.col(self.column),
            ),
        ]
        if not optional:
            checks.insert(
                0, Check(~present, f"empty {target}", self.column, pl.col(self.column), hint)
            )
        return checks


def parse_timestamps(
    rows: pl.DataFrame,
    column: str,
    timezone: str,
    timestamp_format: str | None,
    path: Path,
    optional: bool = False,
) -> Timestamps:
    """Parse a timestamp column to UTC: naive values are wall-clock time in ``timezone``."""
    try:
        pl.select(pl.lit(datetime(2020, 1, 1)).dt.replace_time_zone(timezone))
    except pl.exceptions.PolarsError as exc:
        raise ImportMappingError(
            f"unknown timezone {timezone!r}; use an IANA name like 'Europe/London'"
        ) from exc
    written = rows.select(pl.col(column).str.strip_chars()).to_series()
    notes: tuple[str, ...] = ()
    if timestamp_format:
        fmt = timestamp_format
    else:
        fmt, notes = _detect_format(written, column, rows, path, optional)
    local = pl.col(column).str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
    if any(code in fmt for code in ("%z", "%#z", "%:z")):
        utc = local.dt.convert_time_zone("UTC")
    else:
        utc = local.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
        utc = utc.dt.convert_time_zone("UTC")
    return Timestamps(column, fmt, timezone, local, utc, notes)


def _detect_format(
    written: pl.Series, column: str, rows: pl.DataFrame, path: Path, optional: bool
) -> tuple[str, tuple[str, ...]]:
    sample = written.filter(written.is_not_null() & (written != "")).head(20_000)
    if sample.len() == 0:
        if optional:  # nothing to parse, so any format will do
            return TIMESTAMP_FORMATS[0], ()
        raise ImportDataError(f"{path.name}: column {column!r} has no timestamps at all")
    scores = {
        fmt: sample.str.to_datetime(fmt, strict=False).is_not_null().sum()
        for fmt in TIMESTAMP_FORMATS
    }
    best = max(scores, key=lambda fmt: (scores[fmt], -TIMESTAMP_FORMATS.index(fmt)))
    if scores[best] == 0:
        line = rows.filter(written.is_not_null() & (written != ""))[ROW_NUMBER][0]
        raise ImportDataError(
            f"{path.name}: cannot tell how column {column!r} writes timestamps (line {line}: "
            f"{cut(sample[0])}); pass --timestamp-format with strftime codes, e.g. '%d/%m/%Y %H:%M'"
        )
    swapped = best.replace("%m/%d", "%d/%m") if "%m/%d" in best else best.replace("%d/%m", "%m/%d")
    if swapped != best and scores.get(swapped) == scores[best]:
        # Every value seen has day <= 12: the order cannot be told from the data.
        return best, (
            f"{column!r}: day and month order is ambiguous in the values seen; read as "
            f"{best!r}. Pass --timestamp-format {swapped!r} if that is wrong.",
        )
    return best, ()


def check_partition_start(
    accepted: pl.DataFrame, start: date, settings_file: Path, path: Path
) -> None:
    early = accepted.filter(pl.col("_day") < start)
    if early.height == 0:
        return
    day, line = early.sort("_day", ROW_NUMBER).select("_day", ROW_NUMBER).row(0)
    raise ImportDataError(
        f"{path.name}: {early.height:,} row(s) are dated before {start}, the first day of the "
        f"pipeline's daily partitions (the earliest is {day}, line {line}). Add\n\n"
        f"[partitions]\nstart = {day}\n\nto $CHURN_HOME/settings.toml ({settings_file}) and import again."
    )
