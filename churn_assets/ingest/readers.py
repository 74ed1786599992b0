"""Parse one landing file into bronze rows plus a quarantine, without losing a single record.

Bronze keeps data *as delivered*: every column is text, an empty CSV field stays an empty string,
and a record that cannot be parsed goes to the quarantine with a reason a person can act on, never
into the void. For every file ``rows.height + quarantine.height == records_in_file``, where
``records_in_file`` is counted independently of parsing (non-blank data lines, or Parquet's
row count), so a parser bug shows up as a broken count instead of silently missing rows.

``_row_number`` is what a person sees in an editor: the 1-based physical line for text formats
(a CSV header is line 1, its first data row line 2), the 1-based row index for Parquet.

Known limit: a quoted CSV field with an embedded newline spans two physical lines; each half is
quarantined on its own (unbalanced quote) rather than re-assembled, so both halves stay visible.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

import polars as pl
import pyarrow.parquet as pq

ROW_NUMBER = "_row_number"
RAW_LIMIT = 2000
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    ROW_NUMBER: pl.Int64(),
    "reason": pl.String(),
    "raw": pl.String(),
}

# A complete RFC 4180 quoted field: opening quote, anything but a lone quote, closing quote.
_QUOTED_FIELD = r'"(?:[^"]|"")*"'
# Stands in for a quoted field while counting separators (only when diagnosing a bad line).
_PLACEHOLDER = "\x1f"
# A JSON string literal, escapes included.
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
# One flat JSON object: string keys, scalar values (string, number, true, false, null).
_JSON_SCALAR = rf"(?:{_JSON_STRING}|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)"
_JSON_MEMBER = rf"{_JSON_STRING}\s*:\s*{_JSON_SCALAR}"
_FLAT_JSON_OBJECT = rf"^\s*\{{\s*(?:{_JSON_MEMBER}\s*(?:,\s*{_JSON_MEMBER}\s*)*)?\}}\s*$"
# If the fast JSON path fails on a batch, it retries each half, down to batches of this many
# lines, which take the per-line path: a bad line costs a few re-reads of shrinking batches and
# at most this many json.loads calls, not a per-line pass over the whole file.
_JSON_LINES_PER_LINE_PATH = 128


class LandingFileError(ValueError):
    """The whole file is unusable (missing, unreadable, bad header); the caller decides what next."""


@dataclass(frozen=True)
class ParsedFile:
    rows: pl.DataFrame
    quarantine: pl.DataFrame
    records_in_file: int


def read_landing_file(path: Path) -> ParsedFile:
    """Parse one landing file, choosing the format by its suffix."""
    path = Path(path)
    parser = _parser_for(path.suffix, str(path))
    if not path.is_file():
        raise LandingFileError(f"{path}: file not found")
    return parser(path, str(path))


def parse_landing_bytes(name: str, content: bytes) -> ParsedFile:
    """Parse a landing file's content, choosing the format by the suffix of ``name``.

    For callers that hold the bytes rather than a local path (Spark's ``binaryFile`` source);
    ``name`` also labels errors, so it should say where the bytes came from.
    """
    return _parser_for(PurePath(name).suffix, name)(content, name)


def _parser_for(suffix: str, label: str) -> Callable[[Path | bytes, str], ParsedFile]:
    parser = _PARSERS.get(suffix.lower())
    if parser is None:
        known = ", ".join(sorted(_PARSERS))
        raise LandingFileError(
            f"{label}: unsupported file type {suffix!r}; expected one of {known}"
        )
    return parser


def _label(source: Path | bytes, label: str | None) -> str:
    return label or str(source if isinstance(source, Path) else "<bytes>")


def parse_csv(source: Path | bytes, label: str | None = None, separator: str = ",") -> ParsedFile:
    """Parse CSV from a path or from bytes (``label`` names the source in errors)."""
    label = _label(source, label)
    lines, lossy = _read_lines(source, label)
    nonblank = _numbered(lines).filter(~pl.col("line").str.contains(r"^\s*$"))
    if nonblank.height == 0:
        return ParsedFile(_empty_rows([]), _empty_quarantine(), 0)
    header_line = nonblank.item(0, "line").removeprefix("\ufeff")
    names = _header_names(header_line, label, separator, lossy)
    good, bad = _check_csv_lines(nonblank.slice(1), len(names), separator, lossy)
    rows = _parse_good_csv_lines(good, names, separator, label)
    return ParsedFile(rows, _quarantine(bad), good.height + bad.height)


def _read_lines(source: Path | bytes, label: str) -> tuple[pl.Series, bool]:
    """Physical lines (CRLF handled by Polars); ``lossy`` when invalid UTF-8 was replaced by U+FFFD."""
    try:
        # glob=False: a path names one file; as a pattern, "[1]" in a folder name read nothing.
        return pl.read_lines(source, glob=False)["line"], False
    except pl.exceptions.ComputeError as exc:
        if "utf8" not in str(exc).lower():
            raise LandingFileError(f"{label}: cannot read: {exc}") from exc
    except OSError as exc:
        raise LandingFileError(f"{label}: cannot read: {exc}") from exc
    # Slow path only for files with bad bytes: decode lossily so each bad line can be quarantined.
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as exc:
        raise LandingFileError(f"{label}: cannot read: {exc}") from exc
    text = data.decode("utf-8", errors="replace")
    return pl.read_lines(text.encode("utf-8"))["line"], True


def _numbered(lines: pl.Series) -> pl.DataFrame:
    # read_lines already strips the "\n" and a "\r" before it, so the index is the line number.
    numbered = pl.DataFrame({"line": lines}).with_row_index(ROW_NUMBER, offset=1)
    return numbered.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))


def _header_names(header_line: str, label: str, separator: str, lossy: bool) -> list[str]:
    header = pl.DataFrame({"line": [header_line]})
    problem = header.select(_csv_reason(None, separator, lossy)).item()
    if problem:
        raise LandingFileError(f"{label}: header line is malformed ({problem})")
    parsed = pl.read_csv(
        header_line.encode(),
        has_header=False,
        infer_schema=False,
        empty_string_is_null=False,
        separator=separator,
    )
    names = [str(value) for value in parsed.row(0)]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise LandingFileError(f"{label}: header column {position} has no name")
        if name == ROW_NUMBER:
            raise LandingFileError(
                f"{label}: header column {position} uses the reserved name {ROW_NUMBER!r}"
            )
        if name in seen:
            raise LandingFileError(
                f"{label}: duplicate column name {name!r} in the header (columns {seen[name]} and {position})"
            )
        seen[name] = position
    return names


def _check_csv_lines(
    data: pl.DataFrame, expected: int, separator: str, lossy: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split lines into well-formed ones and the rest, with a reason for each of the rest.

    One anchored regex (a whole record of ``expected`` fields, each quoted per RFC 4180 or free
    of quotes and separators) settles almost every line in a single linear pass; the detailed,
    costlier diagnosis only runs on the few lines that fail it.
    """
    sep = _re(separator)
    field = f'(?:"(?:[^"]|"")*"|[^"{sep}]*)'
    record = f"^(?:{field}{sep}){{{expected - 1}}}{field}$"
    well_formed = pl.col("line").str.contains(record)
    if lossy:  # U+FFFD marks bytes the lossy decode replaced
        well_formed = well_formed & ~pl.col("line").str.contains("\ufffd", literal=True)
    data = data.with_columns(_in_parallel(data, well_formed.alias("_ok")))
    good = data.filter(pl.col("_ok")).drop("_ok")
    bad = (
        data.filter(~pl.col("_ok"))
        .drop("_ok")
        .with_columns(_csv_reason(expected, separator, lossy).fill_null("malformed CSV line"))
    )
    return good, bad


def _in_parallel(frame: pl.DataFrame, expr: pl.Expr) -> pl.Series:
    """Evaluate a string expression on slices at once: Polars runs one expression on one thread."""
    slices = min(pl.thread_pool_size(), frame.height // 100_000)
    if slices < 2:
        return frame.select(expr).to_series()
    size = -(-frame.height // slices)
    parts = pl.collect_all(
        [frame.slice(offset, size).lazy().select(expr) for offset in range(0, frame.height, size)]
    )
    return pl.concat(parts).to_series()


def _csv_reason(expected_fields: int | None, separator: str, lossy: bool) -> pl.Expr:
    """Why a line is malformed, in words; only run on the few lines that fail the record regex."""
    line = pl.col("line")
    reason = pl.when(pl.lit(False)).then(pl.lit(None, pl.String))
    if lossy:
        reason = reason.when(line.str.contains("\ufffd", literal=True)).then(
            pl.lit("invalid UTF-8")
        )
    # Each complete quoted field becomes one placeholder, so its separators and quotes vanish;
    # a quoted section must then be a whole field: separator (or line edge) on both sides.
    unquoted = line.str.replace_all(_QUOTED_FIELD, _PLACEHOLDER)
    sep = _re(separator)
    misplaced = unquoted.str.contains('"', literal=True) | unquoted.str.contains(
        f"[^{sep}]{_PLACEHOLDER}|{_PLACEHOLDER}[^{sep}]"
    )
    reason = reason.when(line.str.count_matches('"', literal=True) % 2 == 1).then(
        pl.lit("unbalanced double quote")
    )
    reason = reason.when(misplaced).then(
        pl.lit("stray double quote (quotes must enclose a whole field)")
    )
    if expected_fields is not None:
        fields = unquoted.str.count_matches(separator, literal=True) + 1
        reason = reason.when(fields != expected_fields).then(
            # Not pl.format: polars 2.1 panics on it over filtered string views.
            pl.lit(f"expected {expected_fields} fields (header), found ") + fields.cast(pl.String)
        )
    return reason.otherwise(pl.lit(None, pl.String)).alias("reason")


def _re(text: str) -> str:
    """Escape for the Rust regex engine, which accepts a backslash before any punctuation."""
    return "".join(
        f"\\{c}" if c.isascii() and not c.isalnum() and not c.isspace() else c for c in text
    )


def _parse_good_csv_lines(
    good: pl.DataFrame, names: list[str], separator: str, label: str
) -> pl.DataFrame:
    """Let Polars' CSV parser handle quoting on the lines that passed the structural checks."""
    if good.height == 0:
        return _empty_rows(names)
    buffer = io.BytesIO()
    good.select("line").write_csv(buffer, include_header=False, quote_style="never")
    rows = pl.read_csv(
        buffer.getvalue(),
        has_header=False,
        schema={name: pl.String for name in names},
        separator=separator,
        infer_schema=False,
        empty_string_is_null=False,
        quote_char='"',
        comment_prefix=None,
        null_values=None,
    )
    if rows.height != good.height:
        raise LandingFileError(
            f"{label}: the CSV parser found {rows.height} rows in {good.height} checked lines; "
            "the file has a structure the line checks do not cover (please report it)"
        )
    return rows.with_columns(good[ROW_NUMBER])


def parse_jsonl(source: Path | bytes, label: str | None = None) -> ParsedFile:
    """Parse JSON lines: one flat JSON object per line; values kept as their JSON text."""
    label = _label(source, label)
    lines, lossy = _read_lines(source, label)
    nonblank = _numbered(lines).filter(~pl.col("line").str.contains(r"^\s*$"))
    # Only a line that is a flat JSON object by the grammar goes to Polars' reader: it would
    # silently turn a nested value into text, and one malformed line fails its whole batch.
    # Everything else (nested, truncated, single-quoted, ...) takes the per-line path.
    flat = pl.col("line").str.contains(_FLAT_JSON_OBJECT)
    if lossy:
        flat = flat & ~pl.col("line").str.contains("\ufffd", literal=True)
    nonblank = nonblank.with_columns(_in_parallel(nonblank, flat.alias("_flat")))
    fast = _decode_json_lines(nonblank.filter(pl.col("_flat")), label)
    slow = _classify_json_lines(nonblank.filter(~pl.col("_flat")), label, lossy)
    rows = pl.concat([fast[0], slow[0]], how="diagonal").sort(ROW_NUMBER)
    quarantine = pl.concat([fast[1], slow[1]]).sort(ROW_NUMBER)
    return ParsedFile(rows.select(pl.exclude(ROW_NUMBER), ROW_NUMBER), quarantine, nonblank.height)


def _decode_json_lines(lines: pl.DataFrame, label: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fast path: Polars' NDJSON reader on the whole batch, each half on failure, lines as a
    last resort."""
    if lines.height == 0:
        return _empty_rows([]), _empty_quarantine()
    decoded = _try_read_ndjson(lines, label)
    if decoded is not None:
        return decoded, _empty_quarantine()
    if lines.height > _JSON_LINES_PER_LINE_PATH:
        half = lines.height // 2
        parts = [_decode_json_lines(lines.slice(0, half), label),
                 _decode_json_lines(lines.slice(half), label)]
        return (
            pl.concat([p[0] for p in parts], how="diagonal"),
            pl.concat([p[1] for p in parts]),
        )
    return _classify_json_lines(lines, label)


def _try_read_ndjson(lines: pl.DataFrame, label: str) -> pl.DataFrame | None:
    buffer = io.BytesIO()
    lines.select("line").write_csv(buffer, include_header=False, quote_style="never")
    data = buffer.getvalue()
    try:
        # First pass only learns the union of keys; the second reads every value as text, which
        # keeps numbers as written (1 stays "1" even when another record has 2.5).
        keys = pl.scan_ndjson(data, infer_schema_length=None).collect_schema().names()
        rows = pl.read_ndjson(data, schema={key: pl.String for key in keys})
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if rows.height != lines.height:  # e.g. two objects on one line
        return None
    if ROW_NUMBER in rows.columns:
        raise LandingFileError(f"{label}: records use the reserved field name {ROW_NUMBER!r}")
    return rows.with_columns(lines[ROW_NUMBER])


def _classify_json_lines(
    lines: pl.DataFrame, label: str, lossy: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Slow path, only for lines the fast path could not take: one json.loads per line."""
    if lines.height == 0:
        return _empty_rows([]), _empty_quarantine()
    reasons = [
        "invalid UTF-8" if lossy and "\ufffd" in line else _json_line_problem(line)
        for line in lines["line"].to_list()
    ]
    lines = lines.with_columns(reason=pl.Series(reasons, dtype=pl.String))
    good = lines.filter(pl.col("reason").is_null())
    bad = [_quarantine(lines.filter(pl.col("reason").is_not_null()))]
    rows = _try_read_ndjson(good, label) if good.height else _empty_rows([])
    if rows is None:
        # Python and Polars disagree on a line (e.g. a number too large for 64 bits): find it.
        parts = [_try_read_ndjson(good.slice(i, 1), label) for i in range(good.height)]
        rows = pl.concat([part for part in parts if part is not None], how="diagonal")
        failed = [i for i, part in enumerate(parts) if part is None]
        rejected = good[failed].with_columns(reason=pl.lit("JSON value the reader cannot decode"))
        bad.append(_quarantine(rejected))
    return rows, pl.concat(bad)


def _json_line_problem(line: str) -> str | None:
    try:
        record = json.loads(line, parse_constant=_reject_constant)
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(record, dict):
        return "not a JSON object"
    nested = [key for key, value in record.items() if isinstance(value, dict | list)]
    if nested:
        return f"nested value in field {nested[0]!r} (expected a flat object)"
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_parquet(source: Path | bytes, label: str | None = None) -> ParsedFile:
    """Parse Parquet from a path or from bytes: typed values become text, nothing is quarantined."""
    label = _label(source, label)
    try:
        opened = source if isinstance(source, Path) else io.BytesIO(source)
        records = pq.ParquetFile(opened).metadata.num_rows
        frame = pl.read_parquet(source, glob=False)  # a file name, never a pattern
    except Exception as exc:  # pyarrow and polars raise many types for a corrupt file
        raise LandingFileError(f"{label}: cannot read Parquet: {exc}") from exc
    if ROW_NUMBER in frame.columns:
        raise LandingFileError(f"{label}: column {ROW_NUMBER!r} is reserved")
    rows = frame.select([_as_text(name, dtype) for name, dtype in frame.schema.items()])
    rows = rows.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER))
    return ParsedFile(rows, _empty_quarantine(), records)


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """Typed Parquet values as the text a CSV export of them would hold (ISO-8601 for time)."""
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        offset = "%:z" if dtype.time_zone else ""
        return column.dt.to_string(f"%Y-%m-%dT%H:%M:%S%.f{offset}")
    if isinstance(dtype, pl.Struct | pl.List | pl.Array):
        # JSON for nested values: wrap so any nested type encodes, then unwrap the text.
        encoded = pl.struct(column.alias("v")).struct.json_encode()
        text = encoded.str.strip_prefix('{"v":').str.strip_suffix("}")
        return pl.when(column.is_null()).then(None).otherwise(text).alias(name)
    if isinstance(dtype, pl.Binary):
        return column.map_batches(_binary_as_text, return_dtype=pl.String)
    return column.cast(pl.String)


def _binary_as_text(series: pl.Series) -> pl.Series:
    try:
        return series.cast(pl.String)
    except pl.exceptions.PolarsError:  # not UTF-8: base64 keeps the bytes recoverable
        values = [None if v is None else base64.b64encode(v).decode() for v in series.to_list()]
        return pl.Series(series.name, values, dtype=pl.String)


def _quarantine(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col(ROW_NUMBER).cast(pl.Int64),
        pl.col("reason").cast(pl.String),
        pl.col("line").str.slice(0, RAW_LIMIT).alias("raw"),
    )


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def _empty_rows(names: list[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={**{name: pl.String for name in names}, ROW_NUMBER: pl.Int64})


# Each parser takes a path or the bytes, plus the label its errors start with.
_PARSERS: dict[str, Callable[[Path | bytes, str], ParsedFile]] = {
    ".csv": parse_csv,
    ".jsonl": parse_jsonl,
    ".ndjson": parse_jsonl,
    ".json": parse_jsonl,
    ".parquet": parse_parquet,
}
