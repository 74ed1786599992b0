"""Numbers as people read them: money as money, shares as percentages, counts with separators."""

from __future__ import annotations

import math

DEFAULT_CURRENCY = "€"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def money(value, currency: str = DEFAULT_CURRENCY, decimals: int = 0) -> str:
    """``€12,345`` (``-€120`` for a negative amount, ``–`` for none)."""
    if _missing(value):
        return "–"
    sign = "-" if value < 0 else ""
    return f"{sign}{currency}{abs(value):,.{decimals}f}"


def short_money(value, currency: str = DEFAULT_CURRENCY) -> str:
    """Axis labels: ``€1.2k``, ``€3.4M``."""
    if _missing(value):
        return "–"
    sign, value = ("-" if value < 0 else ""), abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{sign}{currency}{value / limit:.1f}{suffix}"
    return f"{sign}{currency}{value:,.0f}"


def percent(share, decimals: int = 1) -> str:
    """A share in [0, 1] as ``12.3%``."""
    if _missing(share):
        return "–"
    return f"{share * 100:.{decimals}f}%"


def points(delta, decimals: int = 1) -> str:
    """A difference of shares as signed percentage points: ``+2.5 pp``."""
    if _missing(delta):
        return "–"
    return f"{delta * 100:+.{decimals}f} pp"


def count(value) -> str:
    if _missing(value):
        return "–"
    return f"{int(value):,}"


def number(value, decimals: int = 3) -> str:
    if _missing(value):
        return "–"
    return f"{value:.{decimals}f}"
