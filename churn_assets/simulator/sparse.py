"""The ``sparse-retail`` preset: a catalogue retailer whose customers buy a few times a year.

The default simulator is a dense, engaged business (sessions, tickets and marketing every day);
real retail transaction logs look nothing like it. This preset writes only ``customers`` and
``payments`` and draws the purchase process from the models that describe such logs:

* **Cohort.** Every customer makes a first purchase in the first ``cohort_days`` (a quarter),
  as in the CDNOW sample (the cohort of first-time buyers of the first quarter of 1997).
* **Repeat purchases: BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way"). While active a customer buys at a Poisson rate ``lambda ~ Gamma(r, alpha)`` (per week);
  after every repeat purchase they become inactive for good with probability
  ``p ~ Beta(a, b)``. The parameters are the published estimates on the CDNOW sample
  (r = 0.243, alpha = 4.414 weeks, a = 0.793, b = 2.426).
* **Spend: Gamma-Gamma** (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"):
  each transaction's value ~ Gamma(p, nu) with the customer's ``nu ~ Gamma(q, gamma)``; the
  published CDNOW estimates p = 6.25, q = 3.74, gamma = 15.44 (a mean of about $35 a purchase,
  with a heavy tail across customers).

Everything else about a row (region, channel, payment method, category, quantity) is drawn
independently of the purchase process: a transactions-only business knows nothing else, so
nothing else should predict churn. There are no refunds, failed payments or cancellations.

Ground truth under ``paths.truth``: ``customers.parquet`` with each customer's true
``purchase_rate_per_day``, ``dropout_probability``, ``mean_order_value`` and ``churn_date``
(the day after the purchase after which they left; null while still active), and
``summary.json``. The truth is what the oracle of ``lab/evaluate.py`` scores with: a
customer active on day D has no purchase in (D, D + H] with probability exp(-lambda H).

The export is dirtied like the default world's (``SimConfig.dirt``), with its own generator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

from churn_assets.ingest.landing import write_drop
from churn_assets.settings import DOMAINS, Paths
from churn_assets.simulator import vocab as V
from churn_assets.simulator.config import DirtConfig, SimConfig
from churn_assets.simulator.dirt import Dirt
from churn_assets.simulator.run import DIRT_KINDS, SimSummary, _file_name
from churn_assets.simulator.schema import NULL, Records
from churn_assets.simulator.writer import Renderer

PRESETS = ("default", "sparse-retail")
SPARSE_DOMAINS = ("customers", "payments")
DAY = 86400
WEEK = 7 * DAY


@dataclass(frozen=True)
class SparseRetailParams:
    """The purchase process. Rates are per week, as published; values in dollars."""

    r: float = 0.243
    alpha: float = 4.414
    a: float = 0.793
    b: float = 2.426
    p: float = 6.25
    q: float = 3.74
    gamma: float = 15.44
    cohort_days: int = 84


# What `simulate --preset sparse-retail` writes to a data root without settings: with the
# default 120 labelled days and a 90-day horizon only ~17 snapshot days could train; and the
# ranking ceiling of a BG/NBD business (what the true purchase history allows) is ~0.77, below
# the default floor of 0.80 (README, "A sparse business").
SPARSE_SETTINGS = """\
# Written by `churn-assets simulate --preset sparse-retail`: customers who buy a few times a year.
[model]
training_days = 365       # a year of labelled snapshot days...
snapshot_every_days = 7   # ...one a week for training (validation keeps every day)
auc_floor = 0.70          # the gate's floor; the ranking ceiling of such a business is ~0.77
"""

# The CDNOW sample: 2,357 customers (a tenth of the cohort), 78 weeks of history.
CDNOW_SAMPLE_CUSTOMERS = 2357
CDNOW_COHORT_CUSTOMERS = 23_570
CDNOW_WEEKS = 78


def sparse_retail_config(customers: int = CDNOW_COHORT_CUSTOMERS, days: int = CDNOW_WEEKS * 7,
                         start: date = date(2025, 1, 1), seed: int = 42,
                         dirt: DirtConfig | None = None) -> SimConfig:
    """The preset's ``SimConfig``: the full CDNOW cohort size over 78 weeks by default."""
    return SimConfig(customers=customers, days=days, start=start, seed=seed,
                     dirt=dirt or DirtConfig(), domains=SPARSE_DOMAINS)


@dataclass(frozen=True)
class Purchases:
    """Every purchase of the history, sorted by time, and each customer's latent traits."""

    customer: np.ndarray      # customer index per purchase
    at: np.ndarray            # seconds since the start
    cents: np.ndarray
    first_at: np.ndarray      # per customer: the first purchase (the signup)
    rate_per_day: np.ndarray  # per customer: lambda while active
    dropout: np.ndarray       # per customer: p
    mean_value: np.ndarray    # per customer: E[value of a purchase]
    left_at: np.ndarray       # per customer: the purchase after which they left (NaN: active)


def draw_purchases(config: SimConfig, params: SparseRetailParams,
                   rng: np.random.Generator) -> Purchases:
    """The BG/NBD + Gamma-Gamma history of ``config.customers`` over ``config.days``."""
    n, end = config.customers, config.days * DAY
    first = rng.uniform(0, min(params.cohort_days, config.days) * DAY, n)
    rate = rng.gamma(params.r, 1.0 / params.alpha, n) / WEEK  # per second
    dropout = rng.beta(params.a, params.b, n)
    nu = rng.gamma(params.q, 1.0 / params.gamma, n)
    left = np.full(n, np.nan)
    owners, times = [np.arange(n)], [first]
    now, active = first.copy(), np.flatnonzero(rate > 0)
    # One round per repeat purchase: every still-active customer's next purchase, then the coin
    # that decides whether it was their last. Rounds end when nobody is active inside the window.
    while active.size:
        now[active] += rng.exponential(1.0 / rate[active])
        active = active[now[active] < end]
        owners.append(active)
        times.append(now[active].copy())
        leaves = rng.random(active.size) < dropout[active]
        left[active[leaves]] = now[active[leaves]]
        active = active[~leaves]
    customer, at = np.concatenate(owners), np.concatenate(times)
    order = np.lexsort((customer, at))
    customer, at = customer[order], at[order]
    value = rng.gamma(params.p, 1.0 / nu[customer])
    cents = np.maximum(np.rint(value * 100), 1).astype(np.int64)
    return Purchases(customer, at, cents, first, rate * DAY, dropout, params.p / nu, left)


def simulate_sparse(paths: Paths, config: SimConfig, params: SparseRetailParams | None = None,
                    progress: Callable[[int, int], None] | None = None) -> SimSummary:
    """Write the preset's drops (customers on their first purchase day, payments daily) and
    its truth. Same config, same bytes."""
    started = time.perf_counter()
    params = params or SparseRetailParams()
    config = replace(config, domains=tuple(d for d in config.domains if d in SPARSE_DOMAINS)
                     or SPARSE_DOMAINS)
    world_seed, rows_seed, dirt_seed = np.random.SeedSequence([config.seed, 20]).spawn(3)
    rng = np.random.default_rng(world_seed)
    bought = draw_purchases(config, params, rng)
    n = config.customers
    traits = _traits(n, rng)
    start_epoch = (config.start - date(1970, 1, 1)).days * DAY
    renderer = Renderer(n, start_epoch, {k: traits[k] for k in
                                         ("first_name", "last_name", "region", "phone_number")})
    dirt = Dirt(config.dirt, config.days, np.random.default_rng(dirt_seed))
    rows_rng = np.random.default_rng(rows_seed)
    payments = _payment_records(bought, traits, start_epoch, rows_rng)
    pay_day = (bought.at // DAY).astype(np.int64)
    signup_day = (bought.first_at // DAY).astype(np.int64)
    pay_bounds = np.searchsorted(pay_day, np.arange(config.days + 1))
    owed, redropped = [], []
    try:
        for t in range(config.days):
            lo, hi = pay_bounds[t], pay_bounds[t + 1]
            records = {
                "customers": _customer_records(np.flatnonzero(signup_day == t), bought, traits,
                                               start_epoch),
                "payments": {k: v[lo:hi] for k, v in payments.items()},
            }
            exports = [dirt.export(d, t, records[d]) for d in SPARSE_DOMAINS]
            exports = [e for e in exports if e.domain in config.domains]
            due = [e for e in owed if e.redrop_day == t]
            owed = [e for e in owed if e.redrop_day != t] + [e for e in exports if e.flawed]
            day = config.start + timedelta(days=t)
            for e in exports:
                body = e.flawed if e.flawed is not None else e.records
                content = renderer.file(e.domain, body, e.columns, [] if e.flawed else e.broken)
                write_drop(paths.landing, e.domain, day, {_file_name(e.domain, day): content})
            for e in due + (owed if t == config.days - 1 else []):
                redropped.append((e.domain, config.start + timedelta(days=e.t)))
                when = config.start + timedelta(days=e.t)
                write_drop(paths.landing, e.domain, when, {_file_name(e.domain, when): renderer.file(
                    e.domain, e.records, e.columns, e.broken)})
            if progress:
                progress(t + 1, config.days)
    finally:
        renderer.close()
    counts = dirt.counts
    churned = int(np.isfinite(bought.left_at).sum())
    summary = SimSummary(
        days=config.days, customers=n, start=config.start, churned=churned, churned_explicit=0,
        rows={d: counts[d]["rows"] for d in DOMAINS},
        records={d: counts[d]["records"] for d in DOMAINS},
        dirt={d: {k: counts[d][k] for k in DIRT_KINDS} for d in DOMAINS},
        redropped=tuple(redropped),
        switch_day=None if dirt.switch_day is None or dirt.switch_day >= config.days
        else config.start + timedelta(days=dirt.switch_day),
        until=config.start + timedelta(days=config.days - 1),
        seconds=time.perf_counter() - started,
    )
    _write_truth(paths, config, bought, traits, renderer.customer_ids, summary)
    return summary


def _traits(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def draw(share: np.ndarray) -> np.ndarray:
        return rng.choice(share.size, n, p=share)

    return {
        "segment": draw(V.SEGMENT_SHARE), "region": draw(V.REGION_SHARE),
        "channel": draw(V.ACQUISITION_SHARE), "method": draw(V.PAYMENT_METHOD_SHARE),
        "category": draw(V.CATEGORY_SHARE),
        "first_name": rng.integers(0, len(V.FIRST_NAMES), n),
        "last_name": rng.integers(0, len(V.LAST_NAMES), n),
        "email_domain": rng.integers(0, len(V.EMAIL_DOMAINS), n),
        "phone_number": rng.integers(0, 10**10, n),
    }


def _customer_records(idx: np.ndarray, bought: Purchases, traits: dict, start_epoch: int
                      ) -> Records:
    """Profiles created at checkout of the first purchase, a few minutes before it."""
    signup = start_epoch + np.maximum(bought.first_at[idx].astype(np.int64) - 120, 0)
    return {
        "customer_id": idx, "signup_at": signup, "name": idx, "email": idx, "phone": idx,
        "segment": traits["segment"][idx], "region": traits["region"][idx],
        "acquisition_channel": traits["channel"][idx], "status": np.zeros(idx.size, np.int64),
        "cancelled_at": np.full(idx.size, NULL), "updated_at": signup,
        "email_version": np.zeros(idx.size, np.int64), "email_domain": traits["email_domain"][idx],
    }


def _payment_records(bought: Purchases, traits: dict, start_epoch: int,
                     rng: np.random.Generator) -> Records:
    """One paid charge per purchase; about $12 an item, so quantity follows the value."""
    k, cust = bought.customer.size, bought.customer
    category = np.where(rng.random(k) < 0.6, traits["category"][cust],
                        rng.choice(len(V.CATEGORIES), k, p=V.CATEGORY_SHARE))
    return {
        "transaction_id": np.arange(k, dtype=np.int64), "order_id": np.arange(k, dtype=np.int64),
        "customer_id": cust, "transaction_type": np.zeros(k, np.int64),
        "status": np.zeros(k, np.int64), "amount": bought.cents,
        "currency": V.REGION_CURRENCY[traits["region"][cust]],
        "quantity": 1 + rng.poisson(np.maximum(bought.cents / 1200.0 - 1.0, 0.0)),
        "category": category, "payment_method": traits["method"][cust],
        "created_at": start_epoch + bought.at.astype(np.int64),
        "refund_of_order_id": np.full(k, NULL), "coupon_code": np.full(k, NULL),
    }


def _write_truth(paths: Paths, config: SimConfig, bought: Purchases, traits: dict,
                 customer_ids: pl.Series, summary: SimSummary) -> None:
    paths.truth.mkdir(parents=True, exist_ok=True)
    start = pl.lit(config.start)
    left_day = np.where(np.isfinite(bought.left_at), bought.left_at // DAY + 1, -1).astype(np.int64)
    frame = pl.DataFrame({
        "customer_id": customer_ids.head(config.customers),
        "signup_offset": (bought.first_at // DAY).astype(np.int64),
        "churn_offset": pl.Series(left_day).set(pl.Series(left_day < 0), None),
        "segment": pl.Series(V.SEGMENTS).gather(traits["segment"]),
        "region": pl.Series(V.REGIONS).gather(traits["region"]),
        "acquisition_channel": pl.Series(V.ACQUISITION_CHANNELS).gather(traits["channel"]),
        "purchase_rate_per_day": bought.rate_per_day,
        "dropout_probability": bought.dropout,
        "mean_order_value": bought.mean_value,
    }).with_columns(
        signup_date=(start + pl.duration(days=pl.col("signup_offset"))).cast(pl.Date),
        churn_date=(start + pl.duration(days=pl.col("churn_offset"))).cast(pl.Date),
        churn_kind=pl.when(pl.col("churn_offset").is_not_null()).then(pl.lit("silent")),
    ).select("customer_id", "signup_date", "churn_date", "churn_kind", "segment", "region",
             "acquisition_channel", "purchase_rate_per_day", "dropout_probability",
             "mean_order_value")
    frame.write_parquet(paths.truth / "customers.parquet", statistics=False)
    out = summary.to_dict() | {"preset": "sparse-retail"}
    (paths.truth / "summary.json").write_text(json.dumps(out, indent=1, sort_keys=True))
