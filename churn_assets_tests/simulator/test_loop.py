"""The simulator in a loop with the pipeline: stop at ``until``, go further later, and execute
the pipeline's decisions as retention actions, without ever changing a day already dropped."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

import churn_assets.simulator.run as sim_run
from churn_assets.cli import main
from churn_assets.ingest.landing import list_drops
from churn_assets.settings import Paths
from churn_assets.simulator import DirtConfig, SimConfig, simulate

START = date(2026, 1, 1)
CUSTOMERS, DAYS, SEED = 300, 30, 7
# Dirty enough that late rows and re-drops straddle every cut.
DIRT = DirtConfig(duplicate_rate=0.03, late_rate=0.05, malformed_rate=0.02, null_rate=0.02,
                  mixed_tz_rate=0.5, new_column_day=0.5, redrop_rate=0.25)
CONFIG = SimConfig(customers=CUSTOMERS, days=DAYS, start=START, seed=SEED, dirt=DIRT)
ACTIONS = ("discount_voucher", "reengagement_email", "loyalty_reward")


def day(index: int) -> date:
    return START + timedelta(days=index)


def landing_digest(paths: Paths, through: date | None = None) -> dict[str, str]:
    """sha256 of every landing file (markers included), by path, for the days through ``through``."""
    return {
        str(p.relative_to(paths.landing)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(paths.landing.rglob("*"))
        if p.is_file() and (through is None or date.fromisoformat(p.parent.name) <= through)
    }


def marketing_rows(paths: Paths, when: date) -> pl.DataFrame:
    """The well-formed rows of a day's (dirty) marketing drop, as text."""
    with (paths.landing / "marketing" / f"{when}" / f"marketing-{when}.csv").open() as f:
        header, *rows = csv.reader(f)
    return pl.DataFrame([r for r in rows if len(r) == len(header)], schema=header, orient="row")


def hazard(paths: Paths, when: date) -> pl.DataFrame:
    return pl.read_parquet(paths.truth / "hazard" / f"{when}.parquet")


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Paths, dict[str, str]]:
    """The whole 30-day world, and its landing zone as it stood right after day 19 was written."""
    paths = Paths(tmp_path_factory.mktemp("full"))
    seen: dict[str, str] = {}
    real = sim_run._write_day

    def write_day(renderer, paths_, start, t, *rest):
        real(renderer, paths_, start, t, *rest)
        if t == 19:  # the writer is one thread: nothing of day 20 is on disk yet
            seen.update(landing_digest(paths_))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim_run, "_write_day", write_day)
        simulate(paths, CONFIG)
    return paths, seen


def test_a_later_until_only_adds_drops(tmp_path, full):
    full_paths, first_twenty = full
    stepwise, once = Paths(tmp_path / "stepwise"), Paths(tmp_path / "once")
    simulate(stepwise, CONFIG, until=day(9))
    early = landing_digest(stepwise)
    summary = simulate(stepwise, CONFIG, until=day(19))
    simulate(once, CONFIG, until=day(19))

    assert landing_digest(stepwise) == landing_digest(once) == first_twenty
    assert {k: v for k, v in landing_digest(stepwise).items() if k in early} != early, \
        "re-drops owed after day 9 were written by the second run"
    # The full run re-drops some of these days after day 19: not written yet, as they should be.
    assert landing_digest(full_paths, day(19)) != first_twenty
    assert summary.until == day(19) and summary.days == DAYS
    assert max(d.day for d in list_drops(stepwise.landing)) == day(19)
    for d in range(20):
        assert hazard(stepwise, day(d)).equals(hazard(full_paths, day(d)))
    assert not (stepwise.truth / "hazard" / f"{day(20)}.parquet").exists()
    # customers.parquet is the world on day 19: nobody churns after it.
    customers = pl.read_parquet(stepwise.truth / "customers.parquet")
    assert customers["churn_date"].drop_nulls().max() <= day(19)
    # Simulating the rest adds the remaining days and ends where one full run ends.
    simulate(stepwise, CONFIG)
    assert landing_digest(stepwise) == landing_digest(full_paths)


def test_until_outside_the_history_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"2026-01-01 \.\. 2026-01-30"):
        simulate(Paths(tmp_path), CONFIG, until=day(DAYS))


def test_actions_change_only_the_future(tmp_path, full):
    full_paths, _ = full
    decided = day(12)  # decisions from data through day 12, executed the morning of day 13
    at_risk = hazard(full_paths, decided).filter(~pl.col("churned"))
    chosen = at_risk["customer_id"].head(90).to_list()
    actions = pl.DataFrame({"customer_id": chosen, "day": [decided + timedelta(days=1)] * 90,
                            "action": list(ACTIONS) * 30})
    treated = Paths(tmp_path / "treated")
    simulate(treated, CONFIG, actions=actions)

    assert landing_digest(treated, decided) == landing_digest(full_paths, decided)
    contacted = marketing_rows(treated, day(13)).filter(pl.col("campaign_id").str.starts_with("RET-"))
    assert contacted.height > 0 and set(contacted["customer_id"].drop_nulls()) <= set(chosen)
    # The day of the contact is drawn before it; its hazard is the untreated one.
    assert hazard(treated, day(13)).equals(hazard(full_paths, day(13)))
    later = pl.concat([hazard(treated, day(d)) for d in range(14, DAYS)])
    responders = later.filter(pl.col("customer_id").is_in(chosen) & (pl.col("treatment_effect") > 0))
    assert responders.height and (responders["hazard"] < responders["hazard_untreated"]).all()
    assert not later.filter(~pl.col("customer_id").is_in(chosen))["treated"].any()

    nothing = Paths(tmp_path / "nothing")
    simulate(nothing, CONFIG, actions=actions.clear())
    assert landing_digest(nothing) == landing_digest(full_paths)


def _cli(home: Path, monkeypatch, *extra: str) -> int:
    monkeypatch.setenv("CHURN_HOME", str(home))
    return main(["simulate", "--customers", str(CUSTOMERS), "--days", str(DAYS), "--start",
                 f"{CONFIG.start}", "--seed",
                 str(SEED), "--clean", *extra])


def test_cli_applies_the_treated_decisions(tmp_path, monkeypatch, capsys, full):
    full_paths, _ = full
    home = tmp_path / "home"
    paths = Paths(home)
    assert _cli(home, monkeypatch, "--until", f"{day(30)}") == 2
    assert "2026-01-01 .. 2026-01-30" in capsys.readouterr().err
    assert _cli(home, monkeypatch, "--apply-actions") == 2
    assert str(paths.lake / "decisions" / "actions") in capsys.readouterr().err

    decided = day(11)  # executed on day 12
    at_risk = hazard(full_paths, decided).filter(~pl.col("churned"))["customer_id"].head(80)
    decisions = pl.DataFrame({
        "customer_id": at_risk, "snapshot_date": [decided] * 80,
        "action": list(ACTIONS) * 26 + list(ACTIONS[:2]), "control": [False, True] * 40,
        "cost": [1.0] * 80,
    })
    decisions.write_delta(str(paths.lake / "decisions" / "actions"),
                          delta_write_options={"partition_by": ["snapshot_date"]})
    treated_ids = set(decisions.filter(~pl.col("control"))["customer_id"])
    control_ids = set(decisions.filter(pl.col("control"))["customer_id"])

    assert _cli(home, monkeypatch, "--until", f"{day(20)}", "--apply-actions") == 0
    assert "40 control rows left out" in capsys.readouterr().out
    contacted = pl.read_csv(paths.landing / "marketing" / f"{day(12)}" / f"marketing-{day(12)}.csv",
                            infer_schema=False).filter(pl.col("campaign_id").str.starts_with("RET-"))
    assert contacted.height and set(contacted["customer_id"]) <= treated_ids
    truth = pl.concat([hazard(paths, day(d)) for d in range(13, 21)])
    control = truth.filter(pl.col("customer_id").is_in(control_ids))
    assert control.height and not control["treated"].any()
    assert (control["hazard"] == control["hazard_untreated"]).all()
    treated = truth.filter(pl.col("customer_id").is_in(treated_ids))
    assert treated["treated"].all() and (treated["hazard"] < treated["hazard_untreated"]).any()
    stamp = json.loads((paths.truth / "simulated_with.json").read_text())
    assert stamp["until"] == f"{day(20)}" and stamp["actions"]

    # The same command again is a no-op; a later --until only adds days.
    written = landing_digest(paths)
    assert _cli(home, monkeypatch, "--until", f"{day(20)}", "--apply-actions") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _cli(home, monkeypatch, "--until", f"{day(25)}", "--apply-actions") == 0
    assert landing_digest(paths, day(20)) == written
    assert max(d.day for d in list_drops(paths.landing)) == day(25)
    # Changing what was done to days already dropped is refused.
    assert _cli(home, monkeypatch, "--until", f"{day(25)}") == 2
    assert "differ from those applied then" in capsys.readouterr().err


def test_the_default_world_ends_yesterday_and_grows_day_by_day(tmp_path, monkeypatch, capsys):
    from datetime import UTC, datetime

    from churn_assets.ingest.landing import list_drops

    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    args = ["simulate", "--customers", "40", "--seed", "3", "--clean"]
    assert main([*args, "--days", "5"]) == 0
    days = sorted({d.day for d in list_drops(tmp_path / "home" / "landing")})
    assert (days[0], days[-1]) == (yesterday - timedelta(days=4), yesterday)
    capsys.readouterr()
    # The data root's world is kept (same start), and only the new day is reported.
    assert main([*args, "--until", "today"]) == 0
    out = capsys.readouterr().out
    today = yesterday + timedelta(days=1)
    assert f"added 5 drop(s) for {today} .. {today}" in out and "wrote" not in out
    assert max(d.day for d in list_drops(tmp_path / "home" / "landing")) == today
    assert main([*args, "--until", "today"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def _first_day_simulated(paths: Paths, actions: pl.DataFrame | None, until: date) -> int:
    """Simulate into ``paths``; the 1-based index of the first day this run generated."""
    seen: list[int] = []
    simulate(paths, CONFIG, actions=actions, until=until, progress=lambda d, _: seen.append(d))
    return seen[0]


def test_a_later_run_goes_on_from_the_checkpoint_with_new_actions_like_one_run(tmp_path):
    """A loop step simulates on from where the last one stopped instead of from day 0; the world
    is the one a single run with the same actions makes, byte for byte."""
    actions = pl.DataFrame({"customer_id": ["C00000003", "C00000011"], "day": [day(12), day(14)],
                            "action": ["discount_voucher", "loyalty_reward"]})
    stepwise, once = Paths(tmp_path / "stepwise"), Paths(tmp_path / "once")
    assert _first_day_simulated(stepwise, None, day(9)) == 1
    assert _first_day_simulated(stepwise, actions, day(19)) == 11  # went on from day 10
    simulate(once, CONFIG, actions=actions, until=day(19))
    assert landing_digest(stepwise) == landing_digest(once)
    for d in range(20):
        assert hazard(stepwise, day(d)).equals(hazard(once, day(d)))
    assert hazard(stepwise, day(15)).filter(pl.col("treated")).height > 0
    for name in ("customers.parquet", "summary.json"):
        assert (stepwise.truth / name).read_bytes() == (once.truth / name).read_bytes()


def test_a_checkpoint_made_with_other_past_actions_is_not_used(tmp_path):
    first = pl.DataFrame({"customer_id": ["C00000003"], "day": [day(5)],
                          "action": ["discount_voucher"]})
    other = first.with_columns(action=pl.lit("reengagement_email"))
    paths, once = Paths(tmp_path / "paths"), Paths(tmp_path / "once")
    _first_day_simulated(paths, first, day(9))
    assert _first_day_simulated(paths, other, day(19)) == 1  # started over from day 0
    simulate(once, CONFIG, actions=other, until=day(19))
    for d in range(20):
        assert hazard(paths, day(d)).equals(hazard(once, day(d)))
    # Asking for an earlier day than the checkpoint starts over too.
    assert _first_day_simulated(paths, other, day(4)) == 1
