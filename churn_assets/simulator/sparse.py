"""The ``sparse-retail`` preset: a catalogue retailer whose customers buy a few times a year.

The default simulator is a dense, engaged business (sessions, tickets and marketing every day);
real retail transaction logs look nothing like it. This preset writes only ``customers`` and
``payments`` and draws the purchase process from the models that describe such logs:

* **Cohort.** Every customer makes a first purchase in the first ``cohort_days`` (a quarter),
  as in the CDNOW sample (the cohort of first-time buyers of the first quarter of 1997).
* **Repeat purchases: BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way"). While active a customer buys at a rate ``lambda ~ Gamma(r, alpha)`` (per week); after
  every repeat purchase they start to leave with probability ``p ~ Beta(a, b)``. The parameters
  are the published estimates on the CDNOW sample (r = 0.243, alpha = 4.414 weeks, a = 0.793,
  b = 2.426).
* **Spend: Gamma-Gamma** (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"):
  each transaction's value ~ Gamma(p, nu) with the customer's ``nu ~ Gamma(q, gamma)``; the
  published CDNOW estimates p = 6.25, q = 3.74, gamma = 15.44 (a mean of about $35 a purchase,
  with a heavy tail across customers, persistent per customer).

A pure BG/NBD world holds nothing a model could learn beyond recency, frequency and age (their
sufficient statistics), so three departures that published retail analyses document are added
(``SparseRetailParams``; ``SparseRetailParams.pure()`` turns them off):

* **Replenishment cycles.** Some customers buy on a rhythm: their gaps are Gamma(k) (Erlang-like)
  rather than exponential, with the same mean, as in the Pareto/GGG model (Platzer & Reutterer
  2016, "Ticking away the moments: timing regularity helps to better predict customer
  activity", Marketing Science 35(5)) and the MBG/CNBD-k model (Reutterer, Platzer & Schroeder
  2021, "Leveraging purchase regularity for predicting customer behavior the easy way", IJRM
  38(1)), who find such regularity in several retail logs. Consumables (beauty, grocery) are
  bought on a cycle more often (60 % of those customers, 20 % of the others).
* **Drifting away before leaving.** Customers do not vanish at the height of their activity: a
  latent relationship state declines first (the hidden Markov model of Netzer, Lattin &
  Srinivasan 2008, "A hidden Markov model of customer relationship dynamics", Marketing Science
  27(2)). BG/NBD's dropout coin starts a fading phase: a third of the usual rate, 30 % smaller
  baskets, and after each such purchase a 50 % chance of leaving for good.
* **A holiday season.** November and December repeat-purchase rates 1.5 times the rest of the
  year's (about 23 % of a year's purchases in those two months; the US National Retail
  Federation puts the holiday season at roughly a fifth of annual retail sales, more for
  gift-driven and online sellers).

The shares and factors of these three are stated assumptions, not estimates from one dataset.
Everything else about a row (region, channel, payment method, quantity) is drawn independently
of the purchase process. There are no refunds, failed payments or cancellations.

Ground truth under ``paths.truth``: ``customers.parquet`` with each customer's true
``purchase_rate_per_day``, ``dropout_probability``, ``mean_order_value``, ``regularity`` (k),
``favourite_category``, ``fading_date`` and ``churn_date`` (the day after the purchase after
which they started to fade / left; null if not), and ``summary.json`` with the parameters.
``true_state``, ``no_purchase_probability`` and ``expected_revenue`` turn that truth into the
oracles of ``lab/evaluate.py``.

The export is dirtied like the default world's (``SimConfig.dirt``), with its own generator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

from churn_assets.ingest.landing import SIMULATOR, write_drop
from churn_assets.settings import DOMAINS, Paths
from churn_assets.simulator import vocab as V
from churn_assets.simulator.config import DirtConfig, SimConfig
from churn_assets.simulator.dirt import Dirt
from churn_assets.simulator.keyed import Keyed
from churn_assets.simulator.records import KEY
from churn_assets.simulator.run import DIRT_KINDS, SimSummary, _file_name
from churn_assets.simulator.schema import NULL, Records
from churn_assets.simulator.writer import Renderer

PRESETS = ("default", "sparse-retail")
SPARSE_DOMAINS = ("customers", "payments")
DAY = 86400
WEEK = 7 * DAY


@dataclass(frozen=True)
class SparseRetailParams:
    """The purchase process. Rates are per week, as published; values in dollars.

    The first block is BG/NBD + Gamma-Gamma with the CDNOW estimates. The second is what a real
    catalogue retailer has and BG/NBD lacks (module docstring); ``pure()`` turns it off."""

    r: float = 0.243
    alpha: float = 4.414
    a: float = 0.793
    b: float = 2.426
    p: float = 6.25
    q: float = 3.74
    gamma: float = 15.44
    cohort_days: int = 84
    # Replenishment buyers: the chance a customer buys on a cycle, by whether their favourite
    # category is a consumable (beauty, grocery) or not; their gaps are Gamma(k) with the same
    # mean as the Poisson buyer's, k ~ 2 + Gamma(2, 2) (mean 6: gaps within ~40 % of the usual).
    regular_share_consumables: float = 0.6
    regular_share_other: float = 0.2
    regularity_shape: tuple[float, float, float] = (2.0, 2.0, 2.0)  # k = first + Gamma(2nd, 3rd)
    # Drifting away: BG/NBD's dropout coin starts a fading phase instead of an instant exit;
    # fading, a customer buys at a third of their rate, spends 30 % less a purchase, and after
    # each such purchase leaves for good with probability ``fade_exit``.
    fading: bool = True
    fade_rate: float = 1 / 3
    fade_value: float = 0.7
    fade_exit: float = 0.5
    # Season: November and December repeat-purchase rates ``peak`` times the rest of the year's,
    # normalised so a calendar year keeps BG/NBD's rate (Nov-Dec ~23 % of a year's purchases).
    peak: float = 1.5

    @classmethod
    def pure(cls) -> SparseRetailParams:
        """The plain BG/NBD + Gamma-Gamma world (the preset before issue 20's second round)."""
        return cls(regular_share_consumables=0.0, regular_share_other=0.0, fading=False,
                   peak=1.0)


# What `simulate --preset sparse-retail` writes to a data root without settings: with the
# default 120 labelled days and a 90-day horizon only ~17 snapshot days could train; and models
# of the observed purchase history reach ~0.77 on this business, below the default floor of
# 0.80 (README, "A sparse business").
SPARSE_SETTINGS = """\
# Written by `churn-assets simulate --preset sparse-retail`: customers who buy a few times a year.
[model]
training_days = 365       # a year of labelled snapshot days...
snapshot_every_days = 7   # ...one a week for training (validation keeps every day)
auc_floor = 0.70          # the gate's floor; models of the purchase history reach ~0.77 here
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
    rate_per_day: np.ndarray  # per customer: lambda while engaged (a calendar year's average)
    dropout: np.ndarray       # per customer: p
    mean_value: np.ndarray    # per customer: E[value of a purchase] while engaged
    regularity: np.ndarray    # per customer: k of their Gamma(k) gaps (1: Poisson)
    fading_at: np.ndarray     # per customer: the purchase after which they fade (NaN: never)
    left_at: np.ndarray       # per customer: the purchase after which they left (NaN: active)


CONSUMABLES = tuple(V.CATEGORIES.index(c) for c in ("beauty", "grocery"))


def season(days: int, start: date, peak: float) -> np.ndarray:
    """Each day's repeat-purchase rate multiplier: ``peak`` in November and December, 1 before
    normalising so that a calendar year averages 1."""
    dates = [start + timedelta(days=t) for t in range(days)]
    holiday = np.array([d.month in (11, 12) for d in dates])
    year = [date(2001, 1, 1) + timedelta(days=t) for t in range(365)]
    share = sum(d.month in (11, 12) for d in year) / 365
    return np.where(holiday, peak, 1.0) / (1.0 + (peak - 1.0) * share)


def season_clock(days: int, start: date, peak: float) -> np.ndarray:
    """Operational time, in days, at the start of each day 0..``days``: the integral of
    ``season``. Gaps between purchases are drawn on this clock."""
    return np.concatenate([[0.0], np.cumsum(season(days, start, peak))])


def draw_purchases(config: SimConfig, params: SparseRetailParams, rng: np.random.Generator,
                   favourite: np.ndarray | None = None) -> Purchases:
    """The history of ``config.customers`` over ``config.days``: BG/NBD + Gamma-Gamma with
    replenishment cycles, a fading phase before leaving and a holiday season (module
    docstring); ``favourite`` is each customer's favourite category (drawn if not given)."""
    n = config.customers
    if favourite is None:
        favourite = rng.choice(len(V.CATEGORIES), n, p=V.CATEGORY_SHARE)
    first = rng.uniform(0, min(params.cohort_days, config.days) * DAY, n)
    rate = rng.gamma(params.r, 1.0 / params.alpha, n) / WEEK  # per second
    dropout = rng.beta(params.a, params.b, n)
    nu = rng.gamma(params.q, 1.0 / params.gamma, n)
    regular_share = np.where(np.isin(favourite, CONSUMABLES), params.regular_share_consumables,
                             params.regular_share_other)
    k0, shape, scale = params.regularity_shape
    k = np.where(rng.random(n) < regular_share, k0 + rng.gamma(shape, scale, n), 1.0)
    # Seasonality as a clock: gaps are drawn in "operational" time, which runs ``season`` times
    # as fast as calendar time, so a renewal process keeps its shape and follows the calendar.
    grid = np.arange(config.days + 1) * float(DAY)
    clock = season_clock(config.days, config.start, params.peak) * DAY
    now = np.interp(first, grid, clock)
    fading_at, left = np.full(n, np.nan), np.full(n, np.nan)
    fading = np.zeros(n, dtype=bool)
    owners, times, faded = [np.arange(n)], [first], [np.zeros(n, dtype=bool)]
    active = np.flatnonzero(rate > 0)
    # One round per repeat purchase: every still-active customer's next purchase (Gamma(k) gap
    # with mean 1 / rate, or 1 / (rate x fade_rate) once fading), then the coins. Rounds end
    # when nobody is active inside the window.
    while active.size:
        slow = np.where(fading[active], params.fade_rate, 1.0)
        kk = k[active]
        now[active] += rng.gamma(kk, 1.0 / (kk * rate[active] * slow))
        active = active[now[active] < clock[-1]]
        at = np.interp(now[active], clock, grid)
        owners.append(active)
        times.append(at)
        faded.append(fading[active].copy())
        coin = rng.random(active.size)
        leaves = np.where(fading[active], coin < params.fade_exit, coin < dropout[active])
        if params.fading:
            starts = leaves & ~fading[active]
            fading[active[starts]] = True
            fading_at[active[starts]] = at[starts]
            leaves &= ~starts
        left[active[leaves]] = at[leaves]
        active = active[~leaves]
    customer, at, faded = np.concatenate(owners), np.concatenate(times), np.concatenate(faded)
    order = np.lexsort((customer, at))
    customer, at, faded = customer[order], at[order], faded[order]
    value = rng.gamma(params.p, 1.0 / nu[customer]) * np.where(faded, params.fade_value, 1.0)
    cents = np.maximum(np.rint(value * 100), 1).astype(np.int64)
    return Purchases(customer, at, cents, first, rate * DAY, dropout, params.p / nu, k,
                     fading_at, left)


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
    n = config.customers
    traits = _traits(n, rng)
    bought = draw_purchases(config, params, rng, traits["category"])
    start_epoch = (config.start - date(1970, 1, 1)).days * DAY
    renderer = Renderer(n, start_epoch, {k: traits[k] for k in
                                         ("first_name", "last_name", "region", "phone_number")})
    dirt = Dirt(config.dirt, config.days, Keyed(int(dirt_seed.generate_state(1, np.uint64)[0])))
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
                write_drop(paths.landing, e.domain, day, {_file_name(e.domain, day): content},
                           source=SIMULATOR)
            for e in due + (owed if t == config.days - 1 else []):
                redropped.append((e.domain, config.start + timedelta(days=e.t)))
                when = config.start + timedelta(days=e.t)
                write_drop(paths.landing, e.domain, when, {_file_name(e.domain, when): renderer.file(
                    e.domain, e.records, e.columns, e.broken)}, source=SIMULATOR)
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
    _write_truth(paths, config, params, bought, traits, renderer.customer_ids, summary)
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
        KEY: idx, "customer_id": idx, "signup_at": signup, "name": idx, "email": idx, "phone": idx,
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
        KEY: np.arange(k, dtype=np.int64),
        "transaction_id": np.arange(k, dtype=np.int64), "order_id": np.arange(k, dtype=np.int64),
        "customer_id": cust, "transaction_type": np.zeros(k, np.int64),
        "status": np.zeros(k, np.int64), "amount": bought.cents,
        "currency": V.REGION_CURRENCY[traits["region"][cust]],
        "quantity": 1 + rng.poisson(np.maximum(bought.cents / 1200.0 - 1.0, 0.0)),
        "category": category, "payment_method": traits["method"][cust],
        "created_at": start_epoch + bought.at.astype(np.int64),
        "refund_of_order_id": np.full(k, NULL), "coupon_code": np.full(k, NULL),
    }


def _write_truth(paths: Paths, config: SimConfig, params: SparseRetailParams, bought: Purchases,
                 traits: dict,
                 customer_ids: pl.Series, summary: SimSummary) -> None:
    paths.truth.mkdir(parents=True, exist_ok=True)
    start = pl.lit(config.start)
    left_day = np.where(np.isfinite(bought.left_at), bought.left_at // DAY + 1, -1).astype(np.int64)
    fade_day = np.where(np.isfinite(bought.fading_at), bought.fading_at // DAY + 1, -1
                        ).astype(np.int64)
    frame = pl.DataFrame({
        "customer_id": customer_ids.head(config.customers),
        "signup_offset": (bought.first_at // DAY).astype(np.int64),
        "churn_offset": pl.Series(left_day).set(pl.Series(left_day < 0), None),
        "fading_offset": pl.Series(fade_day).set(pl.Series(fade_day < 0), None),
        "segment": pl.Series(V.SEGMENTS).gather(traits["segment"]),
        "region": pl.Series(V.REGIONS).gather(traits["region"]),
        "acquisition_channel": pl.Series(V.ACQUISITION_CHANNELS).gather(traits["channel"]),
        "purchase_rate_per_day": bought.rate_per_day,
        "dropout_probability": bought.dropout,
        "mean_order_value": bought.mean_value,
        "regularity": bought.regularity,
        "favourite_category": pl.Series(V.CATEGORIES).gather(traits["category"]),
    }).with_columns(
        signup_date=(start + pl.duration(days=pl.col("signup_offset"))).cast(pl.Date),
        churn_date=(start + pl.duration(days=pl.col("churn_offset"))).cast(pl.Date),
        fading_date=(start + pl.duration(days=pl.col("fading_offset"))).cast(pl.Date),
        churn_kind=pl.when(pl.col("churn_offset").is_not_null()).then(pl.lit("silent")),
    ).select("customer_id", "signup_date", "churn_date", "churn_kind", "segment", "region",
             "acquisition_channel", "favourite_category", "purchase_rate_per_day",
             "dropout_probability", "mean_order_value", "regularity", "fading_date")
    frame.write_parquet(paths.truth / "customers.parquet", statistics=False)
    out = summary.to_dict() | {"preset": "sparse-retail", "params": asdict(params)}
    (paths.truth / "summary.json").write_text(json.dumps(out, indent=1, sort_keys=True))


# ---------------------------------------------------------------- what the truth implies
# For ``lab/evaluate.py``'s oracles: the best any model could do knowing each customer's latent
# state (engaged, fading or gone; rate; regularity) on top of what the data shows.


@dataclass(frozen=True)
class TrueState:
    """Per row: the customer's state at the end of a snapshot day ``D``. Times are on the
    season clock, in days; ``since`` is the clock time since the last purchase (visible in the
    data: ``days_since_last_order``), ``rate`` the current per-day rate (0 once gone)."""

    since: np.ndarray
    rate: np.ndarray
    regularity: np.ndarray
    fading: np.ndarray
    gone: np.ndarray
    value: np.ndarray      # E[value of a purchase] while engaged
    dropout: np.ndarray
    window: np.ndarray     # clock time of (D, D + horizon]


def true_state(truth: pl.DataFrame, rows: pl.DataFrame, horizon: int, start: date, days: int,
               params: SparseRetailParams) -> TrueState:
    """``rows`` (``snapshot_date``, ``customer_id``, ``days_since_last_order``) joined to the
    truth of ``simulate_sparse`` over a history of ``days`` from ``start``."""
    joined = rows.select("snapshot_date", "customer_id", "days_since_last_order").join(
        truth, on="customer_id", how="left")
    clock = season_clock(days, start, params.peak)
    d = (joined["snapshot_date"] - start).dt.total_days().to_numpy() + 1.0  # end of D
    last = d - 1.0 - joined["days_since_last_order"].fill_null(0).to_numpy() + 0.5  # mid-day
    end = np.minimum(d + horizon, days)
    snapshot = joined["snapshot_date"]

    def by(column: str) -> np.ndarray:
        return (joined[column].is_not_null() & (joined[column] <= snapshot)).to_numpy()

    gone, fading = by("churn_date"), by("fading_date")
    rate = joined["purchase_rate_per_day"].fill_null(0.0).to_numpy()
    rate = np.where(gone, 0.0, np.where(fading, rate * params.fade_rate, rate))
    value = joined["mean_order_value"].fill_null(0.0).to_numpy()
    return TrueState(
        since=np.interp(d, np.arange(days + 1), clock) - np.interp(last, np.arange(days + 1),
                                                                   clock),
        rate=rate, regularity=joined["regularity"].fill_null(1.0).to_numpy(),
        fading=fading, gone=gone,
        value=value,
        dropout=joined["dropout_probability"].fill_null(1.0).to_numpy(),
        window=np.interp(end, np.arange(days + 1), clock) - np.interp(d, np.arange(days + 1),
                                                                       clock))


def no_purchase_probability(state: TrueState) -> np.ndarray:
    """P(no purchase in the window): the Gamma(k) gap outlasts the window given that it has
    already lasted ``since``; 1 once gone."""
    from scipy.stats import gamma

    alive = state.rate > 0
    k = state.regularity[alive]
    scale = 1.0 / (k * state.rate[alive])
    since = np.maximum(state.since[alive], 0.0)
    out = np.ones(state.rate.size)
    out[alive] = np.exp(gamma.logsf(since + state.window[alive], k, scale=scale)
                        - gamma.logsf(since, k, scale=scale))
    return np.clip(out, 0.0, 1.0)


def expected_revenue(state: TrueState, params: SparseRetailParams, runs: int = 200,
                     seed: int = 0) -> np.ndarray:
    """E[revenue in the window] per row, by simulating each customer's next purchases from
    their true state ``runs`` times (the first gap conditioned on having lasted ``since``)."""
    from scipy.stats import gamma

    rng = np.random.default_rng(seed)
    rows = np.repeat(np.flatnonzero(state.rate > 0), runs)
    revenue = np.zeros(state.rate.size)
    k, rate, fading = state.regularity[rows], state.rate[rows], state.fading[rows].copy()
    base_rate = np.where(fading, rate / params.fade_rate, rate)
    mean = state.value[rows]
    scale = 1.0 / (k * rate)
    survive = gamma.sf(np.maximum(state.since[rows], 0.0), k, scale=scale)
    gap = gamma.isf(rng.random(rows.size) * survive, k, scale=scale) - state.since[rows]
    elapsed, live = np.maximum(gap, 0.0), np.ones(rows.size, dtype=bool)
    while True:
        live &= elapsed <= state.window[rows]
        if not live.any():
            break
        np.add.at(revenue, rows[live], mean[live] * np.where(fading[live], params.fade_value, 1))
        coin = rng.random(rows.size)
        leaves = np.where(fading, coin < params.fade_exit, coin < state.dropout[rows])
        if params.fading:
            starts = leaves & ~fading & live
            fading |= starts
            leaves &= ~starts
        live &= ~leaves
        speed = base_rate * np.where(fading, params.fade_rate, 1.0)
        elapsed = elapsed + rng.gamma(k, 1.0 / (k * np.maximum(speed, 1e-300)))
    return revenue / runs
