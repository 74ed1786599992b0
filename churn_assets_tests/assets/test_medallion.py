"""Silver, gold and labels as Dagster runs them, on a dirty simulated world: counts reconcile,
re-deliveries count once, no raw PII anywhere, past partitions never move, the incremental chain
equals a rebuild, a blocking check stops gold, and a transactions-only business works."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from churn_assets import catalog
from churn_assets.automation import LABELS_JOB
from churn_assets.definitions import build_definitions
from churn_assets.ingest.landing import find_drop, write_drop
from churn_assets.lab.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.resources.delta import DeltaTableStore
from churn_assets.resources.store import DateWindow
from churn_assets.settings import DOMAINS, Paths
from churn_assets.transforms.gold import features_as_of
from churn_assets_tests.conftest import WORLD_DAYS, WORLD_START, materialize_range

LAST = WORLD_START + timedelta(days=WORLD_DAYS + 3)  # late records land after the last day
HORIZON = 4
FEATURES_KEY = dg.AssetKey(["gold", "customer_features"])


def table(paths: Paths, name: str) -> pl.DataFrame:
    return pl.read_delta(str(paths.lake / name.replace(".", "/")))


def features(paths: Paths) -> pl.DataFrame:
    return table(paths, "gold.customer_features").sort("snapshot_date", "customer_id")


def with_short_horizon(paths: Paths) -> Paths:
    paths.settings_file.write_text(f"[labels]\nhorizon_days = {HORIZON}\n")
    return paths


def run_job(paths: Paths, job: str, first: date, last: date, instance):
    return build_definitions(paths).resolve_job_def(job).execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def world(dirty_world_template, tmp_path_factory):
    """The dirty world run once through bronze, silver and gold; shared by read-only tests."""
    home = tmp_path_factory.mktemp("medallion") / "home"
    shutil.copytree(dirty_world_template, home)
    paths = with_short_horizon(Paths(home))
    with dg.instance_for_test() as instance:
        result = materialize_range(paths, WORLD_START, LAST, instance)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        logs = instance.all_logs(result.run_id)
    return paths, result, logs


@pytest.fixture
def world_copy(world, tmp_path) -> Paths:
    paths, _, _ = world
    shutil.copytree(paths.home, tmp_path / "home")
    return Paths(tmp_path / "home")


def test_every_bronze_row_is_silver_rejected_or_duplicate(world):
    paths, result, _ = world
    for domain in DOMAINS:
        bronze = table(paths, f"bronze.{domain}").height
        silver = table(paths, f"silver.{domain}")
        exceptions = table(paths, f"silver.{domain}_exceptions")
        assert bronze == silver.height + exceptions.height, domain
        assert set(exceptions["kind"]) <= {"rejected", "duplicate"}
        assert exceptions["reason"].null_count() == 0
    # The dirty world has rejects and duplicates to account for, and the checks ran on them.
    assert table(paths, "silver.payments_exceptions").height > 0
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e
                   for e in result.get_asset_check_evaluations()}
    for domain in DOMAINS:
        assert evaluations[(f"silver/{domain}", "reconciled_with_bronze")].passed
        assert evaluations[(f"silver/{domain}", "keys_unique_and_present")].passed


def test_silver_is_typed_and_unique_per_natural_key(world):
    paths, _, _ = world
    payments = table(paths, "silver.payments")
    assert payments.schema["amount"] == pl.Float64
    assert payments.schema["created_at"] == pl.Datetime("us", "UTC")
    assert payments["transaction_id"].is_unique().all()
    assert payments.filter(pl.col("event_date") > pl.col("arrival_date")).height == 0
    customers = table(paths, "silver.customers")
    assert {"email", "phone", "name"}.isdisjoint(customers.columns)
    assert customers["email_hash"].drop_nulls().str.len_chars().min() == 64


def test_no_raw_pii_in_silver_gold_or_the_run_log(world):
    paths, _, logs = world
    raw = pl.concat(
        [pl.read_parquet(path) for drop_dir in (paths.landing / "customers").iterdir()
         for path in drop_dir.glob("*.parquet")],
        how="diagonal_relaxed",
    )
    secrets = {v for column in ("email", "phone", "name")
               for v in raw[column].drop_nulls().to_list() if len(v) >= 6}
    assert len(secrets) > 100
    for layer in ("silver", "gold"):
        for folder in sorted((paths.lake / layer).iterdir()):
            frame = pl.read_delta(str(folder))
            for column, dtype in frame.schema.items():
                if dtype == pl.String:
                    leaked = set(frame[column].drop_nulls().unique().to_list()) & secrets
                    assert not leaked, f"{layer}/{folder.name}.{column} holds raw PII"
    log_text = "\n".join(repr(entry) for entry in logs)
    assert "silver/customers" in log_text  # the log is really the run's
    assert not [s for s in secrets if s in log_text]


def test_a_record_redelivered_on_a_later_day_counts_once(world, world_copy, instance):
    paths = world_copy
    day2, day5 = WORLD_START + timedelta(days=1), WORLD_START + timedelta(days=4)
    day2_file = find_drop(paths.landing, "payments", day2).file_paths()[0]
    header, first_record = day2_file.read_bytes().splitlines()[:2]
    day5_drop = find_drop(paths.landing, "payments", day5)
    files = {p.name: p.read_bytes() for p in day5_drop.file_paths()}
    files["resent.csv"] = header + b"\n" + first_record + b"\n"
    write_drop(paths.landing, "payments", day5, files)
    transaction = first_record.split(b",")[0].decode()

    assert materialize_range(paths, WORLD_START, LAST, instance).success
    silver = table(paths, "silver.payments").filter(pl.col("transaction_id") == transaction)
    assert silver.height == 1 and silver["arrival_date"][0] == day2
    exceptions = table(paths, "silver.payments_exceptions")
    resent = exceptions.filter(pl.col("_source_file").str.contains("resent.csv"))
    assert resent.select("natural_key", "kind", "reason").rows() == [
        (transaction, "duplicate", "duplicate: earlier_day")]
    # Nothing downstream moved: the copy is invisible to gold.
    original_paths, _, _ = world
    assert_frame_equal(features(paths), features(original_paths))


def test_a_late_record_changes_no_past_partition(world, world_copy, instance):
    paths = world_copy
    before = features(paths)
    late_day = LAST + timedelta(days=1)
    customer = before.filter(pl.col("orders_total") > 0)["customer_id"][0]
    occurred = WORLD_START + timedelta(days=2)
    header = find_drop(paths.landing, "payments", WORLD_START).file_paths()[0].read_bytes()
    header = header.splitlines()[0].decode()
    values = {"transaction_id": "TLATE1", "order_id": "OLATE1", "customer_id": customer,
              "transaction_type": "charge", "status": "paid", "amount": "500.00",
              "currency": "EUR", "quantity": "1", "category": "books",
              "payment_method": "card", "created_at": f"{occurred}T10:00:00Z"}
    line = ",".join(values.get(c, "") for c in header.split(","))
    write_drop(paths.landing, "payments", late_day, {"late.csv": f"{header}\n{line}\n".encode()})

    # Rerun everything, old days included: what was visible on each past day is unchanged.
    assert materialize_range(paths, WORLD_START, late_day, instance).success
    after = features(paths)
    assert_frame_equal(after.filter(pl.col("snapshot_date") <= LAST), before)

    def revenue(frame, day):
        row = frame.filter((pl.col("snapshot_date") == day) & (pl.col("customer_id") == customer))
        return row["revenue_total"][0]
    assert revenue(after, late_day) == pytest.approx(revenue(before, LAST) + 500.0)


def test_incremental_chain_equals_a_rebuild_from_silver(world):
    paths, _, _ = world
    gold = features(paths)
    silver = {d: pl.scan_delta(str(paths.lake / "silver" / d)) for d in DOMAINS}
    for day in (WORLD_START, WORLD_START + timedelta(days=6), LAST):
        rebuilt = features_as_of(snapshot_date=day, **silver).collect()
        assert_frame_equal(
            gold.filter(pl.col("snapshot_date") == day),
            rebuilt.sort("snapshot_date", "customer_id"),
            check_exact=False, rel_tol=1e-9,
        )


def test_a_day_without_yesterdays_state_is_rebuilt_to_the_same_rows(world, world_copy, instance):
    paths = world_copy
    day = WORLD_START + timedelta(days=8)
    store = DeltaTableStore(root=str(paths.lake))
    yesterday = DateWindow.day(day - timedelta(days=1))
    for name in ("gold.customer_state", "gold.customer_categories"):
        empty = pl.read_delta(store.location(name)).clear()
        store.replace_window(name, empty, yesterday, "snapshot_date")
    before = features(paths)

    result = materialize_range(paths, day, day, instance)
    assert result.success
    state = result.asset_materializations_for_node("gold_customer_features")
    rebuilt = [m.metadata["rebuilt_from_history"].value for m in state if "rebuilt_from_history"
               in m.metadata]
    assert rebuilt == [[day.isoformat()]]
    assert_frame_equal(features(paths), before, check_exact=False, rel_tol=1e-9)


def test_gold_keeps_the_newest_state_days_and_rebuilds_an_older_one_to_the_same_rows(
        world_copy, instance):
    """[maintenance] state_days bounds the state by days kept, not by history: a run deletes
    older snapshots (but its own last day), and a rerun of a pruned day's successor rebuilds
    the state from history to the rows it had."""
    paths = world_copy
    with paths.settings_file.open("a") as settings:
        settings.write("\n[maintenance]\nstate_days = 4\n")
    gold = [catalog.CUSTOMER_STATE.key, catalog.CUSTOMER_CATEGORIES.key,
            catalog.CUSTOMER_FEATURES.key]
    before = {name: table(paths, name) for name in
              ("gold.customer_state", "gold.customer_categories", "gold.customer_features")}
    all_days = set(before["gold.customer_state"]["snapshot_date"])
    newest = {LAST - timedelta(days=k) for k in range(4)}

    def state_days(name="gold.customer_state"):
        return set(table(paths, name)["snapshot_date"])

    def same_rows(name, days):
        def rows(frame):
            frame = frame.filter(pl.col("snapshot_date").is_in(sorted(days)))
            return frame.sort(frame.columns)
        assert_frame_equal(rows(table(paths, name)), rows(before[name]))

    result = materialize_range(paths, LAST, LAST, instance, selection=gold)
    assert result.success
    meta = next(m.metadata for m in result.asset_materializations_for_node(
        "gold_customer_features") if "state_days_deleted" in m.metadata)
    assert meta["state_days_deleted"].value == len(all_days - newest) > 0
    assert meta["state_kept_from"].value == str(min(newest))
    assert state_days() == state_days("gold.customer_categories") == newest
    for name in before:
        same_rows(name, newest)

    old = WORLD_START + timedelta(days=5)  # its previous day's state is gone
    result = materialize_range(paths, old, old, instance, selection=gold)
    assert result.success
    rebuilt = [m.metadata["rebuilt_from_history"].value for m in
               result.asset_materializations_for_node("gold_customer_features")
               if "rebuilt_from_history" in m.metadata]
    assert rebuilt == [[old.isoformat()]]
    assert state_days() == newest | {old}  # a run keeps its last day
    for name in before:
        same_rows(name, newest | {old})
    assert_frame_equal(features(paths), before["gold.customer_features"].sort(
        "snapshot_date", "customer_id"), check_exact=False, rel_tol=1e-9)

    assert materialize_range(paths, LAST, LAST, instance, selection=gold).success
    assert state_days() == state_days("gold.customer_categories") == newest


def test_a_failed_blocking_check_stops_gold(world, world_copy, instance):
    paths = world_copy
    day = WORLD_START + timedelta(days=3)
    drop = find_drop(paths.landing, "payments", day)
    # An export whose amounts switched to decimal commas: every row is rejected.
    files = {}
    for path in drop.file_paths():
        lines = path.read_text().splitlines()
        head = lines[0].split(",")
        amount = head.index("amount")
        broken = [lines[0]]
        for line in lines[1:]:
            cells = line.split(",")
            if len(cells) == len(head):
                cells[amount] = f"\"{cells[amount].replace('.', ',')}\""
            broken.append(",".join(cells))
        files[path.name] = ("\n".join(broken) + "\n").encode()
    write_drop(paths.landing, "payments", day, files)
    gold_before = features(paths)

    result = materialize_range(paths, day, day, instance)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert ("silver/payments", "reject_share") in {
        (e.asset_key.to_user_string(), e.check_name) for e in failed}
    reject = next(e for e in failed if e.check_name == "reject_share"
                  and e.asset_key.to_user_string() == "silver/payments")
    assert reject.severity == dg.AssetCheckSeverity.ERROR
    assert reject.metadata["share"].value > 0.5
    materialized = {e.materialization.asset_key
                    for e in result.get_asset_materialization_events()}
    assert FEATURES_KEY not in materialized
    assert dg.AssetKey(["gold", "daily_activity"]) not in materialized
    assert_frame_equal(features(paths), gold_before)


def test_labels_wait_for_their_window_then_label_every_known_customer(world, world_copy, instance):
    paths = world_copy
    too_recent = LAST - timedelta(days=1)
    refused = run_job(paths, LABELS_JOB, too_recent, too_recent, instance)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "need data through" in failure.message or "need data through" in str(
        failure.event_specific_data.error)

    last_drop = WORLD_START + timedelta(days=WORLD_DAYS - 1)
    labelled = last_drop - timedelta(days=HORIZON)
    assert run_job(paths, LABELS_JOB, WORLD_START, labelled, instance).success
    labels = table(paths, "gold.churn_labels")
    gold = features(paths).filter(pl.col("snapshot_date") <= labelled)
    assert labels.height == gold.height
    assert labels.join(gold, on=["snapshot_date", "customer_id"], how="anti").height == 0
    assert (labels["label_window_end"] == labels["snapshot_date"] + timedelta(days=HORIZON)).all()
    assert 0 < labels["churned"].mean() < 1


def test_a_transactions_only_business_gets_null_features_for_absent_domains(tmp_path, instance):
    from churn_assets.simulator import SimConfig, simulate

    (tmp_path / "home").mkdir()
    paths = with_short_horizon(Paths(tmp_path / "home"))
    simulate(paths, SimConfig(customers=150, days=10, start=WORLD_START, seed=5,
                              domains=("customers", "payments")))
    last = WORLD_START + timedelta(days=12)
    assert materialize_range(paths, WORLD_START, last, instance).success
    gold = features(paths)
    assert gold.height > 0
    for column in ("sessions_7d", "sessions_30d", "days_since_last_session", "engagement_trend",
                   "tickets_30d", "last_ticket_category", "csat_trend", "offers_received_90d",
                   "offers_redeemed_90d"):
        assert gold[column].null_count() == gold.height, column
    assert gold["orders_total"].null_count() == 0
    assert gold["revenue_total"].sum() > 0
    labelled = WORLD_START + timedelta(days=9 - HORIZON)  # the 10th day is the last with drops
    assert run_job(paths, LABELS_JOB, WORLD_START, labelled, instance).success
    assert table(paths, "gold.churn_labels").height > 0


def test_gold_has_a_freshness_policy_and_a_deadline_check_outside_the_daily_job(world):
    paths, result, _ = world
    defs = build_definitions(paths)
    graph = defs.resolve_asset_graph()
    assert graph.get(FEATURES_KEY).freshness_policy is not None
    checks = {key.name for key in graph.asset_check_keys if key.asset_key == FEATURES_KEY}
    assert any("freshness" in name for name in checks)
    ran = {e.check_name for e in result.get_asset_check_evaluations()
           if e.asset_key == FEATURES_KEY}
    assert not any("freshness" in name for name in ran)
    sensors = {s.name: s for s in defs.sensors}
    assert sensors["freshness_checks_sensor"].default_status == dg.DefaultSensorStatus.RUNNING


DAY_JUDGED = {"reject_share": "days_above_tolerance",
              "references_known_customers": "days_above_tolerance",
              "volume_vs_trailing_mean": "days_outside"}


def day_verdicts(results, through: date) -> set[tuple]:
    """(asset, check, day, verdict) of the day-judged checks, from the check results' metadata."""
    found = set()
    for result in results:
        for evaluation in result.get_asset_check_evaluations():
            field = DAY_JUDGED.get(evaluation.check_name)
            if field is None:
                continue
            for day, detail in evaluation.metadata[field].value.items():
                if date.fromisoformat(day) <= through:
                    found.add((evaluation.asset_key.to_user_string(), evaluation.check_name, day,
                               detail.get("verdict", "warn")))
    return found


def failed_checks(results) -> set[tuple]:
    return {(e.asset_key.to_user_string(), e.check_name, e.severity.value)
            for r in results for e in r.get_asset_check_evaluations() if not e.passed}


def test_runs_of_1_3_7_days_reach_the_verdicts_and_tables_of_one_long_run(
        world, dirty_world_template, tmp_path):
    """What the UI does (backfills of a few days) and what the CLI does (31-day chunks) must
    agree: checks judge each day on its own evidence, and tables do not depend on the window."""
    long_paths, long_run, _ = world
    through = WORLD_START + timedelta(days=6)
    tables = [f"{layer}.{name}" for domain in DOMAINS
              for layer, name in (("silver", domain), ("silver", f"{domain}_exceptions"))]
    tables += ["gold.customer_features", "gold.customer_state"]

    def snapshot(paths):
        out = {}
        for name in tables:
            frame = table(paths, name)
            column = "snapshot_date" if name.startswith("gold") else "arrival_date"
            frame = frame.filter(pl.col(column) <= through)
            out[name] = frame.sort(frame.columns)
        return out

    expected = snapshot(long_paths)
    long_days = day_verdicts([long_run], through)
    assert long_days, "the dirty world should give the day-judged checks something to report"
    # Days 1-3 one at a time, 4-6 as one 3-day run, 7 alone; then all 7 in one run; the long
    # run is the module's 16-day run (the CLI's chunks are 31 days).
    plans = {"1+3-day runs": [(0, 0), (1, 1), (2, 2), (3, 5), (6, 6)], "one 7-day run": [(0, 6)]}
    verdicts = []
    for label, plan in plans.items():
        home = tmp_path / label.replace(" ", "_")
        shutil.copytree(dirty_world_template, home)
        paths = with_short_horizon(Paths(home))
        with dg.instance_for_test() as instance:
            results = [materialize_range(paths, WORLD_START + timedelta(days=a),
                                         WORLD_START + timedelta(days=b), instance)
                       for a, b in plan]
        assert all(r.success for r in results), label
        assert day_verdicts(results, through) == long_days, label
        verdicts.append(failed_checks(results))
        got = snapshot(paths)
        for name in tables:
            assert_frame_equal(got[name], expected[name], check_exact=False, rel_tol=1e-9)
    # Checks judged on whole windows (a row dated ahead, say) fail in some run of both plans.
    assert verdicts[0] == verdicts[1]
