"""Exact counterfactuals: every draw of the simulator is keyed by what it is for, so a world with
retention actions and its no-action twin differ only in the treated customers' rows, from the
day of the contact on (dirt included), and the truth holds each action's true effect for every
customer at risk."""

from __future__ import annotations

import re
from datetime import date, timedelta

import polars as pl
import pytest

from churn_assets.ingest.landing import list_drops
from churn_assets.settings import Paths
from churn_assets.simulator import DirtConfig, SimConfig, simulate
from churn_assets.simulator import vocab as V
from churn_assets.simulator.run import ORACLE_COLUMNS
from churn_assets.simulator.state import ID_STRIDE

START = date(2026, 1, 1)
CUSTOMERS, DAYS, SEED = 300, 24, 11
CONTACT = START + timedelta(days=10)
# Heavy dirt of every kind, so that dirt keyed by position would show.
DIRT = DirtConfig(duplicate_rate=0.05, late_rate=0.08, malformed_rate=0.04, null_rate=0.03,
                  mixed_tz_rate=0.5, new_column_day=0.5, redrop_rate=0.3)
CONFIG = SimConfig(customers=CUSTOMERS, days=DAYS, start=START, seed=SEED, dirt=DIRT)
# Record id prefixes (schema) and the stride of each id kind (state.ID_STRIDE).
PREFIX_STRIDE = {"E": ID_STRIDE["event"], "S": ID_STRIDE["session"], "T": ID_STRIDE["txn"],
                 "O": ID_STRIDE["order"], "M": ID_STRIDE["mkt"], "TK": ID_STRIDE["ticket"]}
TOKEN = re.compile(r"\b(TK|E|S|T|O|M)(\d+)\b")


def _ids_customer(line: str) -> set[int]:
    """The customers whose record ids appear in a line (ids are made from day, customer, item)."""
    return {(int(number) // PREFIX_STRIDE[prefix]) % CUSTOMERS for prefix, number in TOKEN.findall(line)}


def _owned_by(line: str, customer: int) -> bool:
    return f"C{customer:08d}" in line or customer in _ids_customer(line)


def _files(paths: Paths) -> dict[tuple[str, date], tuple[int, bytes]]:
    """(domain, day) -> (revision, content) of every final drop."""
    out = {}
    for drop in list_drops(paths.landing):
        (path,) = drop.file_paths()
        out[(drop.domain, drop.day)] = (drop.revision, path.read_bytes())
    return out


def _truth(paths: Paths) -> dict[date, pl.DataFrame]:
    return {date.fromisoformat(p.stem): pl.read_parquet(p)
            for p in sorted((paths.truth / "hazard").glob("*.parquet"))}


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Paths:
    paths = Paths(tmp_path_factory.mktemp("twin"))
    simulate(paths, CONFIG)
    return paths


@pytest.fixture(scope="module")
def treated_customer(twin) -> str:
    """An active, engaged customer at risk on the contact day, who has rows in the days after."""
    at_risk = _truth(twin)[CONTACT].filter(~pl.col("churned")).sort("engagement", descending=True)
    return at_risk["customer_id"][0]


@pytest.fixture(scope="module")
def treated(tmp_path_factory, treated_customer) -> Paths:
    paths = Paths(tmp_path_factory.mktemp("treated"))
    actions = pl.DataFrame({"customer_id": [treated_customer], "day": [CONTACT],
                            "action": ["discount_voucher"]})
    simulate(paths, CONFIG, actions=actions)
    return paths


def test_no_actions_and_an_empty_action_list_give_byte_identical_worlds(tmp_path, twin):
    empty = Paths(tmp_path / "empty")
    simulate(empty, CONFIG, actions=pl.DataFrame(
        schema={"customer_id": pl.String, "day": pl.Date, "action": pl.String}))
    assert _files(empty) == _files(twin)
    for name in ("customers.parquet", "summary.json"):
        assert (empty.truth / name).read_bytes() == (twin.truth / name).read_bytes()
    for day, frame in _truth(empty).items():
        assert frame.equals(_truth(twin)[day])


def test_a_treated_customer_changes_only_its_own_rows_from_the_contact_on(twin, treated, treated_customer):
    number = int(treated_customer.removeprefix("C"))
    before, after = _files(twin), _files(treated)
    assert before.keys() == after.keys()
    changed_days = set()
    for key, (revision, content) in before.items():
        domain, day = key
        other_revision, other = after[key]
        if day < CONTACT:
            assert (revision, content) == (other_revision, other), key
            continue
        if domain == "customers":
            mine = pl.col("customer_id").eq(treated_customer) | pl.col("email").str.contains(
                f"{number}[.@]")
            frames = [pl.read_parquet(c).filter(~mine.fill_null(False)) for c in (content, other)]
            assert frames[0].equals(frames[1]), key
            changed_days.add(day) if content != other else None
            continue
        lines = [[ln for ln in c.decode().splitlines() if not _owned_by(ln, number)]
                 for c in (content, other)]
        assert lines[0] == lines[1], f"{key}: rows of other customers differ"
        if content != other:
            changed_days.add(day)
    assert changed_days, "the action changed nothing the customer did"
    assert min(changed_days) >= CONTACT


def test_the_truth_differs_only_for_the_treated_customer_after_the_contact(twin, treated, treated_customer):
    before, after = _truth(twin), _truth(treated)
    assert before.keys() == after.keys()
    for day, frame in before.items():
        other = after[day]
        if day <= CONTACT:
            assert frame.equals(other), day
            continue
        mine = pl.col("customer_id") == treated_customer
        assert frame.filter(~mine).equals(other.filter(~mine)), day
    next_day = after[CONTACT + timedelta(days=1)].filter(pl.col("customer_id") == treated_customer)
    oracle = before[CONTACT].filter(pl.col("customer_id") == treated_customer)
    # The effect the oracle promised on the contact day is the share of hazard removed the day after
    # (one day's fade in).
    assert next_day["treatment_effect"][0] == pytest.approx(oracle["effect_discount_voucher"][0] * 0.96)
    assert next_day["hazard"][0] < next_day["hazard_untreated"][0]
    customers = [pl.read_parquet(p.truth / "customers.parquet") for p in (twin, treated)]
    mine = pl.col("customer_id") == treated_customer
    assert customers[0].filter(~mine).equals(customers[1].filter(~mine))


def test_the_truth_holds_each_actions_true_effect_for_every_customer_at_risk(twin):
    day = _truth(twin)[CONTACT]
    assert set(ORACLE_COLUMNS) <= set(day.columns)
    assert day.select(pl.col(ORACLE_COLUMNS).is_null().any()).row(0) == (False,) * len(ORACLE_COLUMNS)
    alive = day.filter(~pl.col("churned"))
    for action in V.ACTIONS:
        effect, reduction = alive[f"effect_{action}"], alive[f"churn_reduction_{action}"]
        kept = alive[f"revenue_kept_{action}"]
        assert effect.min() >= 0 and effect.max() <= 0.85
        assert (reduction >= 0).all() and (reduction <= alive["churn_probability_window"]).all()
        assert (kept >= 0).all()
        # Some customers are moved, some are not: the effect is heterogeneous.
        assert (effect == 0).any() and effect.max() > 0.2, action
    churned = day.filter(pl.col("churned"))
    assert (churned.select(pl.col("^effect_.*$")).sum_horizontal() == 0).all()
    # A reduction follows the hazard: for the same effect, riskier customers lose more.
    corr = alive.select(pl.corr("churn_reduction_reengagement_email",
                                pl.col("churn_probability_window") * pl.col("effect_reengagement_email")))
    assert corr.item() > 0.9
