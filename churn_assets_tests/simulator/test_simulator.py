"""The simulated business: deterministic, clean when asked, dirty at the configured rates, and
with churn that follows the latent state (and retention actions) rather than chance."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import churn_assets.simulator.run as sim_run
from churn_assets.ingest.columns import COLUMNS, EVENT_TIME, LATE_COLUMNS
from churn_assets.ingest.landing import list_drops
from churn_assets.settings import DOMAINS, Paths
from churn_assets.simulator import DirtConfig, SimConfig, SimSummary, simulate

START = date(2026, 1, 1)
DAYS = 20
HEAVY = DirtConfig(
    duplicate_rate=0.05, late_rate=0.05, malformed_rate=0.04, null_rate=0.03,
    mixed_tz_rate=0.5, new_column_day=0.5, redrop_rate=0.25,
)


def _world(root: Path, dirt: DirtConfig, customers: int = 200, days: int = DAYS, seed: int = 5,
           actions: pl.DataFrame | None = None) -> tuple[Paths, SimSummary]:
    paths = Paths(root)
    summary = simulate(paths, SimConfig(customers=customers, days=days, start=START, seed=seed,
                                        dirt=dirt), actions=actions)
    return paths, summary


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Paths, SimSummary]:
    return _world(tmp_path_factory.mktemp("clean"), DirtConfig.clean())


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Paths, SimSummary, list[tuple[str, date, int]]]:
    """The clean world's business exported with heavy dirt; every write_drop call is recorded."""
    calls: list[tuple[str, date, int]] = []
    real = sim_run.write_drop

    def recording(landing, domain, day, files, **options):
        (content,) = files.values()
        calls.append((domain, day, _data_rows(domain, content)))
        return real(landing, domain, day, files, **options)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim_run, "write_drop", recording)
        paths, summary = _world(tmp_path_factory.mktemp("dirty"), HEAVY)
    return paths, summary, calls


@pytest.fixture(scope="module")
def behaviour(tmp_path_factory) -> tuple[Paths, SimSummary]:
    """Big enough for churn statistics: ~1k customers over the default four months."""
    return _world(tmp_path_factory.mktemp("behaviour"), DirtConfig.clean(), customers=1000,
                  days=120, seed=3)


def _data_rows(domain: str, content: bytes) -> int:
    if domain == "customers":
        return pl.read_parquet(content).height
    lines = content.decode().splitlines()
    return len(lines) - (1 if domain in ("payments", "marketing") else 0)


def _lines(drop) -> tuple[list[str] | None, list[str]]:
    """(CSV header or None, data lines) of a drop's single file."""
    (path,) = drop.file_paths()
    lines = path.read_text().splitlines()
    return (lines[0].split(","), lines[1:]) if path.suffix == ".csv" else (None, lines)


def _frame(paths: Paths, domain: str) -> pl.DataFrame:
    """Every row of a domain with its drop day; only for worlds whose lines all parse."""
    frames = []
    for drop in list_drops(paths.landing, domain):
        (path,) = drop.file_paths()
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif path.suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False)
        else:
            frame = pl.read_ndjson(path, infer_schema_length=None) if path.stat().st_size else None
        if frame is not None and frame.height:
            frames.append(frame.with_columns(drop_day=pl.lit(drop.day)))
    return pl.concat(frames, how="diagonal_relaxed")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{"days": 0}, {"customers": 0}, {"days": -3}])
def test_config_rejects_impossible_worlds(bad):
    with pytest.raises(ValueError, match="days|customers"):
        SimConfig(**bad)


@pytest.mark.parametrize("knob", ["duplicate_rate", "late_rate", "null_rate", "new_column_day"])
def test_dirt_rates_must_be_shares(knob):
    with pytest.raises(ValueError, match=knob):
        DirtConfig(**{knob: 1.5})
    with pytest.raises(ValueError, match=knob):
        DirtConfig(**{knob: -0.1})


def test_clean_dirt_is_all_zero():
    clean = DirtConfig.clean()
    assert clean.duplicate_rate == clean.late_rate == clean.malformed_rate == 0
    assert clean.null_rate == clean.mixed_tz_rate == clean.redrop_rate == 0
    assert DirtConfig().duplicate_rate > 0


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, clean):
    again, _ = _world(tmp_path / "again", DirtConfig.clean())
    other, _ = _world(tmp_path / "other", DirtConfig.clean(), seed=6)
    reference = _digest(clean[0].home)
    assert any(name.startswith("truth/hazard/") for name in reference)
    assert _digest(again.home) == reference
    assert _digest(other.home).keys() == reference.keys()
    assert _digest(other.home) != reference


def test_dirt_does_not_change_the_business(clean, dirty):
    """Dirt has its own random generator: the same customers churn on the same days."""
    truth = [pl.read_parquet(p.truth / "customers.parquet") for p in (clean[0], dirty[0])]
    assert truth[0].equals(truth[1])
    assert clean[1].records == dirty[1].records


# --- a clean world ----------------------------------------------------------------------------


def test_clean_world_has_no_dirt(clean):
    paths, summary = clean
    assert all(count == 0 for count in summary.dirt_totals().values())
    drops = list_drops(paths.landing)
    assert len(drops) == DAYS * len(DOMAINS)
    for drop in drops:
        assert drop.revision == 1
        if drop.domain == "customers":
            assert pl.read_parquet(drop.file_paths()[0]).columns == list(COLUMNS["customers"])
            continue
        header, lines = _lines(drop)
        if header is not None:
            assert header == list(COLUMNS[drop.domain]) + list(LATE_COLUMNS.get(drop.domain, ()))
            assert all(len(row) == len(header) for row in csv.reader(lines))
        else:
            for line in lines:
                assert set(json.loads(line)) == set(COLUMNS[drop.domain]) | set(LATE_COLUMNS.get(drop.domain, ()))


def test_clean_world_keys_are_unique_and_on_time(clean):
    paths, summary = clean
    keys = {"payments": ["transaction_id"], "events": ["event_id"], "marketing": ["interaction_id"],
            "tickets": ["ticket_id", "updated_at"], "customers": ["customer_id", "updated_at"]}
    for domain in DOMAINS:
        frame = _frame(paths, domain)
        assert frame.height == summary.rows[domain] == summary.records[domain] > 0
        assert frame.select(keys[domain]).is_duplicated().sum() == 0, domain
        stamps = frame[EVENT_TIME[domain]].to_list()
        assert all(s.endswith("Z") for s in stamps)
        days = [_instant(s).date() for s in stamps]
        assert days == frame["drop_day"].to_list(), f"{domain} rows outside their drop's day"


def test_summary_counts_what_the_files_hold(dirty):
    paths, summary, _ = dirty
    for domain in DOMAINS:
        on_disk = sum(
            _data_rows(domain, drop.file_paths()[0].read_bytes())
            for drop in list_drops(paths.landing, domain)
        )
        assert on_disk == summary.rows[domain]
        assert summary.rows[domain] == summary.records[domain] + summary.dirt[domain]["duplicates"]


# --- each kind of dirt at roughly its rate ----------------------------------------------------


def test_duplicates_are_exact_copies_in_the_same_file(dirty):
    paths, summary, _ = dirty
    copies = 0
    for drop in list_drops(paths.landing, "events"):
        _, lines = _lines(drop)
        copies += sum(n - 1 for n in Counter(lines).values())
    injected = summary.dirt["events"]["duplicates"]
    assert injected == pytest.approx(HEAVY.duplicate_rate * summary.records["events"], rel=0.25)
    # A copy (or its original) may be written as a broken line, and no longer be identical.
    assert 0.9 * injected <= copies <= injected


def test_late_rows_keep_their_event_time(dirty):
    paths, summary, _ = dirty
    late = total = 0
    for drop in list_drops(paths.landing, "payments"):
        header, lines = _lines(drop)
        at = header.index("created_at")
        for row in csv.reader(lines):
            try:
                day = _instant(row[at]).date()
            except (ValueError, IndexError):
                continue
            total += 1
            assert day <= drop.day
            late += day < drop.day
    assert late == pytest.approx(HEAVY.late_rate * total, rel=0.5)
    assert summary.dirt["payments"]["late"] > 0


def test_malformed_lines_break_the_format(dirty):
    paths, summary, _ = dirty
    broken = {"payments": 0, "marketing": 0, "events": 0, "tickets": 0}
    for domain in broken:
        for drop in list_drops(paths.landing, domain):
            header, lines = _lines(drop)
            for line in lines:
                if header is not None:
                    fields = next(csv.reader([line]), [])
                    broken[domain] += len(fields) != len(header) or line.count('"') % 2 == 1
                else:
                    try:
                        json.loads(line)
                    except ValueError:
                        broken[domain] += 1
    for domain, count in broken.items():
        assert count == summary.dirt[domain]["malformed"], domain
    rows = sum(summary.records[d] for d in broken)
    assert sum(broken.values()) == pytest.approx(HEAVY.malformed_rate / 2 * rows, rel=0.3)
    assert summary.dirt_totals()["bad_values"] > 0


def test_null_cells_at_the_null_rate(dirty):
    paths, summary, _ = dirty
    empty = total = 0
    # Never empty in the business itself; several columns, so the count is not a handful.
    columns = ("transaction_type", "status", "currency", "quantity", "category", "payment_method")
    for drop in list_drops(paths.landing, "payments"):
        header, lines = _lines(drop)
        at = [header.index(c) for c in columns]
        for row in csv.reader(lines):
            if len(row) == len(header):
                total += len(at)
                empty += sum(row[i] == "" for i in at)
    assert empty == pytest.approx(HEAVY.null_rate * total, rel=0.5)
    assert summary.dirt_totals()["nulls"] > 0


def test_mixed_offsets_denote_the_same_instant(clean, dirty):
    truth = {}
    for drop in list_drops(clean[0].landing, "events"):
        for line in _lines(drop)[1]:
            event = json.loads(line)
            truth[event["event_id"]] = _instant(event["occurred_at"])
    offsets = checked = 0
    for drop in list_drops(dirty[0].landing, "events"):
        for line in _lines(drop)[1]:
            try:
                event = json.loads(line)
                stamp = _instant(event["occurred_at"])
            except (ValueError, TypeError):
                continue
            if event["event_id"] in truth:
                checked += 1
                offsets += not event["occurred_at"].endswith("Z")
                assert stamp == truth[event["event_id"]]
    assert checked > 1000
    assert offsets / checked == pytest.approx(HEAVY.mixed_tz_rate, abs=0.05)


def test_late_columns_appear_exactly_from_the_switch_day(dirty):
    paths, summary, _ = dirty
    switch = START + timedelta(days=10)
    assert summary.switch_day == switch
    for drop in list_drops(paths.landing, "payments"):
        header, _ = _lines(drop)
        assert ("coupon_code" in header) == (drop.day >= switch)
    for drop in list_drops(paths.landing, "events"):
        keys = set()
        for line in _lines(drop)[1]:
            with contextlib.suppress(ValueError):
                keys |= set(json.loads(line))
        assert ("device" in keys) == (drop.day >= switch)


def test_redropped_days_come_back_complete_as_revision_two(dirty):
    paths, summary, calls = dirty
    assert summary.redropped, "a 25% re-drop rate over 100 domain-days re-drops something"
    assert sum(summary.dirt[d]["redrops"] for d in DOMAINS) == len(summary.redropped)
    for domain, day in summary.redropped:
        writes = [(i, rows) for i, (d, when, rows) in enumerate(calls) if (d, when) == (domain, day)]
        assert len(writes) == 2
        (first, first_rows), (second, final_rows) = writes
        assert final_rows > first_rows
        later_days = {when for d, when, _ in calls[first + 1:second] if when > day}
        assert later_days, "a re-drop comes after later days were written"
        drop = next(d for d in list_drops(paths.landing, domain) if d.day == day)
        assert drop.revision == 2
    once = [d for d in list_drops(paths.landing) if (d.domain, d.day) not in summary.redropped]
    assert all(d.revision == 1 for d in once)


# --- the business -----------------------------------------------------------------------------


def test_pii_in_the_initial_customer_export(clean):
    paths, _ = clean
    first = next(d for d in list_drops(paths.landing, "customers") if d.day == START)
    export = pl.read_parquet(first.file_paths()[0])
    assert export.height > 100  # ~70% of 200 signed up before the start
    assert export["name"].str.contains(" ").all()
    assert export["email"].str.contains(r"^[a-z.]+\d+@[a-z.]+$").all()
    assert export["phone"].str.starts_with("+").all()
    assert export.select("customer_id", "updated_at").is_duplicated().sum() == 0
    signup = export["signup_at"].map_elements(lambda s: _instant(s).date(), return_dtype=pl.Date)
    assert (signup <= START).all()  # the day's drop also holds day 1's own signups
    assert (signup < START).sum() > 100


def test_churned_customers_are_quiet_after_their_churn_day(behaviour):
    paths, summary = behaviour
    truth = pl.read_parquet(paths.truth / "customers.parquet")
    churned = truth.filter(pl.col("churn_date").is_not_null())
    assert churned.height == summary.churned
    assert 0.15 <= summary.churned / summary.customers <= 0.45
    assert 0.05 <= summary.churned_explicit / summary.churned <= 0.3
    activity = pl.concat([
        _frame(paths, "payments").select("customer_id", at="created_at"),
        _frame(paths, "events").select("customer_id", at="occurred_at"),
        _frame(paths, "tickets").select("customer_id", at="opened_at"),
        _frame(paths, "marketing").filter(pl.col("interaction_type").is_in(["open", "click", "redemption"]))
        .select("customer_id", at="occurred_at"),
    ]).with_columns(day=pl.col("at").str.to_datetime(time_zone="UTC").dt.date())
    after = activity.join(churned, on="customer_id").filter(pl.col("day") >= pl.col("churn_date"))
    assert after.height == 0
    active_before = activity.join(churned, on="customer_id").filter(pl.col("day") < pl.col("churn_date"))
    assert active_before["customer_id"].n_unique() > 0.5 * churned.height
    cancels = _frame(paths, "customers").filter(pl.col("status") == "cancelled")
    assert cancels.height == summary.churned_explicit


def test_churn_is_driven_by_observable_behaviour(behaviour):
    paths, _ = behaviour
    truth = pl.read_parquet(paths.truth / "customers.parquet").select(
        "customer_id", churned=pl.col("churn_date").is_not_null()
    )
    charges = _frame(paths, "payments").filter(pl.col("transaction_type") == "charge")
    failures = charges.group_by("customer_id").agg(failed=(pl.col("status") == "failed").mean())
    sessions = (
        _frame(paths, "events").filter(pl.col("event_type") == "session_start")
        .group_by("customer_id").agg(days=pl.col("drop_day").n_unique())
    )
    by_group = (
        truth.join(failures, on="customer_id", how="left").join(sessions, on="customer_id", how="left")
        .group_by("churned").agg(pl.col("failed").mean(), pl.col("days").mean())
        .sort("churned")
    )
    survivors, churners = by_group.to_dicts()
    assert churners["failed"] > 1.15 * survivors["failed"]
    assert churners["days"] < 0.8 * survivors["days"]


def test_refunds_reference_earlier_paid_orders_of_the_same_customer(behaviour):
    payments = _frame(behaviour[0], "payments")
    paid = payments.filter((pl.col("transaction_type") == "charge") & (pl.col("status") == "paid"))
    refunds = payments.filter(pl.col("transaction_type") == "refund")
    assert refunds.height > 20
    assert (refunds["amount"].cast(pl.Float64) < 0).all()
    assert (refunds["order_id"] == refunds["refund_of_order_id"]).all()
    matched = refunds.join(
        paid.select("order_id", buyer="customer_id", paid_day="drop_day"),
        left_on="refund_of_order_id", right_on="order_id",
    )
    assert matched.height == refunds.height
    assert (matched["buyer"] == matched["customer_id"]).all()
    assert (matched["paid_day"] < matched["drop_day"]).all()
    assert refunds["refund_of_order_id"].n_unique() == refunds.height


def test_tickets_are_redelivered_with_their_resolution(behaviour):
    tickets = _frame(behaviour[0], "tickets")
    twice = tickets.filter(pl.col("ticket_id").is_duplicated()).sort("ticket_id", "updated_at")
    assert twice.height > 0
    firsts = twice.group_by("ticket_id", maintain_order=True).first()
    lasts = twice.group_by("ticket_id", maintain_order=True).last()
    assert firsts["resolved_at"].is_null().all()
    assert lasts["resolved_at"].is_not_null().all()
    assert set(tickets["csat"].drop_nulls().to_list()) <= {"1", "2", "3", "4", "5"}


def test_retention_actions_lower_the_hazard_of_treated_customers(tmp_path, clean):
    day = START + timedelta(days=8)
    hazard = pl.read_parquet(clean[0].truth / "hazard" / f"{day}.parquet")
    treated = hazard["customer_id"].head(60).to_list()
    actions = pl.DataFrame({
        "customer_id": treated, "day": [day] * 60,
        "action": ["discount_voucher", "reengagement_email", "loyalty_reward"] * 20,
    })
    paths, _ = _world(tmp_path / "treated", DirtConfig.clean(), actions=actions)
    next_day = day + timedelta(days=1)
    before = pl.read_parquet(clean[0].truth / "hazard" / f"{next_day}.parquet")
    after = pl.read_parquet(paths.truth / "hazard" / f"{next_day}.parquet")
    both = before.join(after, on="customer_id", suffix="_treated")
    treated_rows = both.filter(pl.col("customer_id").is_in(treated))
    others = both.filter(~pl.col("customer_id").is_in(treated))
    assert (others["hazard"] == others["hazard_treated"]).all()
    assert (treated_rows["hazard_untreated_treated"] == treated_rows["hazard_untreated"]).all()
    responders = treated_rows.filter(pl.col("treatment_effect_treated") > 0)
    assert 0.4 * treated_rows.height <= responders.height < treated_rows.height
    assert (responders["hazard_treated"] < responders["hazard"]).all()
    assert treated_rows["treated_treated"].all() and not others["treated_treated"].any()
    assert (treated_rows.filter(pl.col("treatment_effect_treated") == 0)["hazard_treated"]
            == treated_rows.filter(pl.col("treatment_effect_treated") == 0)["hazard"]).all()
    offers = _frame(paths, "marketing").filter(pl.col("campaign_id").str.starts_with("RET-"))
    assert set(offers["customer_id"].to_list()) <= set(treated)
    assert offers.height > 0


def test_unknown_actions_and_customers_are_refused(tmp_path):
    for action, customer in [("free_pony", "C00000001"), ("discount_voucher", "C99999999")]:
        actions = pl.DataFrame({"customer_id": [customer], "day": [START], "action": [action]})
        with pytest.raises(ValueError, match="unknown"):
            _world(tmp_path / action, DirtConfig.clean(), days=2, actions=actions)


def test_progress_is_reported_once_per_day(tmp_path):
    seen = []
    simulate(Paths(tmp_path), SimConfig(customers=50, days=5, dirt=DirtConfig.clean()),
             progress=lambda day, total: seen.append((day, total)))
    assert seen == [(d, 5) for d in range(1, 6)]
    summary = json.loads((tmp_path / "truth" / "summary.json").read_text())
    assert summary["days"] == 5 and summary["customers"] == 50
