"""Records to bytes: each domain's native format, with text made column by column.

All of a file's columns are rendered in one polars ``select`` (columns run in parallel), from
lookup tables gathered by index: one string per vocabulary word, per customer, per second of
the day and UTC offset. JSON lines go through the CSV writer from per-column fragments
(``"page":"home"``) joined by commas: several times faster than serializing row objects, and
byte-identical run after run.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache

import numpy as np
import polars as pl

from churn_assets.ingest.landing import DOMAIN_FORMATS
from churn_assets.simulator import vocab as V
from churn_assets.simulator.schema import (
    BAD_VALUES,
    COMMA_DECIMAL,
    NULL,
    SCHEMAS,
    Field,
    Records,
    bad,
    concat,
    tz,
)

# Offsets a source system might write, in minutes east of UTC. Code 0 is UTC written as "Z".
TZ_OFFSETS = np.array([0, 60, 120, -300, -480, 330, -240, 540, 0])
TZ_SUFFIXES = ("Z", "+01:00", "+02:00", "-05:00", "-08:00", "+05:30", "-04:00", "+09:00", "+00:00")
BREAK_KINDS = 3
# Files above BLOCK_ROWS rows are rendered in blocks on PARALLEL threads (two cores here), and
# no block exceeds MAX_BLOCK_ROWS, so the text of a huge day is never all in memory at once.
BLOCK_ROWS, MAX_BLOCK_ROWS, PARALLEL = 25_000, 500_000, 2
SMALL_INTS = 1000
_DECIMALS = pl.Series([f".{c:02d}" for c in range(100)])


@cache
def _clock(tail: str) -> pl.Series:
    """``HH:MM:SS`` + offset suffix + ``tail`` for every (second of day, offset code)."""
    tod = pl.Series([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)])
    code = np.arange(86400 * len(TZ_SUFFIXES))
    suffix = pl.Series([s + tail for s in TZ_SUFFIXES])
    return pl.select(pl.concat_str([tod.gather(code // len(TZ_SUFFIXES)), suffix.gather(code % len(TZ_SUFFIXES))])).to_series()


def _lower(names: tuple[str, ...]) -> tuple[str, ...]:
    table = str.maketrans({"ü": "ue", "ö": "oe", "ä": "ae", " ": ""})
    return tuple(n.translate(table).lower() for n in names)


def _null_where(values: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    """A polars column of ``values`` with nulls where ``missing`` (default: where NULL)."""
    missing = values == NULL if missing is None else missing
    series = pl.Series(np.where(missing, 0, values))
    return series.set(pl.Series(missing), None) if missing.any() else series


class Renderer:
    """Makes the text of records. Reads only customer traits that never change (names, phone,
    region), so it can run in the writer thread while the business moves on."""

    def __init__(self, customers: int, start_epoch: int, traits: dict[str, np.ndarray]):
        self.customers, self.start_epoch, self.traits = customers, start_epoch, traits
        digits = pl.Series(np.arange(customers)).cast(pl.String).str.zfill(8)
        self.customer_ids = "C" + digits
        self._fragments: dict[str, pl.Series] = {}
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="sim-render")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _customer_table(self, head: str, tail: str, null: str | None) -> pl.Series:
        """Customer ids (or their JSON fragments), with ``null`` appended at index ``customers``."""
        key = head + "|" + tail
        if key not in self._fragments:
            body = head + self.customer_ids + tail if head or tail else self.customer_ids
            self._fragments[key] = pl.concat([body, pl.Series([null], dtype=pl.String)])
        return self._fragments[key]

    def frame(self, domain: str, rec: Records, columns: list[str], json_mode: bool = False) -> pl.DataFrame:
        """Text columns (nulls as nulls), or JSON fragments that are never null."""
        schema, inputs, exprs = SCHEMAS[domain], {}, []
        for i, name in enumerate(columns):
            lead = ("{" if i == 0 else "") if json_mode else None
            exprs.append(self._expr(name, schema[name], rec, inputs, lead).alias(name))
        raw = pl.DataFrame(inputs, height=len(rec[columns[0]]))
        out = raw.select(exprs)
        fixes = [self._bad_values(domain, n, rec[bad(n)], out[n], ("{" if i == 0 else "") if json_mode else None)
                 for i, n in enumerate(columns) if bad(n) in rec]
        return out.with_columns(fixes) if fixes else out

    def _expr(self, name: str, f: Field, rec: Records, inputs: dict, lead: str | None) -> pl.Expr:
        v = rec[name]
        head = "" if lead is None else f'{lead}"{name}":"'
        tail = "" if lead is None else '"'
        null = None if lead is None else f'{lead}"{name}":null'
        if f.kind == "vocab":
            inputs[name] = np.where(v == NULL, len(f.words), v)
            table = pl.Series([head + w + tail for w in f.words] + [null], dtype=pl.String)
            return pl.lit(table).gather(pl.col(name))
        if f.kind == "customer":
            inputs[name] = np.where(v == NULL, self.customers, v)
            return pl.lit(self._customer_table(head, tail, null)).gather(pl.col(name))
        if f.kind == "ts":
            return self._stamp(name, v, rec.get(tz(name)), inputs, head, tail, null)
        if f.kind in ("id", "int"):
            return self._number(name, v, inputs, head + f.prefix, tail, null)
        if f.kind == "money":
            text = self._money(name, v, inputs)
        elif f.kind == "offer":
            # Codes are stem * 100 + pct: a table of all of them beats building each string.
            table = [V.OFFER_STEMS[c // 100] + str(c % 100) for c in range(100 * len(V.OFFER_STEMS))]
            inputs[name] = np.where(v == NULL, len(table), v)
            text = pl.lit(pl.Series(table + [None], dtype=pl.String)).gather(pl.col(name))
        else:
            inputs[name] = self._text(f, v, rec)
            text = pl.col(name)
        if lead is None:
            return text
        return pl.concat_str([pl.lit(head), text, pl.lit(tail)]).fill_null(null)

    def _number(self, name: str, v: np.ndarray, inputs: dict, head: str, tail: str, null) -> pl.Expr:
        """``head`` + the number + ``tail``. Runs of one value (a session's events) are rendered
        once and gathered, which is much cheaper than formatting every row."""
        def text(values: pl.Expr | pl.Series) -> pl.Expr:
            out = pl.concat_str([pl.lit(head), values.cast(pl.String), pl.lit(tail)])
            return out if null is None else out.fill_null(null)

        known = v[v != NULL]
        if known.size and known.min() >= 0 and known.max() < SMALL_INTS:
            # Quantities, CSAT, discounts: a lookup table of every value is cheapest.
            table = [head + str(i) + tail for i in range(int(known.max()) + 1)] + [null]
            inputs[name] = np.where(v == NULL, len(table) - 1, v)
            return pl.lit(pl.Series(table, dtype=pl.String)).gather(pl.col(name))
        new_run = np.diff(v, prepend=v[:1] - 1) != 0
        runs = int(new_run.sum())
        if runs > v.size // 3:
            inputs[name] = _null_where(v)
            return text(pl.col(name))
        table = pl.select(text(pl.lit(_null_where(v[new_run])))).to_series()
        inputs[name] = np.cumsum(new_run) - 1
        return pl.lit(table).gather(pl.col(name))

    def _money(self, name: str, cents: np.ndarray, inputs: dict) -> pl.Expr:
        """``-12.50`` from -1250 cents: sign and decimals from small tables, so one concat."""
        missing = cents == NULL
        cents = np.where(missing, 0, cents)
        inputs[name] = _null_where(np.abs(cents) // 100, missing)
        inputs[name + "#neg"] = (cents < 0).astype(np.int64)
        inputs[name + "#cents"] = np.abs(cents) % 100
        return pl.concat_str([
            pl.lit(pl.Series(["", "-"])).gather(pl.col(name + "#neg")),
            pl.col(name).cast(pl.String),
            pl.lit(_DECIMALS).gather(pl.col(name + "#cents")),
        ])

    def _stamp(self, name, epoch, tz_code, inputs: dict, head: str, tail: str, null) -> pl.Expr:
        """ISO-8601 text: ``…Z``, or local time with its offset (the same instant)."""
        missing = epoch == NULL
        if tz_code is None:
            tz_code = np.zeros(epoch.size, dtype=np.int64)
        local = np.where(missing, self.start_epoch, epoch) + TZ_OFFSETS[tz_code] * 60
        day = local // 86400
        first = int(day.min()) if day.size else 0
        # One date string per distinct day: a few, or ~1000 for signups in the initial export.
        dates = [head + _date_prefix(d) for d in range(first, int(day.max(initial=first)) + 1)]
        inputs[name + "#day"] = day - first
        inputs[name + "#clock"] = (local % 86400) * len(TZ_SUFFIXES) + tz_code
        text = pl.concat_str([
            pl.lit(pl.Series(dates, dtype=pl.String)).gather(pl.col(name + "#day")),
            pl.lit(_clock(tail)).gather(pl.col(name + "#clock")),
        ])
        if not missing.any():
            return text
        inputs[name + "#null"] = missing
        return pl.when(pl.col(name + "#null")).then(pl.lit(null, dtype=pl.String)).otherwise(text)

    def _text(self, f: Field, v: np.ndarray, rec: Records) -> pl.Series:
        nulls = pl.Series(v == NULL)
        safe = np.where(v == NULL, 0, v)
        text = self._campaigns(safe) if f.kind == "campaign" else self._person(f.kind, safe, rec)
        return text.set(nulls, None)

    def _person(self, kind: str, idx: np.ndarray, rec: Records) -> pl.Series:
        first, last = self.traits["first_name"][idx], self.traits["last_name"][idx]
        if kind == "name":
            return pl.Series(V.FIRST_NAMES).gather(first) + " " + pl.Series(V.LAST_NAMES).gather(last)
        if kind == "email":
            # A changed email gets a ".<version>" suffix and a new domain; version 0 has none.
            version = pl.Series(rec["email_version"])
            suffix = pl.when(version > 0).then("." + version.cast(pl.String)).otherwise(pl.lit(""))
            return pl.select(pl.concat_str([
                pl.Series(_lower(V.FIRST_NAMES)).gather(first), pl.lit("."),
                pl.Series(_lower(V.LAST_NAMES)).gather(last), pl.Series(idx).cast(pl.String),
                suffix, pl.lit("@"), pl.Series(V.EMAIL_DOMAINS).gather(rec["email_domain"]),
            ])).to_series()
        region = self.traits["region"][idx]
        width = np.array([w for _, w in V.REGION_PHONE])[region]
        number = pl.Series(self.traits["phone_number"][idx] % 10**width).cast(pl.String)
        return pl.select(pl.concat_str([
            pl.Series([p for p, _ in V.REGION_PHONE]).gather(region),
            number.str.zfill(pl.lit(pl.Series(width))),
        ])).to_series()

    def _campaigns(self, codes: np.ndarray) -> pl.Series:
        """``CMP-20260103-1`` for campaign code ``day * 10 + k``; negative codes are retention."""
        uniq, inverse = np.unique(codes, return_inverse=True)
        names = [
            V.RETENTION_CAMPAIGNS[-1 - c] if c < 0
            else f"CMP-{datetime.fromtimestamp(self.start_epoch + 86400 * (c // 10), UTC):%Y%m%d}-{c % 10}"
            for c in uniq.tolist()
        ]
        return pl.Series(names, dtype=pl.String).gather(inverse.ravel())

    def _bad_values(self, domain: str, name: str, codes: np.ndarray, out: pl.Series, lead) -> pl.Series:
        rows = np.flatnonzero(codes != NULL)
        if rows.size == 0:
            return out
        picked = pl.Series(BAD_VALUES[domain][name], dtype=pl.String).gather(codes[rows])
        current = out.gather(rows)
        if lead is not None:
            # JSON fragments: recover the value between the key and the closing quote.
            current = current.str.replace(r'^[^:]*:"?', "").str.replace(r'"$', "")
        comma = current.str.replace(".", ",", literal=True)
        value = pl.select(pl.when(picked == COMMA_DECIMAL).then(comma).otherwise(picked)).to_series()
        if lead is not None:
            # Bad words hold no quote or backslash, so quoting them is enough for valid JSON.
            value = f'{lead}"{name}":"' + value + '"'
        return out.scatter(rows, value)

    def file(self, domain: str, rec: Records, columns: list[str], broken: list[tuple[int, Records]]) -> bytes:
        """The bytes of one drop file. ``broken`` holds (row position, records) pairs: those
        records are written as broken lines just before that row of ``rec``. Big files are
        rendered in row blocks on two threads (polars releases the GIL), then joined."""
        fmt = DOMAIN_FORMATS[domain]
        if fmt == "parquet":
            buf = io.BytesIO()
            self.frame(domain, rec, columns).write_parquet(buf, compression="zstd", statistics=False)
            return buf.getvalue()
        n = len(rec[columns[0]])
        # Enough blocks to keep both cores busy, small enough to bound a huge day's memory.
        count = max(min(PARALLEL, n // BLOCK_ROWS), -(-n // MAX_BLOCK_ROWS), 1)
        bounds = np.linspace(0, n, count + 1).astype(int)
        blocks = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            last = hi == n
            mine = [(p - lo, r) for p, r in broken if lo <= p < hi or (last and p == n)]
            blocks.append(({k: v[lo:hi] for k, v in rec.items()}, mine))
        header = [(",".join(columns) + "\n").encode()] if fmt == "csv" else []
        if len(blocks) == 1:
            return b"".join(header + [self._block(domain, fmt, *blocks[0], columns)])
        rendered = self._pool.map(lambda block: self._block(domain, fmt, *block, columns), blocks)
        return b"".join(header + list(rendered))

    def _block(self, domain, fmt, rec: Records, broken: list[tuple[int, Records]], columns) -> bytes:
        frame = self.frame(domain, rec, columns, json_mode=fmt == "jsonl")
        lines = self.broken_lines(domain, fmt, concat([r for _, r in broken]), columns)
        parts, cut, used = [], 0, 0
        for position, rows in broken:
            count = len(rows[columns[0]])
            parts += [_lines(fmt, frame.slice(cut, position - cut)),
                      (lines.slice(used, count) + "\n").str.join("").item().encode()]
            cut, used = position, used + count
        parts.append(_lines(fmt, frame.slice(cut)))
        return b"".join(parts)

    def broken_lines(self, domain: str, fmt: str, rec: Records, columns: list[str]) -> pl.Series:
        """Structurally broken lines. CSV: a field missing, an extra field, an unbalanced quote.
        JSON: truncated, single-quoted (not JSON), or without its opening brace."""
        if not rec:
            return pl.Series([], dtype=pl.String)
        kind = pl.Series(rec["#break"] % BREAK_KINDS)
        frame = self.frame(domain, rec, columns, json_mode=fmt == "jsonl")
        if fmt == "csv":
            line = pl.concat_str([pl.col(c).fill_null("") for c in columns], separator=",")
            broken = (
                pl.when(kind == 0).then(line.str.replace(r",[^,]*$", ""))
                .when(kind == 1).then(line + ",EXTRA")
                .otherwise(line.str.replace(",", ',"', literal=True))
            )
        else:
            line = pl.concat_str(pl.all(), separator=",") + "}"
            cut = line.str.len_chars() * pl.Series(rec["#break"] // BREAK_KINDS % 60 + 20) // 100
            broken = (
                pl.when(kind == 0).then(line.str.slice(0, cut))
                .when(kind == 1).then(line.str.replace_all('"', "'", literal=True))
                .otherwise(line.str.slice(1))
            )
        return frame.select(broken.alias("line")).to_series()


def _date_prefix(day: int) -> str:
    return datetime.fromtimestamp(86400 * day, UTC).strftime("%Y-%m-%dT")


def _lines(fmt: str, frame: pl.DataFrame) -> bytes:
    if frame.height == 0:
        return b""
    buf = io.BytesIO()
    if fmt == "csv":
        frame.write_csv(buf, include_header=False, quote_style="necessary")
    else:
        frame.write_csv(buf, include_header=False, quote_style="never", line_terminator="}\n")
    return buf.getvalue()
