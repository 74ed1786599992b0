"""Polars expressions that write numbers the way a reason sentence needs them (no row loops)."""

from __future__ import annotations

import polars as pl

ACTION_PHRASES = {
    "discount_voucher": "a discount voucher",
    "reengagement_email": "a re-engagement email",
    "loyalty_reward": "a loyalty reward",
}


def _digits(expr: pl.Expr, width: int) -> pl.Expr:
    return expr.cast(pl.String).str.zfill(width)


def thousands(expr: pl.Expr) -> pl.Expr:
    """A non-negative amount rounded to a whole number with thousands separators: ``1,240``."""
    n = expr.round(0, mode="half_away_from_zero").cast(pl.Int64)
    parts = [n // 1_000_000_000, (n // 1_000_000) % 1000, (n // 1000) % 1000, n % 1000]
    return (
        pl.when(n >= 1_000_000_000).then(pl.format("{},{},{},{}", parts[0], _digits(parts[1], 3),
                                                   _digits(parts[2], 3), _digits(parts[3], 3)))
        .when(n >= 1_000_000).then(pl.format("{},{},{}", parts[1], _digits(parts[2], 3),
                                             _digits(parts[3], 3)))
        .when(n >= 1000).then(pl.format("{},{}", parts[2], _digits(parts[3], 3)))
        .otherwise(n.cast(pl.String))
    )


def two_decimals(expr: pl.Expr) -> pl.Expr:
    """A non-negative number with exactly two decimals: ``0.72``, ``10.00``."""
    cents = (expr * 100).round(0, mode="half_away_from_zero").cast(pl.Int64)
    return pl.format("{}.{}", cents // 100, _digits(cents % 100, 2))


def action_phrase(expr: pl.Expr) -> pl.Expr:
    return expr.replace_strict(ACTION_PHRASES, default=expr, return_dtype=pl.String)


def driver_suffix(columns: list[str]) -> pl.Expr:
    """``"; main driver: <driver_1>"`` when the score table has a driver, else empty."""
    if "driver_1" not in columns:
        return pl.lit("")
    return pl.when(pl.col("driver_1").is_not_null()).then(
        pl.format("; main driver: {}", pl.col("driver_1"))).otherwise(pl.lit(""))


def signed(expr: pl.Expr, percent: bool = False) -> pl.Expr:
    """A signed amount for a reason: ``+6.1`` / ``-0.4`` (one decimal) when ``percent``; else
    ``+41``, ``+1,240``, ``-3.50`` (two decimals below 100, whole numbers with separators
    above)."""
    size = expr.abs()
    text = (pl.format("{}.{}", (size * 10).round(0, mode="half_away_from_zero").cast(pl.Int64)
                      // 10, (size * 10).round(0, mode="half_away_from_zero").cast(pl.Int64) % 10)
            if percent else pl.when(size < 100).then(two_decimals(size)).otherwise(thousands(size)))
    return pl.when(expr.is_null()).then(pl.lit("?")).when(expr < 0).then(
        pl.format("-{}", text)).otherwise(pl.format("+{}", text))
