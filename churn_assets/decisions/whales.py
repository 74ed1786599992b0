"""The whale list: the day's most valuable customers who are at high or rising risk.

A whale has ``cltv >=`` the day's ``whale_quantile`` of cltv (linear interpolation) and is either
high risk (``risk_band == "high"``) or at rising risk: ``churn_probability`` up by at least
``rising_risk_delta`` against the same customer's score ``rising_risk_days`` earlier, looked up in
``previous`` (any frame of older scores, e.g. the last weeks; without it only high risk counts).
Whales go to account managers by hand rather than to an automatic campaign.
"""

from __future__ import annotations

import polars as pl

from churn_assets.decisions.config import PolicyConfig, RiskBands
from churn_assets.decisions.policy import prepare_scores
from churn_assets.decisions.text import driver_suffix, thousands, two_decimals

WHALE_SCHEMA: dict[str, pl.DataType] = {
    "snapshot_date": pl.Date(), "customer_id": pl.String(), "segment": pl.String(),
    "cltv": pl.Float64(), "churn_probability": pl.Float64(),
    "previous_probability": pl.Float64(),  # the score rising_risk_days earlier (null: unknown)
    "probability_change": pl.Float64(), "risk_band": pl.String(),
    "revenue_at_risk": pl.Float64(), "high_risk": pl.Boolean(), "rising_risk": pl.Boolean(),
    "reason": pl.String(),
}


def whale_list(scores: pl.DataFrame | pl.LazyFrame,
               previous: pl.DataFrame | pl.LazyFrame | None = None,
               policy: PolicyConfig | None = None,
               bands: RiskBands | None = None) -> pl.DataFrame:
    """Whales in ``WHALE_SCHEMA``, by day and descending revenue at risk."""
    policy = PolicyConfig() if policy is None else policy
    frame = prepare_scores(scores, bands)
    cut = pl.col("cltv").quantile(policy.whale_quantile, "linear").over("snapshot_date")
    frame = frame.with_columns(_whale_cut=cut)
    if previous is not None:
        before = previous.lazy().select(
            pl.col("customer_id").cast(pl.String),
            (pl.col("snapshot_date").cast(pl.Date)
             + pl.duration(days=policy.rising_risk_days)).alias("snapshot_date"),
            pl.col("churn_probability").cast(pl.Float64).alias("previous_probability"),
        ).unique(["customer_id", "snapshot_date"], keep="last").collect()
        frame = frame.join(before, on=["customer_id", "snapshot_date"], how="left")
    else:
        frame = frame.with_columns(previous_probability=pl.lit(None, dtype=pl.Float64))
    change = pl.col("churn_probability") - pl.col("previous_probability")
    # Compare with a small tolerance so that 0.45 -> 0.55 counts as "up by 0.1".
    rising = (change >= policy.rising_risk_delta - 1e-9).fill_null(False)
    high = (pl.col("risk_band") == "high").fill_null(False)
    p = two_decimals(pl.col("churn_probability"))
    change_text = pl.format("+{} in {} days", two_decimals(pl.col("probability_change")),
                            pl.lit(str(policy.rising_risk_days)))
    risk_text = (
        pl.when(pl.col("high_risk") & pl.col("rising_risk"))
        .then(pl.format("high and rising risk ({}, {})", p, change_text))
        .when(pl.col("high_risk")).then(pl.format("high risk ({})", p))
        .otherwise(pl.format("rising risk ({}, {})", p, change_text))
    )
    reason = pl.format("whale (CLTV {}, top {}%): {}", thousands(pl.col("cltv")),
                       pl.lit(_percent(1 - policy.whale_quantile)), risk_text)
    whales = (
        frame.with_columns(probability_change=change, rising_risk=rising, high_risk=high)
        .filter((pl.col("cltv") >= pl.col("_whale_cut"))
                & (pl.col("high_risk") | pl.col("rising_risk")))
        .with_columns(reason=pl.concat_str(reason, driver_suffix(frame.columns)))
        .sort(["snapshot_date", "revenue_at_risk", "customer_id"],
              descending=[False, True, False])
    )
    return whales.select(pl.col(c).cast(t) for c, t in WHALE_SCHEMA.items())


def _percent(share: float) -> str:
    return f"{share * 100:.3g}"
