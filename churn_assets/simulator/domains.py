"""Turn one day's plan into each domain's records (``schema.Records``): vectorized numpy.

Events come first because orders happen inside sessions; payments next because offer
redemptions are orders; marketing last because it reports those redemptions.
"""

from __future__ import annotations

import numpy as np

from churn_assets.simulator import vocab as V
from churn_assets.simulator.records import customer_rows, marketing_rows, ticket_rows
from churn_assets.simulator.schema import NULL, Records, nullable
from churn_assets.simulator.state import BusinessState, DayPlan, draw, sigmoid

SEGMENT_PRICE = np.array([28.0, 42.0, 65.0])
CATEGORY_PRICE = np.array([2.2, 1.0, 1.3, 0.7, 1.2, 0.5, 0.6])
LAST_SECOND = 86399


def within_day(state: BusinessState, t: int, customers: np.ndarray, sec: np.ndarray) -> np.ndarray:
    """Move times of day after the signup moment for customers who sign up today."""
    lo = np.where(state.signup_day[customers] == t, state.signup_sec[customers], 0)
    return lo + (sec * (86400 - lo)) // 86400


def build_day(state: BusinessState, plan: DayPlan, rng: np.random.Generator) -> dict[str, Records]:
    """Every domain's clean records for day ``plan.t``."""
    events, session_start, first_session = _events(state, plan, rng)
    payments, redeemed = _payments(state, plan, rng, session_start, first_session)
    return {
        "customers": customer_rows(state, plan, rng),
        "payments": payments,
        "events": events,
        "tickets": ticket_rows(state, plan),
        "marketing": marketing_rows(state, plan, rng, redeemed),
    }


def _events(state: BusinessState, plan: DayPlan, rng: np.random.Generator):
    t, sessions = plan.t, plan.sessions
    sess_cust = np.repeat(np.arange(state.n), sessions)
    n_sess = sess_cust.size
    hour = draw(rng, V.HOUR_SHARE, n_sess)
    start = within_day(state, t, sess_cust, hour * 3600 + rng.integers(0, 3600, n_sess))
    per_session = 1 + rng.poisson(1.0 + 2.5 * sigmoid(state.e[sess_cust]))
    ev_sess = np.repeat(np.arange(n_sess), per_session)
    n_ev = ev_sess.size
    first_event = np.cumsum(per_session) - per_session
    position = np.arange(n_ev) - first_event[ev_sess]
    gaps = np.where(position == 0, 0, rng.exponential(45.0, n_ev).astype(np.int64) + 1)
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[first_event][ev_sess]
    etype = np.where(position == 0, 0, draw(rng, V.EVENT_TYPE_SHARE, n_ev))
    page = np.full(n_ev, NULL)
    page[etype == 1] = draw(rng, V.PAGE_SHARE, int((etype == 1).sum()))
    feature = np.full(n_ev, NULL)
    feature[etype == 3] = draw(rng, V.FEATURE_SHARE, int((etype == 3).sum()))
    own = rng.random(n_sess) < 0.8
    device = np.where(own, state.device[sess_cust], rng.integers(0, len(V.DEVICES), n_sess))
    records = {
        "event_id": state.take_ids("event", n_ev),
        "customer_id": sess_cust[ev_sess],
        "session_id": state.take_ids("session", n_sess)[ev_sess],
        "event_type": etype,
        "feature": feature,
        "page": page,
        "occurred_at": state.day_epoch(t) + np.minimum(start[ev_sess] + elapsed, LAST_SECOND),
        "device": device[ev_sess],
    }
    return records, start, np.cumsum(sessions) - sessions


def _payments(state: BusinessState, plan: DayPlan, rng, session_start, first_session):
    """Charges (a failed first attempt may be retried once), then refunds of earlier orders.

    Refunds are ``transaction_type=refund``, ``status=refunded``, with a negative ``amount``
    (money back), a positive ``quantity`` (items returned), and both ``order_id`` and
    ``refund_of_order_id`` naming the refunded order, paid on an earlier day by the same customer.
    """
    t, orders = plan.t, plan.orders
    cust = np.repeat(np.arange(state.n), orders)
    k = cust.size
    rank = np.arange(k) - (np.cumsum(orders) - orders)[cust]
    session = first_session[cust] + (rng.random(k) * plan.sessions[cust]).astype(np.int64)
    wait = rng.exponential(600.0, k).astype(np.int64)
    created = np.minimum(session_start[session] + wait, LAST_SECOND)
    failed, retried = rank < plan.failed[cust], rank < plan.retried[cust]
    recovered = rank < plan.recovered[cust]
    paid = ~failed | recovered
    category = np.where(rng.random(k) < 0.6, state.category[cust], draw(rng, V.CATEGORY_SHARE, k))
    quantity = 1 + rng.poisson(0.5, k)
    unit = SEGMENT_PRICE[state.segment[cust]] * CATEGORY_PRICE[category] * rng.lognormal(0, 0.55, k)
    # A customer's first order of the day may redeem a live offer (price-sensitive ones more).
    live = (state.offer_stem[cust] >= 0) & (state.offer_expiry[cust] >= t) & (rank == 0)
    redeem = live & paid & (rng.random(k) < 0.3 + 0.5 * state.price_sensitivity[cust])
    discount = np.where(redeem, state.offer_pct[cust], 0)
    cents = np.rint(unit * quantity * (100 - discount)).astype(np.int64)
    coupon = nullable(state.offer_stem[cust] * 100 + state.offer_pct[cust], redeem)
    order_ids = state.take_ids("order", k)
    n_retry = int(retried.sum())
    retry_at = np.minimum(created[retried] + rng.integers(300, 3 * 3600, n_retry), LAST_SECOND)
    switch = rng.random(n_retry) < 0.4
    any_method = draw(rng, V.PAYMENT_METHOD_SHARE, n_retry)
    retry_method = np.where(switch, any_method, state.method[cust[retried]])
    final_at = created.copy()
    final_at[retried] = retry_at

    refunders, share = plan.refunds, plan.refund_share
    refund_order = state.last_paid_order[refunders]
    refund_cents = -np.rint(state.last_paid_cents[refunders] * share).astype(np.int64)
    refund_qty = np.maximum(1, np.floor(state.last_paid_quantity[refunders] * share)).astype(np.int64)
    refund_at = rng.integers(0, 86400, refunders.size)
    refund_cat = state.last_paid_category[refunders]
    state.forget_refunded(refunders)
    state.record_paid_orders(t, cust[paid], order_ids[paid], cents[paid], quantity[paid])
    state.last_paid_category[cust[paid]] = category[paid]

    sizes = [k, n_retry, refunders.size]
    payer = np.concatenate([cust, cust[retried], refunders])
    rows = {
        "order_id": np.concatenate([order_ids, order_ids[retried], refund_order]),
        "customer_id": payer,
        "transaction_type": np.repeat([0, 0, 1], sizes),
        "status": np.concatenate([failed.astype(np.int64), np.where(recovered[retried], 0, 1),
                                  np.full(refunders.size, 2)]),
        "amount": np.concatenate([cents, cents[retried], refund_cents]),
        "currency": V.REGION_CURRENCY[state.region[payer]],
        "quantity": np.concatenate([quantity, quantity[retried], refund_qty]),
        "category": np.concatenate([category, category[retried], refund_cat]),
        "payment_method": np.concatenate([state.method[cust], retry_method, state.method[refunders]]),
        "created_at": np.concatenate([created, retry_at, refund_at]) + state.day_epoch(t),
        "refund_of_order_id": np.concatenate([np.full(k + n_retry, NULL), refund_order]),
        "coupon_code": np.concatenate([coupon, coupon[retried], np.full(refunders.size, NULL)]),
    }
    order = np.argsort(rows["created_at"], kind="stable")
    records = {"transaction_id": state.take_ids("txn", order.size)}
    records.update({name: values[order] for name, values in rows.items()})
    redeemed = {"cust": cust[redeem], "at": final_at[redeem], "coupon": coupon[redeem]}
    state.offer_stem[cust[redeem]] = -1
    return records, redeemed
