"""Real-world export flaws, injected into records with their own keyed draws.

Dirt draws are keyed by (domain, kind, day, row key) (``keyed``), never by a row's position, so
turning dirt on or off never changes what the business did, only how it was exported; and one
customer's extra or missing rows never change the dirt on anyone else's. Every injected flaw is
counted, per domain, so bronze can reconcile what it ingested against what was sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from churn_assets.ingest.columns import COLUMNS, LATE_COLUMNS
from churn_assets.ingest.landing import DOMAIN_FORMATS
from churn_assets.simulator.config import DirtConfig
from churn_assets.simulator.keyed import Keyed
from churn_assets.simulator.records import KEY
from churn_assets.simulator.schema import (
    BAD_VALUES,
    NULL,
    SCHEMAS,
    Records,
    bad,
    concat,
    height,
    take,
    timestamps,
    tz,
)
from churn_assets.simulator.writer import BREAK_KINDS, TZ_OFFSETS

# Columns whose blanking breaks a record's identity; blanked at a tenth of the null rate.
KEYS = {
    "customers": ("customer_id",),
    "payments": ("transaction_id", "customer_id"),
    "events": ("event_id", "customer_id"),
    "tickets": ("ticket_id", "customer_id"),
    "marketing": ("interaction_id", "customer_id"),
}
_HIGH, _LOW_BITS = np.uint64(11), 11
_LOW_MASK, _TWO53 = np.uint64((1 << _LOW_BITS) - 1), 2.0**-53
# Marks the copies a duplicate inserts (1) beside the originals (0), so each has its own draws.
COPY = "#copy"


@dataclass
class Export:
    """One domain-day ready to write: the complete content, and a flawed first version (rows
    missing) when the day will be re-dropped on ``redrop_day``."""

    domain: str
    t: int
    columns: list[str]
    records: Records
    broken: list[tuple[int, Records]] = field(default_factory=list)
    flawed: Records | None = None
    redrop_day: int | None = None

    @property
    def rows(self) -> int:
        return height(self.records) + sum(height(r) for _, r in self.broken)


class Dirt:
    def __init__(self, config: DirtConfig, days: int, keyed: Keyed):
        self.config, self.days, self.keyed = config, days, keyed
        self.switch_day = config.switch_day(days)
        self.late: dict[tuple[str, int], list[Records]] = {}
        self.counts: dict[str, Counter] = {d: Counter() for d in COLUMNS}

    def columns(self, domain: str, t: int) -> list[str]:
        late = self.switch_day is not None and t >= self.switch_day
        return list(COLUMNS[domain]) + (list(LATE_COLUMNS.get(domain, ())) if late else [])

    def export(self, domain: str, t: int, records: Records) -> Export:
        """Make one domain-day's records as dirty as configured, and count what was done.

        Row moves (late, duplicated, broken) are worked out on indices and applied with
        ``take``; whether a row is hit is a keyed draw on the row's key.
        """
        count = self.counts[domain]
        count["records"] += height(records)
        rec = self._offsets(domain, t, records)
        rec, rows = self._late(domain, t, rec)
        rec = _take_rows(rec, rows)
        # Cells are spoiled before rows are copied, so a duplicate is an exact copy.
        rec = self._nulls(domain, t, rec)
        rec = self._bad_values(domain, t, rec)
        rec = self._duplicates(domain, t, rec)
        rows, broken = self._break_lines(domain, t, rec)
        rec = _take_rows(rec, rows)
        out = Export(domain, t, self.columns(domain, t), rec, broken)
        # The last day cannot be re-dropped "after later days were written".
        if t < self.days - 1 and self._day_draw(domain, "redrop", t) < self.config.redrop_rate:
            missing_share = 0.05 + 0.10 * self._day_draw(domain, "redrop.share", t)
            keep = self._row_draw(domain, "redrop.keep", t, rec) >= missing_share
            if not keep.all():  # a flawed drop lacks something; a tiny day may lack nothing
                out.flawed = take(rec, keep)
                out.redrop_day = t + 1 + int(3 * self._day_draw(domain, "redrop.day", t))
                count["redrops"] += 1
                count["redrop_missing_rows"] += int((~keep).sum())
        count["rows"] += out.rows
        return out

    def _day_draw(self, domain: str, kind: str, t: int) -> float:
        return self.keyed.scalar(f"dirt.{domain}.{kind}", t)

    def _row_draw(self, domain: str, kind: str, t: int, rec: Records) -> np.ndarray:
        """One uniform per row, keyed by the row's key (and whether it is a duplicate's copy)."""
        return self.keyed.uniform(f"dirt.{domain}.{kind}", t, rec[KEY], rec.get(COPY))

    def _hits(self, domain: str, kind: str, t: int, rec: Records, rate: float,
              choices: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Sorted indices of the rows a flaw with this rate hits, and for each a choice in
        ``0 .. choices - 1`` (what the flaw does), both from one draw per row: the choice from
        its low bits, which the hit (its high bits) says nothing about."""
        if rate <= 0.0 or height(rec) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        x = self.keyed.bits(f"dirt.{domain}.{kind}", t, rec[KEY], rec.get(COPY))
        hit = np.flatnonzero((x >> _HIGH) * _TWO53 < rate)
        low = (x[hit] & _LOW_MASK).astype(np.int64)
        return hit, (low * choices) >> _LOW_BITS

    def _offsets(self, domain: str, t: int, rec: Records) -> Records:
        if self.config.mixed_tz_rate <= 0.0:
            return rec
        rec, n = dict(rec), height(rec)
        for name in timestamps(domain):
            mixed, code = self._hits(domain, f"tz.{name}", t, rec, self.config.mixed_tz_rate,
                                     len(TZ_OFFSETS) - 1)
            codes = np.zeros(n, dtype=np.int64)
            codes[mixed] = 1 + code
            rec[tz(name)] = codes
            self.counts[domain]["mixed_tz"] += int((rec[name][mixed] != NULL).sum())
        return rec

    def _late(self, domain: str, t: int, rec: Records) -> tuple[Records, np.ndarray]:
        """Some records miss their day's drop and arrive 1-3 days later, with their own times."""
        n = height(rec)
        late, delay = (self._hits(domain, "late", t, rec, self.config.late_rate, 3)
                       if t < self.days - 1 else (np.empty(0, np.int64),) * 2)
        rows = np.arange(n)
        if late.size:
            target = np.minimum(t + 1 + delay, self.days - 1)
            for day in np.unique(target).tolist():
                self.late.setdefault((domain, day), []).append(take(rec, late[target == day]))
            rows = np.delete(rows, late)
            self.counts[domain]["late"] += int(late.size)
        arrivals = self.late.pop((domain, t), [])
        if arrivals:
            rec = concat([rec, *arrivals])
            rows = np.concatenate([rows, np.arange(n, height(rec))])
        return rec, rows

    def _duplicates(self, domain: str, t: int, rec: Records) -> Records:
        """Some rows are written twice: the copy right after its original, as when a record is
        sent again. Copies are marked in ``COPY``, so later dirt draws apart for them."""
        dup, _ = self._hits(domain, "duplicate", t, rec, self.config.duplicate_rate)
        rec = dict(rec)
        rec[COPY] = np.zeros(height(rec), dtype=np.int64)
        if dup.size == 0:
            return rec
        self.counts[domain]["duplicates"] += int(dup.size)
        rows = np.insert(np.arange(height(rec)), dup + 1, dup)
        out = take(rec, rows)
        out[COPY][dup + 1 + np.arange(dup.size)] = 1
        return out

    def _break_lines(self, domain: str, t: int, rec: Records):
        """Structurally broken lines (CSV and JSON only), kept aside and spliced back where the
        row was when written."""
        rows = np.arange(height(rec))
        if DOMAIN_FORMATS[domain] == "parquet":
            return rows, []
        hit, kind = self._hits(domain, "break", t, rec, self.config.malformed_rate / 2,
                               BREAK_KINDS * 60)
        if hit.size == 0:
            return rows, []
        broken = take(rec, hit)
        broken["#break"] = kind
        anchor = hit - np.arange(hit.size)  # row index among the rows that stay whole
        # Hits are sorted, so each anchor's broken rows are one contiguous run.
        starts = np.flatnonzero(np.diff(anchor, prepend=-1) != 0)
        ends = np.append(starts[1:], hit.size)
        spliced = [(int(anchor[a]), {k: v[a:b] for k, v in broken.items()})
                   for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        self.counts[domain]["malformed"] += int(hit.size)
        return np.delete(rows, hit), spliced

    def _nulls(self, domain: str, t: int, rec: Records) -> Records:
        rate, n = self.config.null_rate, height(rec)
        if rate <= 0.0 or n == 0:
            return rec
        out = dict(rec)
        names = list(SCHEMAS[domain])
        draws: list[np.ndarray] = []
        for first in range(0, len(names), 4):
            # Four columns per draw, one 16-bit lane each: rates resolve to 1/65536.
            draws += self.keyed.lanes(f"dirt.{domain}.null.{first}", t, rec[KEY], rec.get(COPY),
                                      count=min(4, len(names) - first))
        for name, u in zip(names, draws, strict=True):
            hit = np.flatnonzero(u < rate * (0.1 if name in KEYS[domain] else 1.0))
            if hit.size:
                self.counts[domain]["nulls"] += int((out[name][hit] != NULL).sum())
                out[name] = out[name].copy()  # columns may share one array (name, email, …)
                out[name][hit] = NULL
        return out

    def _bad_values(self, domain: str, t: int, rec: Records) -> Records:
        """Well-formed lines with a value silver must reject (``N/A`` amounts, bad dates…)."""
        structural = DOMAIN_FORMATS[domain] != "parquet"
        n = height(rec)
        options = list(BAD_VALUES[domain])
        hit, choice = self._hits(domain, "bad", t, rec,
                                 self.config.malformed_rate / (2 if structural else 1), 60 * len(options))
        if hit.size == 0:
            return rec
        out = dict(rec)
        column, value = choice % len(options), choice // len(options)
        for i, name in enumerate(options):
            rows = hit[column == i]
            if rows.size:
                codes = np.full(n, NULL)
                codes[rows] = value[column == i] % len(BAD_VALUES[domain][name])
                out[bad(name)] = codes
        self.counts[domain]["bad_values"] += int(hit.size)
        return out


def _take_rows(rec: Records, rows: np.ndarray) -> Records:
    unchanged = rows.size == height(rec) and bool(np.all(rows == np.arange(rows.size)))
    return rec if unchanged else take(rec, rows)
