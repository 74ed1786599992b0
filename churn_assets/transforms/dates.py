"""Day arithmetic for gold, in one place because the engines disagree on the obvious ways.

Verified on polars 2.1 / pyspark 4.3 through narwhals 2.29 (and covered by the parity test):

- narwhals has no ``dt.total_days`` and Spark has no ``dt.total_seconds``, so subtracting dates
  gives nothing portable to read a day count from.
- Casting a ``Date`` to Int64 gives days since 1970 on Polars but is an *error* on Spark 4 (ANSI),
  and casting a datetime to Int64 gives microseconds on Polars but seconds on Spark.
- ``dt.year()`` and ``dt.ordinal_day()`` agree on both engines (a ``Date`` has no time zone), so
  the day number is computed from them with integer arithmetic only.

Windows are half-open on the left, ``(as_of - days, as_of]``: "the last 7 days" of the 10th are
the 4th to the 10th. Dates of a timestamp are UTC dates; ``engine.utc_date`` owns that.

Point in time: a silver row is *visible* on day D once it has arrived (``arrival_date <= D``)
and happened (``event_date <= D``), i.e. from ``max(event_date, arrival_date)`` on.
"""

from __future__ import annotations

from datetime import date, timedelta

import narwhals as nw

from churn_assets.transforms.engine import utc_date

EPOCH = date(1970, 1, 1)
# Leap days in the years 1..1969, by the Gregorian rule: (1969//4 - 1969//100 + 1969//400).
_LEAP_DAYS_BEFORE_EPOCH = 477

__all__ = [
    "EPOCH", "day_number", "days_since", "epoch_day", "in_window", "utc_date", "visible_by",
    "visible_on", "window_start",
]


def day_number(day: date) -> int:
    """Days since 1970-01-01 of a Python date (the literal side of a comparison)."""
    return (day - EPOCH).days


def epoch_day(column: str | nw.Expr) -> nw.Expr:
    """Days since 1970-01-01 of a ``Date`` expression, as Int64 (null stays null).

    Days before this year's 1 January = 365 per year since 1970 + leap days in between; then the
    day of the year. Only ``//`` of positive numbers, which both engines floor the same way.
    """
    day = nw.col(column) if isinstance(column, str) else column
    year = day.dt.year().cast(nw.Int64)
    previous = year - 1
    leap_days = previous // 4 - previous // 100 + previous // 400 - _LEAP_DAYS_BEFORE_EPOCH
    return (year - 1970) * 365 + leap_days + day.dt.ordinal_day().cast(nw.Int64) - 1


def days_since(column: str | nw.Expr, as_of: date) -> nw.Expr:
    """Whole days from a ``Date`` expression to ``as_of`` (``as_of`` minus the date), Int64."""
    return nw.lit(day_number(as_of), dtype=nw.Int64) - epoch_day(column)


def window_start(as_of: date, days: int) -> date:
    """The excluded lower bound of the ``days``-day window ending on (and including) ``as_of``."""
    return as_of - timedelta(days=days)


def in_window(column: str | nw.Expr, as_of: date, days: int, until_days: int = 0) -> nw.Expr:
    """``column`` (a ``Date``) lies in ``(as_of - days, as_of - until_days]``.

    ``until_days`` cuts the recent end off: days 31-90 before ``as_of`` are
    ``in_window(c, as_of, 90, until_days=30)``.
    """
    day = nw.col(column) if isinstance(column, str) else column
    upper = window_start(as_of, until_days)
    return (day > nw.lit(window_start(as_of, days), dtype=nw.Date)) & (
        day <= nw.lit(upper, dtype=nw.Date)
    )


def visible_by(day: date) -> nw.Expr:
    """The row is known on ``day``: it has arrived and happened by then."""
    d = nw.lit(day, dtype=nw.Date)
    return (nw.col("arrival_date") <= d) & (nw.col("event_date") <= d)


def visible_on(day: date) -> nw.Expr:
    """The row becomes known on ``day``: it arrives then (having happened), or it happens then
    (having arrived earlier, dated in the future by a skewed clock)."""
    d = nw.lit(day, dtype=nw.Date)
    return ((nw.col("arrival_date") == d) & (nw.col("event_date") <= d)) | (
        (nw.col("event_date") == d) & (nw.col("arrival_date") <= d)
    )
