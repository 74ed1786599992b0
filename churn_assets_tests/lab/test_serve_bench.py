"""The serving benchmark's batch rows: as many as asked, copies jittered."""

from datetime import date

import polars as pl

from churn_assets.lab.serve_bench import distinct_rows


def test_batch_rows_are_jittered_copies_under_fresh_ids_on_the_last_day():
    history = pl.DataFrame({
        "snapshot_date": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 2)],
        "customer_id": ["C1", "C1", "C2"], "segment": ["a", "a", "b"],
        "orders_total": [3, 4, 1], "revenue_total": [30.0, 42.5, None],
        "is_cancelled": [False, False, True]})
    rows = distinct_rows(history, 10)
    assert rows.height == 10 and rows["customer_id"].is_unique().all()
    assert set(rows["snapshot_date"]) == {date(2026, 1, 2)}
    assert rows.schema == history.schema  # counts stay whole numbers
    assert rows.head(3).drop("customer_id", "snapshot_date").equals(
        history.drop("customer_id", "snapshot_date"))
    copies = rows.slice(3).filter(pl.col("revenue_total").is_not_null())
    assert copies.select("orders_total", "revenue_total").unique().height == copies.height == 5
    assert rows["segment"].to_list() == (["a", "a", "b"] * 4)[:10]  # text untouched
    assert rows["revenue_total"].null_count() == 3  # a missing value stays missing
