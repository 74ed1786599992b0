"""Customers (with PII), support tickets and marketing interactions for one day, as records."""

from __future__ import annotations

import numpy as np

from churn_assets.simulator import vocab as V
from churn_assets.simulator.keyed import categorical, exponential, integers
from churn_assets.simulator.schema import NULL, Records, nullable
from churn_assets.simulator.state import (
    LOYALTY_PCT,
    OFFER_DAYS,
    VOUCHER_PCT,
    BusinessState,
    DayPlan,
    sigmoid,
)

DISCOUNTS = np.array([10, 15, 20, 25])
# The aux array of every domain's records that keys dirt: unique within the domain.
KEY = "#key"
# Why a customer record is written (its item in the key): export, signup, segment or email
# change, cancellation.
PROFILE_ITEMS = 8
# Marketing items of one customer-day: campaign block b's send/open/click are 3b .. 3b + 2.
ACTION_ITEM, REDEMPTION_ITEM = 9, 10


def customer_rows(state: BusinessState, plan: DayPlan) -> Records:
    """Day 0 exports everyone who signed up before the start; later days hold signups, profile
    changes (segment, email) and explicit cancellations, each as the customer's full record."""
    t, k = plan.t, state.keyed
    export = np.flatnonzero(state.signup_day < 0) if t == 0 else np.empty(0, np.int64)
    cancelled = plan.churned[plan.churned_explicit]
    idx = np.concatenate([export, plan.signups, plan.segment_changes, plan.email_changes, cancelled])
    item = np.repeat(np.arange(5), [export.size, plan.signups.size, plan.segment_changes.size,
                                    plan.email_changes.size, cancelled.size])
    at = np.where(item == 0, integers(k.uniform("profile.export_time", t, idx), 0, 3600),
                  integers(k.uniform("profile.time", t, idx, item), 0, 86400))
    at = np.where(item == 1, state.signup_sec[idx], at)
    is_cancel = (item == 4).astype(np.int64)
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
        KEY: (t * state.n + idx) * PROFILE_ITEMS + item,
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
        # A ticket is in a day's drop at most once (opened, or resolved later).
        KEY: state.ticket_id[idx],
    }


def marketing_rows(state: BusinessState, plan: DayPlan, redeemed) -> Records:
    """Campaign sends (or offers), opens and clicks; retention actions; offer redemptions.

    Silent churners still receive sends (the business does not know they left) but never open;
    customers who cancelled explicitly are unsubscribed. Who a campaign reaches is drawn for
    every customer index, so it never depends on who else exists or was treated.
    """
    t, n, k = plan.t, state.n, state.keyed
    reachable = (state.signup_day < t) & ~state.churn_explicit
    campaigns = k.rng("campaigns", t)
    blocks = []
    for b in range(1 + int(campaigns.random() < 0.5) + int(t % 7 == 0)):
        plan_b = k.rng("campaign", t, b)
        channel = int(draw_one(plan_b, V.MARKETING_CHANNEL_SHARE))
        share, offer = plan_b.uniform(0.03, 0.15), plan_b.random() < 0.3
        pct, hour = int(plan_b.choice(DISCOUNTS)), int(plan_b.integers(7, 20))
        who = np.flatnonzero(reachable & (k.rng("campaign.audience", t, b).random(n) < share))
        item = 3 * b
        sent = hour * 3600 + integers(k.uniform("mkt.sent", t, who, item), 0, 1800)
        engaged = sigmoid(state.e[who])
        p_open = V.MARKETING_OPEN_BASE[channel] + 0.35 * engaged
        opened = state.alive[who] & (k.uniform("mkt.open", t, who, item) < p_open)
        clicked = opened & (k.uniform("mkt.click", t, who, item) < 0.1 + 0.3 * engaged)
        open_at = np.minimum(sent + exponential(k.uniform("mkt.open_at", t, who, item),
                                                3 * 3600).astype(np.int64), 86399)
        click_at = np.minimum(open_at + exponential(k.uniform("mkt.click_at", t, who, item),
                                                    120).astype(np.int64) + 1, 86399)
        campaign = t * 10 + b
        blocks.append((who, sent, 3 if offer else 0, pct if offer else NULL, campaign, channel, item))
        blocks.append((who[opened], open_at[opened], 1, NULL, campaign, channel, item + 1))
        blocks.append((who[clicked], click_at[clicked], 2, NULL, campaign, channel, item + 2))
        if offer:
            keep = who[state.alive[who]]
            state.grant_offers(keep, 0, pct, t + OFFER_DAYS)
            state.offer_campaign[keep], state.offer_channel[keep] = campaign, channel
    acts, codes = plan.action_customers, plan.action_codes
    act_coupon = np.array([100 + VOUCHER_PCT, NULL, 200 + LOYALTY_PCT])[codes]
    act_at = 9 * 3600 + integers(k.uniform("mkt.action_time", t, acts), 0, 3600)
    blocks.append((acts, act_at, np.where(codes == 1, 0, 3), act_coupon, -1 - codes, 0, ACTION_ITEM))
    offered = acts[codes != 1]
    state.offer_campaign[offered], state.offer_channel[offered] = -1 - codes[codes != 1], 0
    cust = redeemed["cust"]
    blocks.append((cust, redeemed["at"], 4, redeemed["coupon"], state.offer_campaign[cust],
                   state.offer_channel[cust], REDEMPTION_ITEM))
    cols = [np.concatenate([np.broadcast_to(b[j], b[0].shape) for b in blocks]) for j in range(7)]
    # Time order; ties keep block then customer order, independent of other customers.
    order = np.argsort(cols[1], kind="stable")
    who, at, kind, coupon, campaign, channel, item = (np.asarray(c[order], dtype=np.int64) for c in cols)
    ids = state.record_ids("mkt", t, who, item)
    return {
        "interaction_id": ids,
        "customer_id": who,
        "campaign_id": campaign,
        "channel": channel,
        "interaction_type": kind,
        "offer_code": coupon,
        "discount_pct": np.where(coupon == NULL, NULL, coupon % 100),
        "occurred_at": state.day_epoch(t) + at,
        KEY: ids,
    }


def draw_one(rng: np.random.Generator, share: np.ndarray) -> int:
    return int(categorical(rng.random(1), share)[0])
