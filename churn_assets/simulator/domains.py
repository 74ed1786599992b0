"""Turn one day's plan into each domain's records (``schema.Records``): vectorized numpy.

Events come first because orders happen inside sessions; payments next because offer
redemptions are orders; marketing last because it reports those redemptions.
"""

from __future__ import annotations

import numpy as np

from churn_assets.simulator import vocab as V
from churn_assets.simulator.keyed import categorical, exponential, integers, poisson
from churn_assets.simulator.records import KEY, customer_rows, marketing_rows, ticket_rows
from churn_assets.simulator.schema import NULL, Records, nullable
from churn_assets.simulator.state import (
    CATEGORY_PRICE,
    MAX_EVENTS,
    OWN_CATEGORY_SHARE,
    PRICE_SIGMA,
    QUANTITY_MEAN,
    SEGMENT_PRICE,
    BusinessState,
    DayPlan,
    sigmoid,
)

LAST_SECOND = 86399
# Transaction items of one customer-day: charges by rank, their retries, the refund.
RETRY_ITEM, REFUND_ITEM = 16, 32


def within_day(state: BusinessState, t: int, customers: np.ndarray, sec: np.ndarray) -> np.ndarray:
    """Move times of day after the signup moment for customers who sign up today."""
    lo = np.where(state.signup_day[customers] == t, state.signup_sec[customers], 0)
    return lo + (sec * (86400 - lo)) // 86400


def build_day(state: BusinessState, plan: DayPlan) -> dict[str, Records]:
    """Every domain's clean records for day ``plan.t``. Each record carries ``#key``, an id
    unique within its domain over the history, made from (day, customer, item), on which dirt
    keys its draws."""
    events, session_start, first_session = _events(state, plan)
    payments, redeemed = _payments(state, plan, session_start, first_session)
    return {
        "customers": customer_rows(state, plan),
        "payments": payments,
        "events": events,
        "tickets": ticket_rows(state, plan),
        "marketing": marketing_rows(state, plan, redeemed),
    }


def _rank(counts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each item's index among its owner's items, for items laid out owner by owner."""
    return np.arange(owner.size) - (np.cumsum(counts) - counts)[owner]


def _events(state: BusinessState, plan: DayPlan):
    t, sessions, k = plan.t, plan.sessions, state.keyed
    sess_cust = np.repeat(np.arange(state.n), sessions)
    n_sess = sess_cust.size
    sess_rank = _rank(sessions, sess_cust)
    u_hour, u_second, u_own, u_device = k.lanes("session", t, sess_cust, sess_rank)
    hour = categorical(u_hour, V.HOUR_SHARE)
    second = integers(u_second, 0, 3600)
    start = within_day(state, t, sess_cust, hour * 3600 + second)
    per_session = 1 + poisson(k.uniform("session.events", t, sess_cust, sess_rank),
                              1.0 + 2.5 * sigmoid(state.e[sess_cust]), MAX_EVENTS - 1)
    ev_sess = np.repeat(np.arange(n_sess), per_session)
    n_ev = ev_sess.size
    first_event = np.cumsum(per_session) - per_session
    position = np.arange(n_ev) - first_event[ev_sess]
    ev_cust = sess_cust[ev_sess]
    ev_item = sess_rank[ev_sess] * MAX_EVENTS + position
    # One draw per event: its gap (two lanes, 32 bits), its type, its page or feature.
    u_gap_low, u_gap_high, u_type, u_detail = k.lanes("event", t, ev_cust, ev_item)
    u_gap = u_gap_high + (u_gap_low - 0.5) * 2.0**-16
    gaps = np.where(position == 0, 0, exponential(u_gap, 45.0).astype(np.int64) + 1)
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[first_event][ev_sess]
    etype = np.where(position == 0, 0, categorical(u_type, V.EVENT_TYPE_SHARE))
    page = np.where(etype == 1, categorical(u_detail, V.PAGE_SHARE), NULL)
    feature = np.where(etype == 3, categorical(u_detail, V.FEATURE_SHARE), NULL)
    own = u_own < 0.8
    device = np.where(own, state.device[sess_cust], integers(u_device, 0, len(V.DEVICES)))
    event_ids = state.record_ids("event", t, ev_cust, ev_item)
    records = {
        "event_id": event_ids,
        "customer_id": ev_cust,
        "session_id": state.record_ids("session", t, sess_cust, sess_rank)[ev_sess],
        "event_type": etype,
        "feature": feature,
        "page": page,
        "occurred_at": state.day_epoch(t) + np.minimum(start[ev_sess] + elapsed, LAST_SECOND),
        "device": device[ev_sess],
        KEY: event_ids,
    }
    return records, start, np.cumsum(sessions) - sessions


def _payments(state: BusinessState, plan: DayPlan, session_start, first_session):
    """Charges (a failed first attempt may be retried once), then refunds of earlier orders.

    Refunds are ``transaction_type=refund``, ``status=refunded``, with a negative ``amount``
    (money back), a positive ``quantity`` (items returned), and both ``order_id`` and
    ``refund_of_order_id`` naming the refunded order, paid on an earlier day by the same customer.
    """
    t, orders, k = plan.t, plan.orders, state.keyed
    cust = np.repeat(np.arange(state.n), orders)
    size = cust.size
    rank = _rank(orders, cust)
    session = first_session[cust] + (k.uniform("order.session", t, cust, rank)
                                     * plan.sessions[cust]).astype(np.int64)
    wait = exponential(k.uniform("order.wait", t, cust, rank), 600.0).astype(np.int64)
    created = np.minimum(session_start[session] + wait, LAST_SECOND)
    failed, retried = rank < plan.failed[cust], rank < plan.retried[cust]
    recovered = rank < plan.recovered[cust]
    paid = ~failed | recovered
    own = k.uniform("order.own_category", t, cust, rank) < OWN_CATEGORY_SHARE
    other = categorical(k.uniform("order.category", t, cust, rank), V.CATEGORY_SHARE)
    category = np.where(own, state.category[cust], other)
    quantity = 1 + poisson(k.uniform("order.quantity", t, cust, rank), QUANTITY_MEAN, 20)
    unit = (SEGMENT_PRICE[state.segment[cust]] * CATEGORY_PRICE[category]
            * np.exp(PRICE_SIGMA * k.normal("order.price", t, cust, rank)))
    # A customer's first order of the day may redeem a live offer (price-sensitive ones more).
    live = (state.offer_stem[cust] >= 0) & (state.offer_expiry[cust] >= t) & (rank == 0)
    redeem = live & paid & (k.uniform("order.redeem", t, cust, rank)
                            < 0.3 + 0.5 * state.price_sensitivity[cust])
    discount = np.where(redeem, state.offer_pct[cust], 0)
    cents = np.rint(unit * quantity * (100 - discount)).astype(np.int64)
    coupon = nullable(state.offer_stem[cust] * 100 + state.offer_pct[cust], redeem)
    order_ids = state.record_ids("order", t, cust, rank)
    r_cust, r_rank = cust[retried], rank[retried]
    n_retry = r_cust.size
    retry_at = np.minimum(created[retried] + integers(k.uniform("retry.delay", t, r_cust, r_rank),
                                                      300, 3 * 3600), LAST_SECOND)
    switch = k.uniform("retry.switch", t, r_cust, r_rank) < 0.4
    any_method = categorical(k.uniform("retry.method", t, r_cust, r_rank), V.PAYMENT_METHOD_SHARE)
    retry_method = np.where(switch, any_method, state.method[r_cust])
    final_at = created.copy()
    final_at[retried] = retry_at

    refunders, share = plan.refunds, plan.refund_share
    refund_order = state.last_paid_order[refunders]
    refund_cents = -np.rint(state.last_paid_cents[refunders] * share).astype(np.int64)
    refund_qty = np.maximum(1, np.floor(state.last_paid_quantity[refunders] * share)).astype(np.int64)
    refund_at = integers(k.uniform("refund.time", t, refunders), 0, 86400)
    refund_cat = state.last_paid_category[refunders]
    state.forget_refunded(refunders)
    state.record_paid_orders(t, cust[paid], order_ids[paid], cents[paid], quantity[paid])
    state.last_paid_category[cust[paid]] = category[paid]

    sizes = [size, n_retry, refunders.size]
    payer = np.concatenate([cust, r_cust, refunders])
    items = np.concatenate([rank, RETRY_ITEM + r_rank, np.full(refunders.size, REFUND_ITEM)])
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
        "refund_of_order_id": np.concatenate([np.full(size + n_retry, NULL), refund_order]),
        "coupon_code": np.concatenate([coupon, coupon[retried], np.full(refunders.size, NULL)]),
        "transaction_id": state.record_ids("txn", t, payer, items),
    }
    # Rows in time order; ties keep the customer order, so one customer's rows never move another's.
    order = np.argsort(rows["created_at"], kind="stable")
    records = {"transaction_id": rows.pop("transaction_id")[order]}
    records.update({name: values[order] for name, values in rows.items()})
    records[KEY] = records["transaction_id"]
    redeemed = {"cust": cust[redeem], "at": final_at[redeem], "coupon": coupon[redeem]}
    state.offer_stem[cust[redeem]] = -1
    return records, redeemed
