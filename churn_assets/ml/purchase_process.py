"""Buy-till-you-die quantities as churn-model inputs: the probability that a customer is still
active and the orders they are expected to place over the label horizon.

For a customer who buys a few times a year, "no order in 20 days" means nothing on its own:
it depends on how often they used to buy and for how long. The MBG/NBD model of ``cltv.py``
turns (repeat orders, recency, age) into exactly that judgement. Its four parameters are fitted
on the training rows (their latest snapshot day) and travel with the model in its
``FeatureSpec``, so a scored row gets the same transformation as a training row and nothing
from the validation period leaks into them. Every quantity is point-in-time: it reads only the
row's own gold features of that day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from churn_assets.ml.cltv import _conditional_orders, _fit, _mbg_nll, purchase_history

DERIVED = ("probability_alive", "expected_orders_horizon")
NEEDS = ("tenure_days", "orders_total", "days_since_last_order", "avg_order_value",
         "revenue_total", "is_cancelled", "status")


@dataclass(frozen=True)
class PurchaseProcess:
    """Fitted MBG/NBD parameters (days) and the horizon the expected orders are counted over."""

    r: float
    alpha: float
    a: float
    b: float
    horizon_days: int

    @classmethod
    def fit(cls, frame: pl.DataFrame, horizon_days: int) -> PurchaseProcess | None:
        """Fit on the rows of ``frame``'s latest snapshot day; ``None`` when the business has
        no orders to fit on (no payments, or fewer than 10 customers that day)."""
        if any(c not in frame.columns for c in NEEDS) or frame["orders_total"].count() == 0:
            return None
        latest = frame.filter(pl.col("snapshot_date") == frame["snapshot_date"].max())
        history = purchase_history(latest.sort("customer_id"))
        if history.height < 10 or float(history["orders"].sum()) == 0.0:
            return None
        x, t_x, age = (history[c].to_numpy() for c in ("orders", "recency", "age"))
        r, alpha, a_minus_1, b = _fit(lambda v: _mbg_nll(v, x, t_x, age), 4, 0.0,
                                      start=np.log([1.0, max(age.mean(), 1.0), 1.0, 1.0]))
        return cls(r, alpha, 1.0 + a_minus_1, b, int(horizon_days))

    def add(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with ``probability_alive`` and ``expected_orders_horizon`` (null for a
        customer without any paid order yet: the model reads them as missing)."""
        history = purchase_history(frame)
        x, t_x, age = (history[c].to_numpy() for c in ("orders", "recency", "age"))
        odds = self.a / (self.b + x) * np.exp(
            (self.r + x) * (np.log(self.alpha + age) - np.log(self.alpha + t_x)))
        alive = 1.0 / (1.0 + odds)
        expected = _conditional_orders(self.r, self.alpha, self.a, self.b, x, t_x, age,
                                       float(self.horizon_days))
        bought = (frame["orders_total"].fill_null(0) > 0).to_numpy()
        cancelled = history["cancelled"].to_numpy()
        return frame.with_columns(
            probability_alive=pl.Series(np.where(cancelled, 0.0, alive)).set(
                pl.Series(~bought), None),
            expected_orders_horizon=pl.Series(np.where(cancelled, 0.0, expected)).set(
                pl.Series(~bought), None),
        )
