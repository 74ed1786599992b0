"""Bring your own data: turn a CSV or Parquet export into landing drops the pipeline ingests.

The importer writes exactly what the simulator writes (same landing layout, canonical column
names, one drop per UTC day, the domain's format), so everything downstream is the same whether
the data is simulated or real. Values are mapped, not cleaned: silver still types and dedups.

* Transactions land in ``payments``: one drop per UTC day of the timestamp. Refunds follow the
  simulator's conventions (``transaction_type=refund``, negative amount, positive quantity).
* Customers land in ``customers`` as a snapshot: all customers in one drop on ``as_of`` when given,
  otherwise each on the day of their ``signup_at`` (or today when there is no signup date).
  Unmapped columns are kept as extra attribute columns.
* A business with transactions only: when the landing zone holds no customer export,
  ``import transactions`` derives the customer list from the transactions (signup = first
  purchase, status ``active``, no attributes) as ``derived-<source>.parquet`` customer drops and
  says so. A later ``import customers`` removes the customers it covers from those derived
  files (re-dropping their days), so the export's profile, not the derived one, is what silver
  and gold see.

Nothing is silently dropped: every record is written or listed, with its line and reason, in
``landing/_rejected/<source>-<domain>.csv``. Re-importing an unchanged file changes nothing: a day
whose file content is identical is not re-dropped, so the sensor does not ingest it again.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from churn_assets.ingest import import_values as V
from churn_assets.ingest.columns import COLUMNS
from churn_assets.ingest.import_values import ImportDataError, ImportMappingError, parse_mapping
from churn_assets.ingest.landing import DropError, find_drop, list_drops, write_drop
from churn_assets.ingest.readers import ROW_NUMBER, LandingFileError, parse_csv, read_landing_file
from churn_assets.settings import Paths, load_settings

IMPORT = "churn-assets import"

__all__ = [
    "ImportDataError",
    "ImportMappingError",
    "ImportReport",
    "import_customers",
    "import_transactions",
    "parse_mapping",
]


@dataclass(frozen=True)
class ImportReport:
    source: Path
    domain: str
    rows_read: int
    rows_written: int
    rows_rejected: int
    reject_file: Path | None
    days_written: tuple[date, ...]
    days_unchanged: tuple[date, ...]
    days_emptied: tuple[date, ...] = ()
    dropped_columns: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()
    timestamp_format: str | None = None
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def first_day(self) -> date | None:
        days = self.days_written + self.days_unchanged
        return min(days) if days else None

    @property
    def last_day(self) -> date | None:
        days = self.days_written + self.days_unchanged
        return max(days) if days else None

    def __str__(self) -> str:
        lines = [
            f"Imported {self.source.name} into {self.domain}: {self.rows_read:,} rows read, "
            f"{self.rows_written:,} written, {self.rows_rejected:,} rejected"
        ]
        if self.first_day:
            lines.append(
                f"  days {self.first_day} .. {self.last_day}: {len(self.days_written)} dropped, "
                f"{len(self.days_unchanged)} unchanged (not re-dropped)"
            )
        if self.days_emptied:
            shown = ", ".join(str(day) for day in self.days_emptied[:10])
            more = f" and {len(self.days_emptied) - 10} more" if len(self.days_emptied) > 10 else ""
            lines.append(
                f"  {len(self.days_emptied)} day(s) emptied: an earlier import of this file had "
                f"rows there, this one has none ({shown}{more})")
        for reason, count in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected {count:,}: {reason}")
        if self.reject_file:
            lines.append(f"  rejected rows with line numbers: {self.reject_file}")
        if self.timestamp_format:
            lines.append(f"  timestamps read as {self.timestamp_format!r}")
        if self.dropped_columns:
            lines.append(f"  unmapped columns not imported: {', '.join(self.dropped_columns)}")
        if self.extra_columns:
            lines.append(f"  extra columns kept as attributes: {', '.join(self.extra_columns)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def import_transactions(
    path: Path,
    mapping: dict[str, str],
    paths: Paths,
    timezone: str = "UTC",
    timestamp_format: str | None = None,
    delimiter: str | None = None,
    keep_duplicates: bool = False,
) -> ImportReport:
    """Import an export of orders/transactions into ``payments`` drops, one per UTC day."""
    path = Path(path)
    source = _read_source(path, delimiter)
    mapping, notes = V.resolve_mapping(mapping, "payments", source.rows.columns, path)
    stamps = V.parse_timestamps(source.rows, mapping["timestamp"], timezone, timestamp_format, path)
    checks = [V.customer_id_check(mapping["customer_id"]), *stamps.check("timestamp"),
              _plausible(stamps.values, "timestamp", mapping["timestamp"], paths)]
    if "amount" in mapping:
        factors = mapping["amount"].split("*")  # one column, or a product of two
    else:
        factors = [mapping["quantity"], mapping["unit_price"]]
    amount = pl.lit(1.0)
    for column in dict.fromkeys(factors + ([mapping["quantity"]] if "quantity" in mapping else [])):
        checks.append(V.number_check(column, "amount" if column in factors else "quantity"))
    for column in factors:
        amount = amount * V.number(column)
    checks.append(V.finite_check(pl.col("_amount"), "amount", mapping.get("amount") or "*".join(factors)))
    if "quantity" in mapping:
        checks.append(V.finite_check(V.number(mapping["quantity"]), "quantity", mapping["quantity"]))
    if not keep_duplicates:
        checks.append(V.duplicate_line_check(_data_columns(source.rows)))
    frame = source.rows.with_columns(_created=stamps.values, _amount=amount)
    frame = V.apply_checks(frame, checks, path)

    text = V.text_getter(mapping)
    quantity = V.number(mapping["quantity"]) if "quantity" in mapping else None
    generated_order = pl.format("{}-{}", pl.lit(_slug(path.stem)), pl.col(ROW_NUMBER))
    order_id = (
        text("order_id").fill_null(generated_order) if "order_id" in mapping else generated_order
    )
    frame = frame.with_columns(_order=order_id)
    # Online Retail style: a "C" before an invoice number marks a cancellation; so do negative
    # quantities or amounts. The refunded order is the number without "C" when this file has it.
    refund = pl.col("_order").str.contains(r"^[Cc]\d+$") | (pl.col("_amount") < 0)
    if quantity is not None:
        refund = refund | (quantity < 0)
    frame = frame.with_columns(_refund=refund.fill_null(False))
    accepted = frame.filter(pl.col("_reason").is_null())
    charged = accepted.filter(~pl.col("_refund"))["_order"].unique()
    original = pl.col("_order").str.replace(r"^[Cc](\d+)$", "$1")
    refund_of = pl.when(pl.col("_refund") & original.is_in(charged.implode())).then(original)
    # Deterministic ids: the order id plus the line's position within its order in the file
    # (counted over all lines, so fixing a rejected line later does not renumber the others).
    sequence = pl.int_range(1, pl.len() + 1).over("_order").cast(pl.String)
    transaction_id = pl.format("{}-{}", pl.col("_order"), sequence)
    if "transaction_id" in mapping:
        transaction_id = text("transaction_id").fill_null(transaction_id)
    is_refund = pl.col("_refund")
    frame = frame.with_columns(
        transaction_id=transaction_id,
        order_id=pl.col("_order"),
        customer_id=V.customer_id(mapping["customer_id"]),
        transaction_type=pl.when(is_refund).then(pl.lit("refund")).otherwise(pl.lit("charge")),
        status=text("status").fill_null(
            pl.when(is_refund).then(pl.lit("refunded")).otherwise(pl.lit("paid"))
        ),
        amount=V.money(
            pl.when(is_refund).then(-pl.col("_amount").abs()).otherwise(pl.col("_amount"))
        ),
        currency=text("currency"),
        quantity=V.integral_text(quantity.abs())
        if quantity is not None
        else pl.lit(None, pl.String),
        category=text("category"),
        payment_method=text("payment_method"),
        created_at=V.iso_utc(pl.col("_created")),
        refund_of_order_id=refund_of,
        _day=pl.col("_created").dt.date(),
    )
    if "status" not in mapping:
        notes.append("no status column mapped: charges are 'paid', refunds 'refunded'")
    used = {column for source_column in mapping.values() for column in source_column.split("*")}
    dropped = tuple(c for c in source.rows.columns if c not in used and c != ROW_NUMBER)
    report = _land(
        path,
        "payments",
        frame,
        source,
        paths,
        COLUMNS["payments"],
        stamps.format,
        [*notes, *stamps.notes],
        dropped=dropped,
    )
    derived = _derive_customers(path, frame.filter(pl.col("_reason").is_null()), paths)
    if derived:
        report = replace(report, notes=(*report.notes, derived))
    return report


DERIVED_PREFIX = "derived-"


def _derive_customers(path: Path, accepted: pl.DataFrame, paths: Paths) -> str | None:
    """Customer drops derived from transactions when there is no customer export: one profile
    per customer on the day of their first transaction (signup_at = updated_at = that moment,
    status ``active``). Silver requires every payment to name a known customer, and a
    transactions-only business has no other list of them."""
    drops = list_drops(paths.landing, "customers")
    if any(not name.startswith(DERIVED_PREFIX) for drop in drops for name in drop.files):
        return None
    first = (
        accepted.filter(pl.col("customer_id").is_not_null())
        .group_by("customer_id")
        .agg(_signup=pl.col("_created").min())
        .sort("customer_id")
    )
    if first.height == 0:
        return None
    signup = V.iso_utc(pl.col("_signup"))
    rows = first.with_columns(
        **{c: pl.lit(None, pl.String) for c in COLUMNS["customers"] if c != "customer_id"},
    ).with_columns(
        signup_at=signup, updated_at=signup, status=pl.lit("active"),
        _day=pl.col("_signup").dt.date(),
    )
    name = f"{DERIVED_PREFIX}{_slug(path.stem)}.parquet"
    for (day,), day_rows in sorted(rows.partition_by("_day", as_dict=True).items()):
        _replace_file(paths, "customers", day, name,
                      _serialize(day_rows.select(COLUMNS["customers"]), "customers"))
    return (f"no customer export in the landing zone: derived {first.height:,} customers from "
            f"their first transaction (signup = first purchase, status active) into "
            f"landing/customers/*/{name}; `import customers` later replaces their profiles")


def _replace_file(paths: Paths, domain: str, day: date, name: str, content: bytes) -> bool:
    """Put one file into a day's drop beside the files other sources dropped there (a new
    revision only when the content changed). Returns whether the drop changed."""
    existing = find_drop(paths.landing, domain, day)
    if existing and name in existing.files and (existing.path / name).read_bytes() == content:
        return False
    files = ({other: (existing.path / other).read_bytes() for other in existing.files}
             if existing else {})
    files[name] = content
    write_drop(paths.landing, domain, day, files)
    return True


def _retire_derived(paths: Paths, exported: pl.Series) -> int:
    """Remove the customers of a real export from the derived customer files: their export
    profile replaces the derived one. Returns how many derived profiles were removed."""
    removed = 0
    known = exported.drop_nulls().unique().implode()
    for drop in list_drops(paths.landing, "customers"):
        for name in drop.files:
            if not name.startswith(DERIVED_PREFIX):
                continue
            rows = pl.read_parquet(drop.path / name)
            kept = rows.filter(~pl.col("customer_id").is_in(known))
            if kept.height < rows.height:
                _replace_file(paths, "customers", drop.day, name, _serialize(kept, "customers"))
                removed += rows.height - kept.height
    return removed


def import_customers(
    path: Path,
    mapping: dict[str, str],
    paths: Paths,
    timezone: str = "UTC",
    timestamp_format: str | None = None,
    as_of: date | None = None,
    delimiter: str | None = None,
    keep_duplicates: bool = False,
) -> ImportReport:
    """Import a customer export into ``customers`` drops, keeping unmapped columns as attributes.

    With ``as_of`` every customer lands in one snapshot drop on that day (``updated_at`` is its
    midnight UTC): use it for a current-state export. Without it each customer lands on the day
    of their ``signup_at`` (``updated_at = signup_at``), or today when ``signup_at`` is not mapped.
    """
    path = Path(path)
    source = _read_source(path, delimiter)
    mapping, notes = V.resolve_mapping(mapping, "customers", source.rows.columns, path)
    rows = source.rows
    used = set(mapping.values())
    extras = tuple(c for c in rows.columns if c not in used and c != ROW_NUMBER)
    _check_clashes(path, extras)
    checks = [V.customer_id_check(mapping["customer_id"])]
    if not keep_duplicates:
        checks.append(V.duplicate_line_check(_data_columns(rows)))
    columns: dict[str, pl.Expr] = {}
    fmt = None
    for target in ("signup_at", "cancelled_at"):
        if target in mapping:
            optional = target == "cancelled_at"  # most customers have not cancelled
            stamps = V.parse_timestamps(
                rows, mapping[target], timezone, timestamp_format, path, optional=optional
            )
            checks.extend(stamps.check(target, optional=optional))
            checks.append(_plausible(stamps.values, target, mapping[target], paths))
            columns[target] = stamps.values
            fmt = fmt or stamps.format
            notes.extend(stamps.notes)
    frame = V.apply_checks(
        rows.with_columns(**{f"_{k}": v for k, v in columns.items()}), checks, path
    )
    if as_of is None and "signup_at" not in mapping:
        as_of = datetime.now(UTC).date()
        notes.append(
            f"no signup_at mapped and no as_of given: one snapshot drop for today ({as_of})"
        )
    if as_of is not None:
        snapshot = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
        updated = pl.lit(snapshot, pl.Datetime("us", "UTC"))
    else:
        updated = pl.col("_signup_at")
    text = V.text_getter(mapping)
    canonical = {
        target: (V.iso_utc(pl.col(f"_{target}")) if target in columns else text(target))
        for target in COLUMNS["customers"]
    }
    canonical["customer_id"] = V.customer_id(mapping["customer_id"])
    canonical["updated_at"] = V.iso_utc(updated)
    if "status" not in mapping:
        # Silver requires a status: a customer with a cancellation date has cancelled.
        cancelled = (pl.col("_cancelled_at").is_not_null() if "cancelled_at" in columns
                     else pl.lit(False))
        canonical["status"] = pl.when(cancelled).then(pl.lit("cancelled")).otherwise(
            pl.lit("active"))
        notes.append("no status column mapped: customers are 'active', or 'cancelled' when they "
                     "have a cancelled_at")
    frame = frame.sort(ROW_NUMBER).with_columns(**canonical, _day=updated.dt.date())
    report = _land(
        path,
        "customers",
        frame,
        source,
        paths,
        COLUMNS["customers"] + extras,
        fmt,
        notes,
        extras=extras,
    )
    retired = _retire_derived(paths, frame.filter(pl.col("_reason").is_null())["customer_id"])
    if retired:
        report = replace(report, notes=(*report.notes, (
            f"replaced {retired:,} customer profiles derived from transactions with this "
            "export's (their days were re-dropped; run the graph again to ingest them)")))
    return report


@dataclass(frozen=True)
class _Source:
    rows: pl.DataFrame
    quarantine: pl.DataFrame
    records: int
    notes: tuple[str, ...]


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _read_source(path: Path, delimiter: str | None = None) -> _Source:
    suffix = path.suffix.lower()
    notes: list[str] = []
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            data = path.read_bytes()
            if not data.strip(b"\r\n\t \xef\xbb\xbf"):
                raise ImportDataError(f"{path}: the file is empty: nothing to import")
            data = _as_utf8(path, data, notes)
            separator = _separator(path, data, delimiter, notes)
            parsed = parse_csv(data, label=str(path), separator=separator)
        elif suffix == ".parquet":
            parsed = read_landing_file(path)
        else:
            raise ImportDataError(
                f"{path}: cannot import {suffix or 'a file without suffix'!r} files; export CSV or Parquet"
            )
    except OSError as exc:
        raise ImportDataError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except LandingFileError as exc:
        raise ImportDataError(str(exc)) from exc
    if parsed.records_in_file == 0:
        raise ImportDataError(
            f"{path}: the file has a header ({', '.join(V._visible(parsed.rows.columns))}) but no "
            "rows: nothing to import")
    return _Source(parsed.rows, parsed.quarantine, parsed.records_in_file, tuple(notes))


def _as_utf8(path: Path, data: bytes, notes: list[str]) -> bytes:
    """The file as UTF-8: decided for the whole file, never line by line.

    A file that is valid UTF-8 is read as such. A file without a single valid multi-byte UTF-8
    character is a legacy export (Windows-1252) and is converted whole, with a note. A file with
    both is two encodings mixed (a UTF-8 export edited in a legacy tool): guessing would garble
    one half, so the import stops naming the first line that is not UTF-8.
    """
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError as error:
        bad_at = error.start
    text = data.decode("utf-8", errors="replace")
    if any(ord(ch) > 0x7F and ch != "\ufffd" for ch in text):
        line_number = data.count(b"\n", 0, bad_at) + 1
        start = data.rfind(b"\n", 0, bad_at) + 1
        end = data.find(b"\n", bad_at)
        line = data[start: end if end >= 0 else len(data)].decode("utf-8", errors="replace")
        raise ImportDataError(
            f"{path}: the file mixes encodings: it is UTF-8 but line {line_number} is not "
            f"({V.cut(line)}); save the whole file as UTF-8 and import again")
    notes.append("the file is not UTF-8; it was read as Windows-1252")
    return data.decode("cp1252", errors="replace").encode("utf-8")


def _separator(path: Path, data: bytes, delimiter: str | None, notes: list[str]) -> str:
    """``--delimiter`` when given (``tab`` or ``\\t`` for a tab), else the most frequent of
    ``, ; tab |`` in the header line outside quotes (a comma when none occurs)."""
    if delimiter is not None:
        named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
        separator = named.get(delimiter.lower(), delimiter)
        if len(separator) != 1 or separator in "\"\r\n":
            raise ImportMappingError(
                f"--delimiter {delimiter!r} must be one character (or 'tab'), not a quote")
        return separator
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {sep: unquoted.count(sep) for sep in DELIMITERS}
    separator = max(counts, key=lambda sep: (counts[sep], sep == ","))
    if counts[separator] == 0:
        return ","
    if separator != ",":
        notes.append(f"columns are separated by {DELIMITERS[separator]}s (detected from the "
                     "header; --delimiter overrides)")
    return separator


def _data_columns(rows: pl.DataFrame) -> list[str]:
    return [column for column in rows.columns if column != ROW_NUMBER]


def _check_clashes(path: Path, extras: tuple[str, ...]) -> None:
    """Extra columns must not collide with the canonical ones or each other, ignoring case:
    Delta and Spark treat ``Email`` and ``email`` as one column."""
    canonical = {column.lower(): column for column in COLUMNS["customers"]}
    seen: dict[str, str] = {}
    for column in extras:
        key = column.strip().lower()
        if key in canonical:
            raise ImportMappingError(
                f"{path.name}: the unmapped column {column!r} clashes with the column "
                f"{canonical[key]!r} the import writes (column names are compared ignoring "
                "case); map it, or rename or drop it in the export")
        if key in seen:
            raise ImportMappingError(
                f"{path.name}: columns {seen[key]!r} and {column!r} differ only in case; "
                "rename one in the export")
        seen[key] = column


def _plausible(moment: pl.Expr, target: str, column: str, paths: Paths) -> V.Check:
    limits = load_settings(paths).imports
    latest = datetime.now(UTC).date() + timedelta(days=limits.max_days_after_today)
    return V.plausible_day_check(moment, target, column, limits.earliest, latest)


def _land(
    path: Path,
    domain: str,
    frame: pl.DataFrame,
    source: _Source,
    paths: Paths,
    columns: tuple[str, ...],
    timestamp_format: str | None,
    notes: list[str],
    dropped: tuple[str, ...] = (),
    extras: tuple[str, ...] = (),
) -> ImportReport:
    """Check the days against the partitions, write one drop per day, write the reject file."""
    accepted = frame.filter(pl.col("_reason").is_null())
    explicit_start = load_settings(paths).partitions.start
    if explicit_start is not None:  # unset, the partitions follow the data
        V.check_partition_start(accepted, explicit_start, paths.settings_file, path)
    name = f"{_slug(path.stem)}.{'csv' if domain == 'payments' else 'parquet'}"
    written, unchanged, emptied = [], [], []
    by_day = dict(sorted(accepted.partition_by("_day", as_dict=True).items()))
    # A re-import replaces everything this source imported before: a day that held its file
    # and has no rows in it any more loses the file (and is emptied when nothing else is left).
    previous = [d for d in list_drops(paths.landing, domain) if name in d.files]
    for drop in previous:
        if (drop.day,) in by_day:
            continue
        files = {other: (drop.path / other).read_bytes() for other in drop.files if other != name}
        write_drop(paths.landing, domain, drop.day, files, source_shrank=True, source=IMPORT)
        emptied.append(drop.day)
    for (day,), day_rows in by_day.items():
        content = _serialize(day_rows.select(columns), domain)
        try:
            existing = find_drop(paths.landing, domain, day)
        except DropError:
            existing = None  # a broken drop is replaced
        if existing and name in existing.files and (existing.path / name).read_bytes() == content:
            unchanged.append(day)
            continue
        # Keep files other sources dropped for the same day; replace only this source's file.
        files = (
            {other: (existing.path / other).read_bytes() for other in existing.files}
            if existing
            else {}
        )
        shrank = bool(existing and name in existing.files
                      and _records(existing.path / name) > day_rows.height)
        files[name] = content
        write_drop(paths.landing, domain, day, files, source_shrank=shrank, source=IMPORT)
        written.append(day)
    reject_file = paths.landing / "_rejected" / f"{_slug(path.stem)}-{domain}.csv"
    all_rejects = pl.concat([V.quarantine_rejects(source.quarantine), V.rejects(frame)]).sort(
        "line"
    )
    if all_rejects.height:
        reject_file.parent.mkdir(parents=True, exist_ok=True)
        all_rejects.write_csv(reject_file)
    else:
        reject_file.unlink(missing_ok=True)  # a stale list from an earlier import would mislead
    assert accepted.height + all_rejects.height == source.records, "every record is accounted for"
    return ImportReport(
        source=path,
        domain=domain,
        rows_read=source.records,
        rows_written=accepted.height,
        rows_rejected=all_rejects.height,
        reject_file=reject_file if all_rejects.height else None,
        days_written=tuple(written),
        days_unchanged=tuple(unchanged),
        days_emptied=tuple(emptied),
        dropped_columns=dropped,
        extra_columns=extras,
        timestamp_format=timestamp_format,
        rejected_by_reason=dict(all_rejects.group_by("reason").len().iter_rows()),
        notes=tuple(notes) + source.notes,
    )


def _records(path: Path) -> int:
    """Records in a file this importer wrote earlier (so a smaller re-import says it shrank)."""
    try:
        return read_landing_file(path).records_in_file
    except (LandingFileError, OSError):
        return 0


def _serialize(frame: pl.DataFrame, domain: str) -> bytes:
    buffer = io.BytesIO()
    if domain == "payments":
        frame.write_csv(buffer)
    else:
        frame.write_parquet(buffer, statistics=False)
    return buffer.getvalue()


def _slug(text: str) -> str:
    """A drop-safe file name: no separators, not hidden, not starting with '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_") or "import"
