"""Customers (with PII), support tickets and marketing interactions for one day, as records."""

from __future__ import annotations

import numpy as np

from churn_assets.simulator import vocab as V
from churn_assets.simulator.schema import NULL, Records, nullable
from churn_assets.simulator.state import (
    LOYALTY_PCT,
    OFFER_DAYS,
    VOUCHER_PCT,
    BusinessState,
    DayPlan,
    draw,
    sigmoid,
)

DISCOUNTS = np.array([10, 15, 20, 25])


def customer_rows(state: BusinessState, plan: DayPlan, rng: np.random.Generator) -> Records:
    """Day 0 exports everyone who signed up before the start; later days hold signups, profile
    changes (segment, email) and explicit cancellations, each as the customer's full record."""
    t = plan.t
    export = np.flatnonzero(state.signup_day < 0) if t == 0 else np.empty(0, np.int64)
    cancelled = plan.churned[plan.churned_explicit]
    changed = np.concatenate([plan.segment_changes, plan.email_changes])
    idx = np.concatenate([export, plan.signups, changed, cancelled])
    at = np.concatenate([
        rng.integers(0, 3600, export.size),
        state.signup_sec[plan.signups],
        rng.integers(0, 86400, changed.size + cancelled.size),
    ])
    is_cancel = (np.arange(idx.size) >= idx.size - cancelled.size).astype(np.int64)
    updated = state.day_epoch(t) + at
    return {
        "customer_id": idx,
        "signup_at": state.start_epoch + 86400 * state.signup_day[idx] + state.signup_sec[idx],
        "name": idx,
        "email": idx,
        "phone": idx,
        "segment": state.segment[idx],
        "region": state.region[idx],
        "acquisition_channel": state.channel[idx],
        "status": is_cancel,
        "cancelled_at": nullable(updated, is_cancel == 1),
        "updated_at": updated,
        "email_version": state.email_version[idx],
        "email_domain": state.email_domain[idx],
    }


def ticket_rows(state: BusinessState, plan: DayPlan) -> Records:
    """Tickets opened today as known tonight, plus earlier tickets resolved today (same id,
    now with resolution and CSAT): the natural update of a ticket record."""
    end = state.day_epoch(plan.t + 1)
    earlier = plan.tickets_resolved[~np.isin(plan.tickets_resolved, plan.tickets_opened)]
    idx = np.concatenate([plan.tickets_opened, earlier])
    opened, responded = state.ticket_opened[idx], state.ticket_responded[idx]
    resolved, csat = state.ticket_resolved[idx], state.ticket_csat[idx]
    knows_response, knows_resolution = responded < end, resolved < end
    return {
        "ticket_id": state.ticket_id[idx],
        "customer_id": idx,
        "category": state.ticket_category[idx],
        "priority": state.ticket_priority[idx],
        "channel": state.ticket_channel[idx],
        "opened_at": opened,
        "first_response_at": nullable(responded, knows_response),
        "resolved_at": nullable(resolved, knows_resolution),
        "csat": nullable(csat, knows_resolution & (csat > 0)),
        "updated_at": np.where(knows_resolution, resolved, np.where(knows_response, responded, opened)),
    }


def marketing_rows(state: BusinessState, plan: DayPlan, rng: np.random.Generator, redeemed) -> Records:
    """Campaign sends (or offers), opens and clicks; retention actions; offer redemptions.

    Silent churners still receive sends (the business does not know they left) but never open;
    customers who cancelled explicitly are unsubscribed.
    """
    t, n = plan.t, state.n
    reachable = (state.signup_day < t) & ~state.churn_explicit
    blocks = []
    for k in range(1 + int(rng.random() < 0.5) + int(t % 7 == 0)):
        channel = int(draw(rng, V.MARKETING_CHANNEL_SHARE, 1)[0])
        share, offer = rng.uniform(0.03, 0.15), rng.random() < 0.3
        pct, hour = int(rng.choice(DISCOUNTS)), int(rng.integers(7, 20))
        who = np.flatnonzero(reachable & (rng.random(n) < share))
        sent = hour * 3600 + rng.integers(0, 1800, who.size)
        engaged = sigmoid(state.e[who])
        p_open = V.MARKETING_OPEN_BASE[channel] + 0.35 * engaged
        opened = state.alive[who] & (rng.random(who.size) < p_open)
        clicked = opened & (rng.random(who.size) < 0.1 + 0.3 * engaged)
        open_at = np.minimum(sent + rng.exponential(3 * 3600, who.size).astype(np.int64), 86399)
        click_at = np.minimum(open_at + rng.exponential(120, who.size).astype(np.int64) + 1, 86399)
        campaign = t * 10 + k
        blocks.append((who, sent, 3 if offer else 0, pct if offer else NULL, campaign, channel))
        blocks.append((who[opened], open_at[opened], 1, NULL, campaign, channel))
        blocks.append((who[clicked], click_at[clicked], 2, NULL, campaign, channel))
        if offer:
            keep = who[state.alive[who]]
            state.grant_offers(keep, 0, pct, t + OFFER_DAYS)
            state.offer_campaign[keep], state.offer_channel[keep] = campaign, channel
    acts, codes = plan.action_customers, plan.action_codes
    act_coupon = np.array([100 + VOUCHER_PCT, NULL, 200 + LOYALTY_PCT])[codes]
    act_at = 9 * 3600 + rng.integers(0, 3600, acts.size)
    blocks.append((acts, act_at, np.where(codes == 1, 0, 3), act_coupon, -1 - codes, 0))
    offered = acts[codes != 1]
    state.offer_campaign[offered], state.offer_channel[offered] = -1 - codes[codes != 1], 0
    cust = redeemed["cust"]
    blocks.append((cust, redeemed["at"], 4, redeemed["coupon"], state.offer_campaign[cust],
                   state.offer_channel[cust]))
    cols = [np.concatenate([np.broadcast_to(b[j], b[0].shape) for b in blocks]) for j in range(6)]
    order = np.argsort(cols[1], kind="stable")
    who, at, kind, coupon, campaign, channel = (np.asarray(c[order], dtype=np.int64) for c in cols)
    return {
        "interaction_id": state.take_ids("mkt", who.size),
        "customer_id": who,
        "campaign_id": campaign,
        "channel": channel,
        "interaction_type": kind,
        "offer_code": coupon,
        "discount_pct": np.where(coupon == NULL, NULL, coupon % 100),
        "occurred_at": state.day_epoch(t) + at,
    }
