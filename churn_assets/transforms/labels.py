"""gold/churn_labels: did a customer known on day D churn in the following H days?

A customer churned when they placed no paid order with ``event_date`` in ``(D, D+H]``, or
cancelled explicitly (``cancelled_at`` dated in ``(D, D+H]``). Labels read the future by design:
they are targets, never features. They use every row known when they are computed (late
arrivals included, for the truest label); ``labels_available`` says when that is safe at all.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import narwhals as nw

from churn_assets.transforms.dates import in_window, utc_date

LABEL_SCHEMA: dict[str, nw.dtypes.DType] = {
    "snapshot_date": nw.Date(),
    "customer_id": nw.String(),
    "churned": nw.Boolean(),
    "label_window_end": nw.Date(),
    "reason": nw.String(),  # 'cancelled' | 'no_paid_order' | null when not churned
}


def labels_available(max_arrival_date: date | None, snapshot_date: date,
                     horizon_days: int) -> bool:
    """A label partition is computable once data for its whole window has arrived."""
    return max_arrival_date is not None and max_arrival_date >= label_window_end(
        snapshot_date, horizon_days)


def label_window_end(snapshot_date: date, horizon_days: int) -> date:
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    return snapshot_date + timedelta(days=horizon_days)


def churn_labels(known_customers: Any, payments: Any, customers: Any, snapshot_date: date,
                 horizon_days: int) -> Any:
    """``LABEL_SCHEMA`` rows: one per distinct ``customer_id`` of ``known_customers`` (the
    ``customer_features`` partition of ``snapshot_date``, or any frame of the customers known
    then). ``payments`` and ``customers`` are silver covering at least ``(D, D+H]``;
    ``customers`` may be ``None`` for a business without a customers table.

    Returns a native lazy frame (``polars.LazyFrame`` or Spark ``DataFrame``).
    """
    end = label_window_end(snapshot_date, horizon_days)
    known = _lazy(known_customers).select("customer_id").unique()

    paid_charge = (nw.col("transaction_type") == "charge") & (nw.col("status") == "paid")
    ordered = (
        _lazy(payments)
        .filter(paid_charge & in_window("event_date", end, horizon_days))
        .select("customer_id").unique().with_columns(_ordered=nw.lit(True))
    )
    labels = known.join(ordered, on="customer_id", how="left")
    if customers is not None:
        cancellations = utc_date(
            _lazy(customers).filter(~nw.col("cancelled_at").is_null()),
            "cancelled_at", "_cancel_date",
        )
        cancelled = (
            cancellations.filter(in_window("_cancel_date", end, horizon_days))
            .select("customer_id").unique().with_columns(_cancelled=nw.lit(True))
        )
        labels = labels.join(cancelled, on="customer_id", how="left")
    else:
        labels = labels.with_columns(_cancelled=nw.lit(None, dtype=nw.Boolean))

    has_order = nw.col("_ordered").fill_null(False)
    has_cancelled = nw.col("_cancelled").fill_null(False)
    return labels.select(
        snapshot_date=nw.lit(snapshot_date, dtype=nw.Date),
        customer_id=nw.col("customer_id"),
        churned=~has_order | has_cancelled,
        label_window_end=nw.lit(end, dtype=nw.Date),
        # An explicit cancellation is the clearer reason, even when an order came first.
        reason=nw.when(has_cancelled).then(nw.lit("cancelled"))
        .when(~has_order).then(nw.lit("no_paid_order")),
    ).to_native()


def _lazy(frame: Any) -> nw.LazyFrame:
    if frame is None:
        raise ValueError("churn_labels needs the known customers and silver payments")
    frame = nw.from_native(frame)
    return frame.lazy() if isinstance(frame, nw.DataFrame) else frame
