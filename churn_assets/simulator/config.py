"""What to simulate: the size of the business, its seed, and how dirty its exports are."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime

from churn_assets.settings import DOMAINS


@dataclass(frozen=True)
class DirtConfig:
    """How often each kind of real-world export flaw is injected. Every rate is in ``[0, 1]``.

    - ``duplicate_rate``: share of records written twice (exact copies) in the same file.
    - ``late_rate``: share of records delivered 1-3 days late (in a later day's drop); their
      event time still falls on the day they happened.
    - ``malformed_rate``: share of records that are broken. Half are structural (a CSV line with a
      missing or extra field or an unbalanced quote; a JSON line that is truncated or not JSON),
      half carry a semantically bad value in a well-formed line (amount ``N/A`` or ``12,50``, an
      unparseable timestamp, ``discount_pct`` ``15%``). Parquet drops only get the semantic kind.
    - ``null_rate``: share of non-key cells blanked (empty in CSV, ``null`` in JSON/Parquet);
      key cells (ids) are blanked at a tenth of that rate.
    - ``mixed_tz_rate``: share of timestamps written with a non-UTC offset (``+02:00``) that still
      denote the right instant; the others end in ``Z``.
    - ``new_column_day``: fraction of the history after which payments gain ``coupon_code`` and
      events gain ``device`` (``columns.LATE_COLUMNS``); ``0`` means from the first day, ``None``
      means never.
    - ``redrop_rate``: share of days, per domain, first dropped with ~10% of rows missing and
      re-dropped complete (revision 2) one to three days later.
    """

    duplicate_rate: float = 0.01
    late_rate: float = 0.02
    malformed_rate: float = 0.002
    null_rate: float = 0.005
    mixed_tz_rate: float = 0.3
    new_column_day: float | None = 0.5
    redrop_rate: float = 0.03

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "new_column_day":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"DirtConfig.{f.name} must be a number in [0, 1], got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DirtConfig.{f.name} must be in [0, 1], got {value}")

    @classmethod
    def clean(cls) -> DirtConfig:
        """No dirt at all: every rate zero, and the late columns present from the first day."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def switch_day(self, days: int) -> int | None:
        """The day index from which the late columns are written, or ``None`` for never."""
        if self.new_column_day is None:
            return None
        return min(days, round(self.new_column_day * days))


@dataclass(frozen=True)
class SimConfig:
    """The simulated business.

    ``customers`` is everyone who exists over the history: about 70% signed up before ``start``
    (they arrive in day 1's initial export), the rest sign up during the ``days`` simulated days.
    """

    customers: int = 3000
    days: int = 120
    start: date = date(2026, 1, 1)
    seed: int = 42
    dirt: DirtConfig = field(default_factory=DirtConfig)
    # Domains whose drops are written. All are always generated (payments depend on sessions), so
    # the business is the same whichever are written; benchmarks write only what they measure.
    domains: tuple[str, ...] = DOMAINS

    def __post_init__(self) -> None:
        unknown = set(self.domains) - set(DOMAINS)
        if unknown or not self.domains:
            raise ValueError(
                f"SimConfig.domains must be a non-empty subset of {', '.join(DOMAINS)}; "
                f"got {', '.join(self.domains) or 'nothing'}"
            )
        for name in ("customers", "days", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"SimConfig.{name} must be an integer, got {value!r}")
        if self.customers < 1:
            raise ValueError(f"SimConfig.customers must be at least 1, got {self.customers}")
        if self.customers > 99_999_999:
            raise ValueError("SimConfig.customers must be below 100 million (ids have 8 digits)")
        if self.days < 1:
            raise ValueError(f"SimConfig.days must be at least 1, got {self.days}")
        if self.seed < 0:
            raise ValueError(f"SimConfig.seed must be non-negative, got {self.seed}")
        if not isinstance(self.start, date) or isinstance(self.start, datetime):
            raise ValueError(f"SimConfig.start must be a date (not a datetime), got {self.start!r}")
        if not isinstance(self.dirt, DirtConfig):
            raise ValueError(f"SimConfig.dirt must be a DirtConfig, got {type(self.dirt).__name__}")
