"""The landing sensor: exactly once per drop, again on a re-drop, never on a partial drop, and a
cursor that survives a restart."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from churn_assets import catalog
from churn_assets.automation import DAILY_JOB, RANGE_END_TAG, RANGE_START_TAG
from churn_assets.definitions import build_definitions
from churn_assets.ingest.landing import MARKER, drop_dir, write_drop
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.landing import LandingZone
from churn_assets.settings import DOMAINS, Paths
from churn_assets_tests.conftest import WORLD_DAYS, WORLD_START, materialize_range

DAY1, DAY2, DAY3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
CSV = b"transaction_id,customer_id,amount,created_at\nt1,c1,10.0,2026-03-01T10:00:00Z\n"


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "home")


def tick(paths: Paths, instance, cursor: str | None):
    """Evaluate the real sensor once, as the daemon would, and return (requests, cursor)."""
    data = evaluate(paths, instance, cursor)
    return data.run_requests or [], data.cursor or cursor


def evaluate(paths: Paths, instance, cursor: str | None):
    defs = build_definitions(paths)
    sensor = defs.resolve_sensor_def("landing_sensor")
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={
            "landing": LandingZone(root=str(paths.landing)),
            "store": DeltaTableStore(root=str(paths.lake)),
        },
    ) as context:
        return sensor.evaluate_tick(context)


def keys(requests) -> list[tuple[str, list[str]]]:
    """(partition, or "first..last" for a run over a range; the assets it materializes)."""
    return [
        (r.partition_key or f"{r.tags[RANGE_START_TAG]}..{r.tags[RANGE_END_TAG]}",
         sorted(k.to_user_string() for k in r.asset_selection)) for r in requests
    ]


def test_each_complete_drop_is_requested_exactly_once(paths, instance):
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    write_drop(paths.landing, "events", DAY1, {"events.jsonl": b'{"event_id": "e1"}\n'})
    write_drop(paths.landing, "payments", DAY2, {"payments.csv": CSV})

    requests, cursor = tick(paths, instance, None)
    assert keys(requests) == [
        ("2026-03-01", ["bronze/events", "bronze/events_quarantine", "bronze/payments",
                        "bronze/payments_quarantine"]),
        ("2026-03-02", ["bronze/payments", "bronze/payments_quarantine"]),
    ]
    assert len({r.run_key for r in requests}) == 2

    again, cursor_after = tick(paths, instance, cursor)
    assert again == []
    assert json.loads(cursor_after) == json.loads(cursor)


def test_a_backlog_is_one_run_per_range_of_days_and_each_range_ingests_its_days(paths, instance):
    """41 days of payments, the last with events too: a run for 31 days, one for the next 9,
    one for the day with another set of domains; the daemon's execution of a range run puts
    every one of its days in bronze, and nothing is requested twice."""
    first = date(2026, 1, 1)
    days = [first + timedelta(days=i) for i in range(41)]
    for day in days:
        csv = CSV.replace(b"2026-03-01", day.isoformat().encode())
        write_drop(paths.landing, "payments", day, {"payments.csv": csv})
    write_drop(paths.landing, "events", days[-1], {"events.jsonl": b'{"event_id": "e1"}\n'})

    requests, cursor = tick(paths, instance, None)
    payments = ["bronze/payments", "bronze/payments_quarantine"]
    assert keys(requests) == [
        ("2026-01-01..2026-01-31", payments), ("2026-02-01..2026-02-09", payments),
        ("2026-02-10", ["bronze/events", "bronze/events_quarantine", *payments]),
    ]
    assert len({r.run_key for r in requests}) == 3

    job = build_definitions(paths).resolve_job_def(DAILY_JOB)
    ran = job.execute_in_process(instance=instance, tags=requests[0].tags,
                                 asset_selection=requests[0].asset_selection)
    assert ran.success
    bronze = DeltaTableStore(root=str(paths.lake)).read("bronze.payments").collect()
    assert sorted(set(bronze["_drop_date"].to_list())) == days[:31]
    assert tick(paths, instance, cursor)[0] == []

    # A re-drop of one day in the range is that day's run alone.
    write_drop(paths.landing, "payments", days[4], {"payments.csv": CSV + b"t2,c2,5.0,2026-01-05T11:00:00Z\n"})
    again, _ = tick(paths, instance, cursor)
    assert keys(again) == [("2026-01-05", payments)]


def test_rewriting_identical_content_is_not_a_redrop(paths, instance):
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    _, cursor = tick(paths, instance, None)
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    assert tick(paths, instance, cursor)[0] == []


def test_redrop_with_changed_content_is_requested_again(paths, instance):
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    write_drop(paths.landing, "events", DAY1, {"events.jsonl": b'{"event_id": "e1"}\n'})
    first, cursor = tick(paths, instance, None)

    corrected = CSV + b"t2,c2,5.0,2026-03-01T11:00:00Z\n"
    redrop = write_drop(paths.landing, "payments", DAY1, {"payments.csv": corrected})
    assert redrop.revision == 2

    requests, _ = tick(paths, instance, cursor)
    assert keys(requests) == [("2026-03-01", ["bronze/payments", "bronze/payments_quarantine"])]
    assert requests[0].run_key != first[0].run_key
    assert redrop.batch_id in requests[0].tags["churn/batches"]


def test_partial_drop_waits_for_its_marker(paths, instance):
    folder = drop_dir(paths.landing, "payments", DAY3)
    folder.mkdir(parents=True)
    (folder / "payments.csv").write_bytes(CSV)  # still being written: no marker yet

    requests, cursor = tick(paths, instance, None)
    assert requests == []

    write_drop(paths.landing, "payments", DAY3, {"payments.csv": CSV})
    assert (folder / MARKER).exists()
    requests, _ = tick(paths, instance, cursor)
    assert keys(requests) == [("2026-03-03", ["bronze/payments", "bronze/payments_quarantine"])]


def test_a_broken_marker_is_reported_on_every_tick_not_skipped_quietly(paths, instance):
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    write_drop(paths.landing, "payments", DAY2, {"payments.csv": CSV})
    marker = drop_dir(paths.landing, "payments", DAY2) / MARKER
    marker.write_text(json.dumps(json.loads(marker.read_text()) | {"day": DAY3.isoformat()}))

    first = evaluate(paths, instance, None)
    assert keys(first.run_requests) == [("2026-03-01",
                                         ["bronze/payments", "bronze/payments_quarantine"])]
    again = evaluate(paths, instance, first.cursor)
    assert again.run_requests == []
    reason = again.skip_message
    assert "1 drop folder(s) have a marker that breaks the contract" in reason
    assert str(drop_dir(paths.landing, "payments", DAY2)) in reason


def test_cursor_survives_a_restart(paths, instance):
    """A restarted daemon only has the stored cursor: it must not request anything twice."""
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    _, cursor = tick(paths, instance, None)
    stored = str(cursor)  # what the instance persists between ticks

    with dg.instance_for_test() as restarted:
        write_drop(paths.landing, "payments", DAY2, {"payments.csv": CSV})
        requests, _ = tick(paths, restarted, stored)
    assert keys(requests) == [("2026-03-02", ["bronze/payments", "bronze/payments_quarantine"])]


def test_days_outside_the_partitions_are_not_requested(paths, instance):
    paths.home.mkdir(parents=True)
    paths.settings_file.write_text(f"[partitions]\nstart = {DAY1}\n")
    write_drop(paths.landing, "payments", date(2020, 1, 1), {"payments.csv": CSV})
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    requests, cursor = tick(paths, instance, None)
    assert [r.partition_key for r in requests] == ["2026-03-01"]
    # The early day is not marked as seen: once the partitions start earlier, it is ingested.
    assert "payments/2020-01-01" not in json.loads(cursor)


def test_drops_already_in_bronze_are_not_requested_again(paths, instance):
    """After `churn-assets run` ingested history, starting the UI must not ingest it all again."""
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV})
    write_drop(paths.landing, "payments", DAY2, {"payments.csv": CSV})
    bronze = [dg.AssetKey(["bronze", "payments"]), dg.AssetKey(["bronze", "payments_quarantine"])]
    assert materialize_range(paths, DAY1, DAY1, instance, selection=bronze).success

    requests, cursor = tick(paths, instance, None)
    assert keys(requests) == [("2026-03-02", ["bronze/payments", "bronze/payments_quarantine"])]
    assert "payments/2026-03-01" in json.loads(cursor)

    write_drop(paths.landing, "payments", DAY1, {"payments.csv": CSV + b"t9,c9,1.0,2026-03-01T12:00:00Z\n"})
    requests, _ = tick(paths, instance, cursor)
    assert keys(requests) == [("2026-03-01", ["bronze/payments", "bronze/payments_quarantine"])]


def test_sensor_runs_by_default_and_targets_bronze(paths):
    sensor = build_definitions(paths).resolve_sensor_def("landing_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_each_morning_measures_the_campaign_day_whose_window_just_arrived(paths):
    from datetime import UTC, datetime

    paths.home.mkdir(parents=True)
    paths.settings_file.write_text("[scoring]\noutcome_window_days = 10\n")
    defs = build_definitions(paths)
    schedule = defs.resolve_schedule_def("daily_outcomes")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "churn_outcomes"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 3, 12, 6, 0, tzinfo=UTC),
            repository_def=defs.get_repository_def())
        (request,) = schedule.evaluate_tick(context).run_requests
    # Yesterday is 2026-03-11; its data closes the 10-day window of 2026-03-01.
    assert request.partition_key == "2026-03-01"


def test_partitions_follow_the_data_and_end_yesterday(paths):
    write_drop(paths.landing, "payments", DAY2, {"payments.csv": CSV})
    write_drop(paths.landing, "customers", DAY1 - timedelta(days=3), {"customers.csv": b"x\n"})
    (paths.landing / "events" / "2019-01-01").mkdir(parents=True)  # no marker: not data yet
    defs = build_definitions(paths)
    partitions = defs.resolve_assets_def(dg.AssetKey(["bronze", "payments"])).partitions_def
    assert partitions.get_first_partition_key() == "2026-02-26"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert partitions.get_last_partition_key() == yesterday.isoformat()
    # An explicit start wins.
    paths.settings_file.write_text("[partitions]\nstart = 2025-06-01\n")
    assert build_definitions(paths).resolve_assets_def(
        dg.AssetKey(["bronze", "payments"])).partitions_def.get_first_partition_key() == "2025-06-01"


def test_empty_drops_launch_no_run_unless_they_empty_a_day(paths, instance):
    header = CSV.splitlines(keepends=True)[0]
    write_drop(paths.landing, "payments", DAY1, {"payments.csv": header})
    write_drop(paths.landing, "payments", DAY2, {"payments.csv": CSV})
    requests, cursor = tick(paths, instance, None)
    assert [r.partition_key for r in requests] == ["2026-03-02"]
    assert "payments/2026-03-01" in json.loads(cursor)  # seen: there is nothing to ingest
    bronze = [dg.AssetKey(["bronze", "payments"]), dg.AssetKey(["bronze", "payments_quarantine"])]
    assert materialize_range(paths, DAY2, DAY2, instance, selection=bronze).success
    # A corrected, empty re-drop of a day that has rows must still run, to empty it.
    write_drop(paths.landing, "payments", DAY2, {"payments.csv": header})
    requests, _ = tick(paths, instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-03-02"]


def test_the_automation_sensor_is_on_by_default_for_every_asset(paths):
    defs = build_definitions(paths)
    sensor = defs.resolve_sensor_def("automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    silver = defs.resolve_assets_def(dg.AssetKey(["silver", "payments"]))
    assert silver.automation_conditions_by_key[dg.AssetKey(["silver", "payments"])] is not None


def test_the_weekly_maintenance_schedule_follows_its_setting(paths):
    from churn_assets.automation import MAINTENANCE_JOB

    paths.home.mkdir(parents=True)
    paths.settings_file.write_text('[maintenance]\nschedule_cron = "30 2 * * 6"\n')
    schedule = build_definitions(paths).resolve_schedule_def("weekly_delta_maintenance")
    assert schedule.job_name == MAINTENANCE_JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "30 2 * * 6"
    tick = schedule.evaluate_tick(dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 7, 2, 30, tzinfo=UTC)))
    assert [r.job_name or MAINTENANCE_JOB for r in tick.run_requests] == [MAINTENANCE_JOB]


def test_a_backlog_of_days_asks_for_all_its_gold_features_at_once(dirty_world, instance):
    """Each day of gold features continues the day before's state. Waiting for that day to
    exist, the automation sensor asked for one day per tick (about a day a minute under
    `dagster dev`); now a backlog whose inputs are there is asked for in one evaluation (the
    asset's single-run backfill policy makes that one run over the range). A day whose own
    inputs are missing still waits, and so do the days whose 90-day window holds it."""
    paths = dirty_world
    defs = build_definitions(paths)
    gold = {t.key for t in (catalog.CUSTOMER_STATE, catalog.CUSTOMER_CATEGORIES,
                            catalog.CUSTOMER_FEATURES)}
    upstream = [t.key for d in DOMAINS for t in (catalog.bronze(d), catalog.bronze_quarantine(d),
                                                 catalog.silver(d), catalog.silver_exceptions(d))]
    upstream += [catalog.DAILY_ACTIVITY.key, catalog.ORDER_CATEGORIES.key]
    day = [WORLD_START + timedelta(days=k) for k in range(WORLD_DAYS)]
    first_tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    # Every day's inputs but the 7th's.
    for first, last in ((day[0], day[5]), (day[7], day[-1])):
        assert materialize_range(paths, first, last, instance, selection=upstream).success

    result = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                               cursor=first_tick.cursor)
    for key in gold:
        assert set(result.get_requested_partitions(key)) == {d.isoformat() for d in day[:6]}
    assert not any(result.get_requested_partitions(key) for key in upstream)
