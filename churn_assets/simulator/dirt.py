"""Real-world export flaws, injected into records with their own random generator.

The dirt generator is separate from the business's, so turning dirt on or off never changes
what the business did, only how it was exported. Every injected flaw is counted, per domain, so
bronze can reconcile what it ingested against what was sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from churn_assets.ingest.columns import COLUMNS, LATE_COLUMNS
from churn_assets.ingest.landing import DOMAIN_FORMATS
from churn_assets.simulator.config import DirtConfig
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
# Broken lines are spliced back at a few points of a file, as a burst of corruption would be.
SPLICE_POINTS = 16


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
    def __init__(self, config: DirtConfig, days: int, rng: np.random.Generator):
        self.config, self.days, self.rng = config, days, rng
        self.switch_day = config.switch_day(days)
        self.late: dict[tuple[str, int], list[Records]] = {}
        self.counts: dict[str, Counter] = {d: Counter() for d in COLUMNS}

    def columns(self, domain: str, t: int) -> list[str]:
        late = self.switch_day is not None and t >= self.switch_day
        return list(COLUMNS[domain]) + (list(LATE_COLUMNS.get(domain, ())) if late else [])

    def export(self, domain: str, t: int, records: Records) -> Export:
        """Make one domain-day's records as dirty as configured, and count what was done.

        Row moves (late, duplicated, broken) are worked out on indices and applied with
        ``take``. Dirt is sparse, so the indices of hit rows are drawn directly rather than a
        coin flip per row.
        """
        count = self.counts[domain]
        count["records"] += height(records)
        rec = self._offsets(domain, records)
        rec, rows = self._late(domain, t, rec)
        rec = _take_rows(rec, rows)
        # Cells are spoiled before rows are copied, so a duplicate is an exact copy.
        rec = self._nulls(domain, rec)
        rec = self._bad_values(domain, rec)
        rows = self._duplicates(domain, np.arange(height(rec)))
        rows, broken = self._break_lines(domain, rec, rows)
        rec = _take_rows(rec, rows)
        out = Export(domain, t, self.columns(domain, t), rec, broken)
        n = height(rec)
        # The last day cannot be re-dropped "after later days were written".
        if n >= 10 and t < self.days - 1 and self._pick(1, self.config.redrop_rate).size:
            keep = self.rng.random(n) >= self.rng.uniform(0.05, 0.15)
            keep[self.rng.integers(0, n)] = False  # a flawed drop always lacks something
            out.flawed, out.redrop_day = take(rec, keep), t + int(self.rng.integers(1, 4))
            count["redrops"] += 1
            count["redrop_missing_rows"] += int((~keep).sum())
        count["rows"] += out.rows
        return out

    def _pick(self, size: int, rate: float) -> np.ndarray:
        """Sorted indices of the rows (out of ``size``) a flaw with this rate hits."""
        if rate <= 0.0 or size == 0:
            return np.empty(0, dtype=np.int64)
        if rate > 0.05:
            return np.flatnonzero(self.rng.random(size) < rate)
        hits = int(self.rng.binomial(size, rate))
        return np.sort(self.rng.choice(size, hits, replace=False))

    def _offsets(self, domain: str, rec: Records) -> Records:
        if self.config.mixed_tz_rate <= 0.0:
            return rec
        rec, n = dict(rec), height(rec)
        for name in timestamps(domain):
            mixed = self._pick(n, self.config.mixed_tz_rate)
            codes = np.zeros(n, dtype=np.int64)
            codes[mixed] = self.rng.integers(1, len(TZ_OFFSETS), mixed.size)
            rec[tz(name)] = codes
            self.counts[domain]["mixed_tz"] += int((rec[name][mixed] != NULL).sum())
        return rec

    def _late(self, domain: str, t: int, rec: Records) -> tuple[Records, np.ndarray]:
        """Some records miss their day's drop and arrive 1-3 days later, with their own times."""
        n = height(rec)
        late = self._pick(n, self.config.late_rate) if t < self.days - 1 else np.empty(0, np.int64)
        rows = np.arange(n)
        if late.size:
            target = np.minimum(t + self.rng.integers(1, 4, late.size), self.days - 1)
            for day in np.unique(target).tolist():
                self.late.setdefault((domain, day), []).append(take(rec, late[target == day]))
            rows = np.delete(rows, late)
            self.counts[domain]["late"] += int(late.size)
        arrivals = self.late.pop((domain, t), [])
        if arrivals:
            rec = concat([rec, *arrivals])
            rows = np.concatenate([rows, np.arange(n, height(rec))])
        return rec, rows

    def _duplicates(self, domain: str, rows: np.ndarray) -> np.ndarray:
        dup = self._pick(rows.size, self.config.duplicate_rate)
        if dup.size == 0:
            return rows
        # A copy lands a little later in the same file, as when a batch is sent twice.
        where = np.minimum(dup + self.rng.integers(1, 500, dup.size), rows.size)
        self.counts[domain]["duplicates"] += int(dup.size)
        return np.insert(rows, where, rows[dup])

    def _break_lines(self, domain: str, rec: Records, rows: np.ndarray):
        """Structurally broken lines (CSV and JSON only), kept aside and spliced in when written."""
        if DOMAIN_FORMATS[domain] == "parquet":
            return rows, []
        hit = self._pick(rows.size, self.config.malformed_rate / 2)
        if hit.size == 0:
            return rows, []
        broken = take(rec, rows[hit])
        broken["#break"] = self.rng.integers(0, BREAK_KINDS * 60, hit.size)
        position = hit - np.arange(hit.size)  # row index among the rows that stay whole
        step = max(1, -(-(rows.size - hit.size) // SPLICE_POINTS))
        anchor = (position // step) * step
        spliced = [(int(a), take(broken, anchor == a)) for a in np.unique(anchor).tolist()]
        self.counts[domain]["malformed"] += int(hit.size)
        return np.delete(rows, hit), spliced

    def _nulls(self, domain: str, rec: Records) -> Records:
        rate, n = self.config.null_rate, height(rec)
        if rate <= 0.0 or n == 0:
            return rec
        rec = dict(rec)
        for name in SCHEMAS[domain]:
            hit = self._pick(n, rate * (0.1 if name in KEYS[domain] else 1.0))
            if hit.size:
                self.counts[domain]["nulls"] += int((rec[name][hit] != NULL).sum())
                rec[name] = rec[name].copy()  # columns may share one array (name, email, …)
                rec[name][hit] = NULL
        return rec

    def _bad_values(self, domain: str, rec: Records) -> Records:
        """Well-formed lines with a value silver must reject (``N/A`` amounts, bad dates…)."""
        structural = DOMAIN_FORMATS[domain] != "parquet"
        n = height(rec)
        hit = self._pick(n, self.config.malformed_rate / (2 if structural else 1))
        if hit.size == 0:
            return rec
        rec, options = dict(rec), list(BAD_VALUES[domain])
        column = self.rng.integers(0, len(options), hit.size)
        for i, name in enumerate(options):
            rows = hit[column == i]
            if rows.size:
                codes = np.full(n, NULL)
                codes[rows] = self.rng.integers(0, len(BAD_VALUES[domain][name]), rows.size)
                rec[bad(name)] = codes
        self.counts[domain]["bad_values"] += int(hit.size)
        return rec


def _take_rows(rec: Records, rows: np.ndarray) -> Records:
    unchanged = rows.size == height(rec) and bool(np.all(rows == np.arange(rows.size)))
    return rec if unchanged else take(rec, rows)
