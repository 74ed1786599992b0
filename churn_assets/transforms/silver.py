"""Bronze text to silver contract rows: typed, deduplicated, masked; every row accounted for.

``clean(domain, bronze, prior_keys, pii_key)`` is pure and written once in narwhals, so the same
code runs on Polars (local) and on PySpark (Databricks). Each bronze row ends up in exactly one
of three frames: ``rows`` (the silver table), ``rejects`` (with a reason a person can act on) or
``duplicates`` (with what it duplicated) — ``bronze == rows + rejects + duplicates``.

Order of decisions: a row is rejected first (missing required values, text that does not
parse, values out of range), then among the remaining rows a key already in silver before the
window, or that arrived on an earlier day of the window, is an ``earlier_day`` duplicate; among
copies delivered on the same day the last one (file, then row number) wins.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

import narwhals as nw

from churn_assets.transforms import engine
from churn_assets.transforms.contracts import (
    ATTRIBUTE_DTYPES,
    DUPLICATE_SCHEMA,
    EVENT_TIME,
    HASHED,
    KEEPS_EXTRA_COLUMNS,
    KINDS,
    LINEAGE,
    NATURAL_KEYS,
    PARTITION_COLUMN,
    REJECT_SCHEMA,
    REQUIRED,
    SENTINELS,
    SILVER_SCHEMAS,
    VALUE_RULES,
    Rule,
)
from churn_assets.transforms.personal import WITHHELD, looks_like_contact, shown

BRONZE_PARTITION = "_drop_date"
BRONZE_METADATA = ("_source_file", "_row_number", "_batch_id", "_ingested_at", BRONZE_PARTITION)
# Explicit characters, so both engines trim the same (Polars' default is Unicode whitespace).
WHITESPACE = string.whitespace
# Shapes checked before parsing, identically on both engines. [0-9], not \d: Rust's \d also
# matches other scripts' digits, Java's does not.
TIMESTAMP_SHAPE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?$"
)
FLOAT_SHAPE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
INT_SHAPE = r"^[+-]?[0-9]+(\.0+)?$"
EMAIL_SHAPE = r"^[^@ \t]+@[^@ \t]+\.[^@ \t]+$"
PHONE_SHAPE = r"^\+?[0-9]{6,}$"
# ``SENTINELS`` (the empty string included) as one anchored pattern.
SENTINEL_PATTERN = "^(" + "|".join(re.escape(s) for s in SENTINELS if s) + ")?$"
WHAT = {"timestamp": "a timestamp", "float": "a number", "int": "an integer"}
# Temporary columns carry this prefix; none survive into the outputs.
RAW, VAL, TEXT = "__raw__", "__val__", "__text__"
_NULL_TEXT = nw.lit(None, dtype=nw.String())


@dataclass
class SilverResult:
    """Narwhals frames; ``.to_native()`` gives the input's engine (eager Polars in, eager out;
    lazy Polars or Spark in, lazy out). Columns and types: ``SILVER_SCHEMAS[domain]`` (plus a
    customer import's own attribute columns before the lineage), ``REJECT_SCHEMA``,
    ``DUPLICATE_SCHEMA``."""

    rows: nw.LazyFrame | nw.DataFrame
    rejects: nw.LazyFrame | nw.DataFrame
    duplicates: nw.LazyFrame | nw.DataFrame


def clean(
    domain: str, bronze: Any, prior_keys: Any, pii_key: str,
    attributes: dict[str, str] | None = None,
) -> SilverResult:
    """Type, validate, mask and deduplicate one window of ``domain``'s bronze rows.

    ``prior_keys`` holds the natural-key columns of silver partitions before the window (typed
    as in ``SILVER_SCHEMAS``; ``None`` or empty when there are none). ``pii_key`` keys the email
    and phone hashes: keep it secret and stable, or hashes stop joining across days.
    ``attributes`` (customers only) are the extra columns silver keeps, by name, with their kind
    (``text``, ``enum``, ``float``, ``int``, ``timestamp``); every other column stays in bronze.
    """
    if domain not in KINDS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(KINDS)}")
    if domain in HASHED and not pii_key:
        raise ValueError("pii_key is empty: personal data would be hashed without a secret")
    frame, eager = _lazy(bronze)
    frame, extras = _conform(domain, frame, attributes or {})
    kinds = {**KINDS[domain], **extras}
    frame = _type(frame, kinds)
    frame = frame.with_columns(_reason(domain, kinds).alias("reason"))
    for source, target in HASHED.get(domain, {}).items():
        frame = engine.keyed_sha256(frame, source, pii_key, alias=target)
    frame = engine.utc_date(frame, EVENT_TIME[domain], "event_date")
    # Only what the outputs need goes on: raw email and phone (and their text copies) end here.
    keys_as_delivered = [RAW + k for k in NATURAL_KEYS[domain]]
    frame = frame.select(*SILVER_SCHEMAS[domain], *extras, *keys_as_delivered, "reason")
    frame = engine.materialize(_classify(domain, frame, prior_keys))

    key_text = _natural_key_text(domain)
    rows = frame.filter(nw.col("__outcome") == "row").select(
        *[_cast(c, t) for c, t in SILVER_SCHEMAS[domain].items() if c not in LINEAGE],
        *[_cast(c, ATTRIBUTE_DTYPES[k]) for c, k in extras.items()],
        *[_cast(c, t) for c, t in LINEAGE.items()],
    )
    rejects = frame.filter(nw.col("__outcome") == "reject").select(
        key_text, *[_cast(c, t) for c, t in REJECT_SCHEMA.items() if c != "natural_key"]
    )
    duplicates = frame.filter(nw.col("__outcome") == "duplicate").select(
        key_text, *[_cast(c, t) for c, t in DUPLICATE_SCHEMA.items() if c != "natural_key"]
    )
    if eager:
        rows, rejects, duplicates = rows.collect(), rejects.collect(), duplicates.collect()
    return SilverResult(rows=rows, rejects=rejects, duplicates=duplicates)


def exceptions_frame(rejects: Any, duplicates: Any) -> nw.LazyFrame | nw.DataFrame:
    """``clean``'s rejects and duplicates as one ``EXCEPTION_SCHEMA`` frame."""
    rejects, duplicates = nw.from_native(rejects), nw.from_native(duplicates)
    lineage = [_cast(c, t) for c, t in LINEAGE.items()]
    return nw.concat([
        rejects.select("natural_key", *lineage, kind=nw.lit("rejected"), reason=nw.col("reason")),
        duplicates.select("natural_key", *lineage, kind=nw.lit("duplicate"),
                          reason=nw.concat_str(nw.lit("duplicate: "), nw.col("duplicate_of"))),
    ])


def _cast(column: str, dtype: nw.dtypes.DType) -> nw.Expr:
    """Cast to the contract type. Timestamps come typed from ``engine`` and are left alone:
    Spark reports them in the session time zone, which a cast to "UTC" would try to change."""
    if isinstance(dtype, nw.Datetime):
        return nw.col(column)
    return nw.col(column).cast(dtype)


def _lazy(native: Any) -> tuple[nw.LazyFrame, bool]:
    frame = nw.from_native(native)
    if isinstance(frame, nw.DataFrame):
        return frame.lazy(), True
    return frame, False


def _conform(
    domain: str, frame: nw.LazyFrame, attributes: dict[str, str]
) -> tuple[nw.LazyFrame, dict[str, str]]:
    """Every contract column and declared attribute present (absent ones as null text), lineage
    renamed and typed; any other column (an export's ``contact_email``) is left behind."""
    columns = frame.collect_schema().names()
    missing = [c for c in BRONZE_METADATA if c not in columns and c != "_ingested_at"]
    if missing:
        raise ValueError(
            f"{domain} bronze frame lacks the ingestion column(s) {', '.join(missing)}: "
            "pass rows of the bronze table, not raw landing files"
        )
    extras = dict(attributes) if domain in KEEPS_EXTRA_COLUMNS else {}
    frame = frame.with_columns(
        *[nw.lit(None, dtype=nw.String()).alias(c) for c in [*KINDS[domain], *extras]
          if c not in columns],
        nw.col(BRONZE_PARTITION).cast(nw.Date()).alias(PARTITION_COLUMN),
        nw.col("_row_number").cast(nw.Int64()),
    )
    # Names are dropped here, before anything else can carry them along.
    keep = [*KINDS[domain], *extras, *LINEAGE]
    return frame.select(*[nw.col(c) for c in keep]), extras


def _trimmed(column: str) -> nw.Expr:
    return nw.col(column).cast(nw.String()).str.strip_chars(WHITESPACE)


def _type(frame: nw.LazyFrame, kinds: dict[str, str]) -> nw.LazyFrame:
    """Turn each contract column ``<c>`` into its silver value: conformed text, or a number or
    timestamp (null when the text does not parse). Kept for reasons and keys: ``__raw__<c>``,
    the trimmed text (null when empty), and ``__val__<c>``, the same without placeholders.

    Each intermediate is a column, not a repeated sub-expression: on classic PySpark every
    expression node costs JVM round trips, so building a plan is the slow part of small windows.
    """
    frame = frame.with_columns(*[_trimmed(c).alias(RAW + c) for c in kinds])
    frame = frame.with_columns(
        *[nw.when(nw.col(RAW + c) != "").then(nw.col(RAW + c)).alias(RAW + c) for c in kinds],
        *[_without_placeholder(nw.col(RAW + c)).alias(VAL + c) for c in kinds],
    )
    conformed, parse_as = [], {}
    for c, kind in kinds.items():
        text = nw.col(VAL + c)
        if kind == "id":
            # A spreadsheet turns id 17850 into "17850.0"; drop that before comparing ids.
            value = text.str.replace_all(r"^([0-9]+)\.0+$", "$1").str.to_uppercase()
        elif kind in ("enum", "email"):
            value = text.str.to_lowercase()
        elif kind == "text":
            value = text
        elif kind == "phone":
            plus = nw.when(text.str.starts_with("+")).then(nw.lit("+")).otherwise(nw.lit(""))
            value = nw.concat_str([plus, text.str.replace_all(r"[^0-9]", "")])
        else:
            parse_as[c] = kind
            conformed.append(_parseable_text(text, kind).alias(TEXT + c))
            continue
        conformed.append(value.alias(c))
    frame = frame.with_columns(*conformed)
    for kind in ("float", "int", "timestamp"):
        columns = {c: TEXT + c for c, k in parse_as.items() if k == kind}
        if columns and kind == "timestamp":
            frame = engine.parse_utc_timestamps(frame, columns)
        elif columns:
            frame = engine.parse_numbers(frame, columns, kind)
    return frame


def _without_placeholder(text: nw.Expr) -> nw.Expr:
    """Null for empty text and placeholders ('N/A', '???', …). One regex rather than ``is_in``
    over a list: each literal of a Spark expression is a JVM round trip."""
    return nw.when(~text.str.contains(SENTINEL_PATTERN)).then(text).otherwise(_NULL_TEXT)


def _parseable_text(text: nw.Expr, kind: str) -> nw.Expr:
    """The text in the one form both engines' parsers read alike; null for any other shape.

    Timestamps: ``2026-01-22 14:20:25Z`` -> ``2026-01-22T14:20:25+00:00``; text without an
    offset is taken as UTC. Integers: ``3.0`` -> ``3``.
    """
    if kind == "timestamp":
        shape = TIMESTAMP_SHAPE
        text_form = (
            text.str.replace_all(" ", "T", literal=True)
            .str.replace_all(r"[Zz]$", "+00:00")
            .str.replace_all(r"([+-][0-9]{2})([0-9]{2})$", "$1:$2")
            .str.replace_all(r"(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?)$", "$1+00:00")
        )
    elif kind == "int":
        shape, text_form = INT_SHAPE, text.str.replace_all(r"\.0+$", "")
    else:
        shape, text_form = FLOAT_SHAPE, text
    return nw.when(text.str.contains(shape)).then(text_form)


def _message(*parts: str | nw.Expr) -> nw.Expr:
    # Used only where every part is non-null, so the cheaper ``ignore_nulls`` form is exact.
    return nw.concat_str(
        [nw.lit(p) if isinstance(p, str) else p for p in parts], ignore_nulls=True
    )


def _reason(domain: str, kinds: dict[str, str]) -> nw.Expr:
    """Every problem of a row, joined by '; ' — null when there is none. Values are quoted as
    delivered (the raw text, so both engines word it alike), except anything that looks like
    personal data, whichever column it is in."""
    checks: list[nw.Expr] = []
    required = set(REQUIRED[domain])
    for c, kind in kinds.items():
        raw, value, delivered = nw.col(RAW + c), nw.col(c), ~nw.col(VAL + c).is_null()
        if c in required:
            # Null or empty, or a placeholder such as 'N/A' that is worth showing.
            checks.append(
                nw.when(raw.is_null()).then(nw.lit(f"{c} is missing"))
                .when(~delivered).then(_message(f"{c} is missing ('", shown(raw), "')"))
            )
        if kind in WHAT:
            checks.append(
                nw.when(delivered & value.is_null())
                .then(_message(f"{c} '", shown(raw), f"' is not {WHAT[kind]}"))
            )
        elif kind in ("enum", "text"):
            # A column shift puts an e-mail address into `segment`: not a category, and not
            # something silver may keep or a reason may quote.
            checks.append(
                nw.when(delivered & looks_like_contact(raw))
                .then(nw.lit(f"{c} holds what looks like an e-mail address or phone number "
                             f"{WITHHELD}"))
            )
        elif kind in ("email", "phone"):
            shape = EMAIL_SHAPE if kind == "email" else PHONE_SHAPE
            what = "an email address" if kind == "email" else "a phone number"
            checks.append(
                nw.when(delivered & ~value.str.contains(shape))
                .then(nw.lit(f"{c} is not {what} (value withheld: personal data)"))
            )
        for rule in VALUE_RULES[domain].get(c, ()):
            checks.append(_rule_check(c, rule))
    reason = nw.concat_str(checks, separator="; ", ignore_nulls=True)
    return nw.when(reason != "").then(reason).otherwise(_NULL_TEXT)


def _rule_check(column: str, rule: Rule) -> nw.Expr:
    value = nw.col(column)
    label = column
    applies = ~value.is_null()
    if rule.only_if is not None:
        other, expected = rule.only_if
        applies = applies & (nw.col(other) == expected)
        label = f"{expected} {column}"
    if rule.allowed is not None:
        return nw.when(applies & ~value.is_in(list(rule.allowed))).then(
            _message(f"{label} '", shown(nw.col(RAW + column)),
                     f"' is not one of {', '.join(rule.allowed)}")
        )
    low, high = rule.minimum, rule.maximum
    if low is not None and high is not None:
        bounds = f"{_num(low)}..{_num(high)}"
        return nw.when(applies & ((value < low) | (value > high))).then(
            _message(f"{label} ", nw.col(RAW + column), f" outside {bounds}")
        )
    if low == 0:
        return nw.when(applies & (value < 0)).then(
            _message(f"{label} ", nw.col(RAW + column), " is negative")
        )
    if high == 0:
        return nw.when(applies & (value > 0)).then(
            _message(f"{label} ", nw.col(RAW + column), " is positive")
        )
    condition, word = (value < low, "below") if low is not None else (value > high, "above")
    bound = _num(low if low is not None else high)
    return nw.when(applies & condition).then(
        _message(f"{label} ", nw.col(RAW + column), f" is {word} {bound}")
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _classify(domain: str, frame: nw.LazyFrame, prior_keys: Any) -> nw.LazyFrame:
    """``__outcome`` (row | reject | duplicate) and ``duplicate_of`` for every row."""
    keys = list(NATURAL_KEYS[domain])
    prior = _prior(domain, prior_keys, frame)
    if prior is not None:
        frame = frame.join(prior, on=keys, how="left")
    else:
        frame = frame.with_columns(nw.lit(None, dtype=nw.Boolean()).alias("__prior"))
    rejected = ~nw.col("reason").is_null()
    earlier = nw.col("__prior").fill_null(False)
    frame = frame.with_columns((rejected | earlier).alias("__excluded"))
    # A record exists from the first day it arrived: copies delivered on later days are
    # earlier_day duplicates, exactly as they are when those days run separately (prior_keys),
    # so a range backfill and day-by-day runs file every record under the same arrival_date.
    # Within that first day, the last copy (file, row number) is the delivery that counts.
    group = [*keys, "__excluded"]
    frame = frame.with_columns(
        nw.col(PARTITION_COLUMN).min().over(*group).alias("__first_day"),
        nw.col("_row_number")
        .cum_count(reverse=True)
        .over(*group, PARTITION_COLUMN, order_by=["_source_file", "_row_number"])
        .alias("__later"),
    )
    arrived_before = nw.col(PARTITION_COLUMN) > nw.col("__first_day")
    superseded = nw.col("__later") > 1
    return frame.with_columns(
        nw.when(rejected).then(nw.lit("reject"))
        .when(earlier | arrived_before | superseded).then(nw.lit("duplicate"))
        .otherwise(nw.lit("row"))
        .alias("__outcome"),
        nw.when(rejected).then(nw.lit(None, dtype=nw.String()))
        .when(earlier | arrived_before).then(nw.lit("earlier_day"))
        .when(superseded).then(nw.lit("same_batch"))
        .alias("duplicate_of"),
    )


def _prior(domain: str, prior_keys: Any, like: nw.LazyFrame) -> nw.LazyFrame | None:
    """Distinct prior keys typed as in silver, marked ``__prior``; None when there are none."""
    if prior_keys is None:
        return None
    prior = nw.from_native(prior_keys)
    if isinstance(prior, nw.DataFrame):
        if prior.is_empty():
            return None
        prior = prior.lazy()
    if prior.implementation != like.implementation:
        # An eager Polars frame of keys next to a Spark window, say: bring it to the window's
        # engine rather than fail (prior keys are one small column or two).
        prior = _to_engine(prior, like)
    keys = NATURAL_KEYS[domain]
    schema = SILVER_SCHEMAS[domain]
    lacking = [k for k in keys if k not in prior.collect_schema().names()]
    if lacking:
        raise ValueError(f"prior_keys for {domain} lacks the key column(s) {', '.join(lacking)}")
    return (
        prior.select(*[_cast(k, schema[k]) for k in keys])
        .unique()
        .with_columns(nw.lit(True).alias("__prior"))
    )


def _to_engine(prior: nw.LazyFrame, like: nw.LazyFrame) -> nw.LazyFrame:
    arrow = prior.collect(backend="pyarrow").to_arrow()
    if engine.backend(like) == "spark":
        return nw.from_native(like.to_native().sparkSession.createDataFrame(arrow))
    return nw.from_native(arrow).lazy(backend="polars")


def _natural_key_text(domain: str) -> nw.Expr:
    """The natural key as delivered (trimmed), parts joined by '|', so a person can find it."""
    parts = [nw.col(RAW + k).fill_null("") for k in NATURAL_KEYS[domain]]
    return nw.concat_str(parts, separator="|").alias("natural_key")
