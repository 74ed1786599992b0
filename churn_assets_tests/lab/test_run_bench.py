"""The end-to-end benchmark's world cache: a world is simulated once per config, and another
config is another world."""

from __future__ import annotations

from datetime import date

from churn_assets.lab.run_bench import cached_world, layer_seconds


def test_a_world_is_simulated_once_per_config(tmp_path):
    landing, seconds = cached_world(tmp_path, 40, 3, date(2026, 1, 1), seed=5)
    assert seconds is not None and sorted(p.name for p in landing.iterdir())
    files = {p: p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    again, cached = cached_world(tmp_path, 40, 3, date(2026, 1, 1), seed=5)
    assert (again, cached) == (landing, None)
    assert {p: p.read_bytes() for p in again.rglob("*") if p.is_file()} == files
    other, seconds = cached_world(tmp_path, 40, 3, date(2026, 1, 1), seed=6)
    assert other != landing and seconds is not None


def test_step_seconds_add_up_per_layer():
    steps = {"bronze_events": 2.0, "bronze_payments": 1.0, "silver_events": 3.0,
             "gold_customer_features": 4.0, "gold__churn_labels": 9.0, "scores__daily": 5.0}
    # Labels are gold tables too.
    assert layer_seconds(steps) == {"bronze": 3.0, "silver": 3.0, "gold": 13.0}
