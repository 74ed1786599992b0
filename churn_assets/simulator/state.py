"""The latent business: customer traits, daily engagement and satisfaction, churn hazard, treatment.

Each customer has fixed traits and two latent states in logit space, engagement ``e`` and
satisfaction ``s``, each an AR(1) around the customer's baseline. About a third of customers have
an engagement baseline that starts to fade on some day: falling engagement is the main early
signal of churn. Failed payments, refunds and bad support experiences push satisfaction down and
leave decaying "scars" (``fail_recent``, ``bad_support``) that raise the churn hazard directly.
Retention actions remove a share of the hazard that fades day by day; how large a share is
heterogeneous and follows what the business can see (``action_effects``). Every draw is keyed
(``keyed``), so a customer's path depends only on the seed, the customer and the actions taken
on that customer. Nothing here writes rows; ``domains`` turns a day's plan into records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from churn_assets.simulator import vocab as V
from churn_assets.simulator.keyed import Keyed, binomial, categorical, integers, poisson

PRE_START_SHARE = 0.70
# Intercept of the daily churn log-odds; calibrated so ~20-35% of 3000 customers churn in 120 days.
HAZARD_INTERCEPT = -7.7
SEGMENT_HAZARD = np.array([0.30, 0.0, -0.45])
CHANNEL_HAZARD = np.array([-0.10, 0.10, 0.25, -0.35, 0.35, 0.0])
SEGMENT_BUY = np.array([0.11, 0.16, 0.22])
EXPLICIT_CANCEL_SHARE = 0.15
# Daily fade of an action's effect (voucher, e-mail, loyalty reward).
ACTION_DECAY = np.array([0.96, 0.90, 0.97])
RESPONDER_SHARE = 0.9
# The truth's window for an action's effect, the pipeline's default ``[scoring]
# outcome_window_days``: churn probability and revenue over the days t+1 .. t+30 after a contact.
EFFECT_WINDOW_DAYS = 30
# The window's days are summed at the midpoints of EFFECT_STEP-day blocks (smooth in the day).
EFFECT_STEP = 5
OFFER_DAYS = 7
TREATED_DAYS = 30
VOUCHER_PCT, LOYALTY_PCT = 20, 10
SEGMENT_PRICE = np.array([28.0, 42.0, 65.0])
CATEGORY_PRICE = np.array([2.2, 1.0, 1.3, 0.7, 1.2, 0.5, 0.6])
OWN_CATEGORY_SHARE = 0.6
PRICE_SIGMA = 0.55
QUANTITY_MEAN = 0.5  # items per order beyond the first (Poisson)
RETRY_SHARE, RECOVER_SHARE = 0.6, 0.7
# Caps that bound a customer's rows per day, so record ids can be made from (day, customer,
# item) alone: at most MAX_SESSIONS sessions, each with at most MAX_EVENTS events.
MAX_SESSIONS, MAX_EVENTS = 15, 32
# Id stride per (day, customer): the most items of a kind one customer can have in a day.
ID_STRIDE = {"session": 16, "event": 16 * MAX_EVENTS, "order": 16, "txn": 64, "mkt": 16,
             "ticket": 1}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw(rng: np.random.Generator, share: np.ndarray, size: int) -> np.ndarray:
    """``size`` categorical codes with probabilities ``share`` (faster than ``rng.choice``)."""
    return categorical(rng.random(size), share)


@dataclass
class DayPlan:
    """What happens to whom on day ``t``, at the customer level (arrays indexed by customer)."""

    t: int
    signups: np.ndarray
    churned: np.ndarray
    churned_explicit: np.ndarray
    active: np.ndarray
    sessions: np.ndarray
    orders: np.ndarray
    failed: np.ndarray
    retried: np.ndarray
    recovered: np.ndarray
    refunds: np.ndarray
    refund_share: np.ndarray
    tickets_opened: np.ndarray
    tickets_resolved: np.ndarray
    segment_changes: np.ndarray
    email_changes: np.ndarray
    action_customers: np.ndarray
    action_codes: np.ndarray
    hazard: dict[str, np.ndarray]


class BusinessState:
    """All customers' traits and latent state as numpy arrays, and the day step that moves them.

    ``step(t, actions)`` advances one day and returns the day's plan; a later caller can feed it
    actions day by day. Every draw is keyed by (seed, purpose, day, customer), so an action on
    day D changes that customer's path from D + 1 on and nobody else's, ever.
    """

    def __init__(self, customers: int, days: int, start_epoch: int, seed: int):
        self.n, self.days, self.start_epoch, self.seed = customers, days, start_epoch, seed
        self.keyed = Keyed(seed)
        n, k = customers, self.keyed

        def trait(name: str) -> np.random.Generator:
            return k.rng("trait." + name)

        pre = trait("pre_start").random(n) < PRE_START_SHARE
        # Pre-start signups reach back up to ~3 years, denser recently (a growing business).
        back = np.minimum(trait("signup_back").exponential(300.0, n).astype(np.int64) + 1, 1100)
        self.signup_day = np.where(pre, -back, trait("signup_day").integers(0, days, n))
        self.signup_sec = trait("signup_sec").integers(0, 86400, n)
        self.segment = draw(trait("segment"), V.SEGMENT_SHARE, n)
        self.region = draw(trait("region"), V.REGION_SHARE, n)
        self.channel = draw(trait("channel"), V.ACQUISITION_SHARE, n)
        self.method = draw(trait("method"), V.PAYMENT_METHOD_SHARE, n)
        self.device = draw(trait("device"), V.DEVICE_SHARE, n)
        self.category = draw(trait("category"), V.CATEGORY_SHARE, n)
        self.first_name = trait("first_name").integers(0, len(V.FIRST_NAMES), n)
        self.last_name = trait("last_name").integers(0, len(V.LAST_NAMES), n)
        self.email_domain = trait("email_domain").integers(0, len(V.EMAIL_DOMAINS), n)
        self.phone_number = trait("phone").integers(0, 10**10, n)
        self.mu_e = -0.6 + 0.3 * self.segment + 0.8 * trait("mu_e").standard_normal(n)
        self.mu_s = trait("mu_s").normal(1.0, 0.6, n)
        fading = trait("fading").random(n) < 0.35
        self.drift = np.where(fading, -trait("drift").uniform(0.01, 0.05, n), 0.0)
        self.drift_start = trait("drift_start").integers(-30, max(days, 1), n)
        self.price_sensitivity = trait("price_sensitivity").beta(2.0, 3.0, n) + 0.15 * (self.segment == 0)
        self.responder = trait("responder").random(n) < RESPONDER_SHARE
        self.voucher_noise = trait("voucher_noise").normal(0.0, 0.05, n)
        self.response_scale = trait("response_scale").beta(2.0, 2.0, n)
        self.payment_risk = trait("payment_risk").normal(-2.9, 0.8, n) + V.PAYMENT_METHOD_RISK[self.method]
        self.frailty = trait("frailty").normal(0.0, 0.5, n)

        self.e = self._mu_e(-1) + trait("e0").normal(0.0, 0.6, n)
        self.s = self.mu_s + trait("s0").normal(0.0, 0.4, n)
        self.fail_recent = np.zeros(n)
        self.bad_support = np.zeros(n)
        self.alive = np.ones(n, dtype=bool)
        self.churn_day = np.full(n, -1, dtype=np.int64)
        self.churn_explicit = np.zeros(n, dtype=bool)
        self.email_version = np.zeros(n, dtype=np.int64)
        self.effect = np.zeros(n)
        self.effect_decay = np.ones(n)
        self.last_action_day = np.full(n, -1000, dtype=np.int64)
        self.last_paid_order = np.full(n, -1, dtype=np.int64)
        self.last_paid_cents = np.zeros(n, dtype=np.int64)
        self.last_paid_quantity = np.zeros(n, dtype=np.int64)
        self.last_paid_day = np.full(n, -1000, dtype=np.int64)
        self.last_paid_category = np.zeros(n, dtype=np.int64)
        self.offer_stem = np.full(n, -1, dtype=np.int64)
        self.offer_pct = np.zeros(n, dtype=np.int64)
        self.offer_expiry = np.full(n, -1, dtype=np.int64)
        self.offer_campaign = np.full(n, -1, dtype=np.int64)
        self.offer_channel = np.zeros(n, dtype=np.int64)
        # At most one open ticket per customer, held here until it is resolved and re-delivered.
        self.ticket_open = np.zeros(n, dtype=bool)
        self.ticket_id = np.zeros(n, dtype=np.int64)
        self.ticket_category = np.zeros(n, dtype=np.int64)
        self.ticket_priority = np.zeros(n, dtype=np.int64)
        self.ticket_channel = np.zeros(n, dtype=np.int64)
        self.ticket_opened = np.zeros(n, dtype=np.int64)
        self.ticket_responded = np.zeros(n, dtype=np.int64)
        self.ticket_resolved = np.zeros(n, dtype=np.int64)
        self.ticket_csat = np.zeros(n, dtype=np.int64)
        self.ticket_bad = np.zeros(n, dtype=bool)

    def _mu_e(self, t: int) -> np.ndarray:
        return self.mu_e + self.drift * np.maximum(0, t - self.drift_start)

    def day_epoch(self, t: int) -> int:
        return self.start_epoch + 86400 * t

    def record_ids(self, kind: str, t: int, customers: np.ndarray, items: np.ndarray | int = 0) -> np.ndarray:
        """Ids unique over the history, made from (day, customer, item) alone, so one
        customer's extra order never renumbers another's."""
        return (t * self.n + customers) * ID_STRIDE[kind] + items

    def step(self, t: int, actions: tuple[np.ndarray, np.ndarray] | None = None) -> DayPlan:
        """Advance to day ``t``: latent states, hazard, churn, the day's activity counts, actions."""
        n, k = self.n, self.keyed
        # Draws every customer gets every day, one fixed-size block per day.
        day_rng = k.rng("day", t)
        eps_e, eps_s = day_rng.standard_normal((2, n))
        (u_churn, u_kind, u_refund, u_ticket, u_seg, u_email, u_sessions, u_orders, u_failed,
         u_retried, u_recovered) = day_rng.random((11, n))

        mu_prev, mu_now = self._mu_e(t - 1), self._mu_e(t)
        spill = 0.15 * (self.s - self.mu_s)
        self.e = mu_now + 0.85 * (self.e - mu_prev) + 0.35 * eps_e + spill
        self.s = self.mu_s + 0.9 * (self.s - self.mu_s) + 0.2 * eps_s
        signups = np.flatnonzero(self.signup_day == t)
        self.e[signups] = mu_now[signups] + 0.5
        self.s[signups] = self.mu_s[signups]
        self.effect *= self.effect_decay
        self.bad_support *= 0.95
        self.fail_recent *= 0.96

        eligible = self.alive & (self.signup_day < t)
        tenure = np.maximum(t - self.signup_day, 0)
        z = (
            HAZARD_INTERCEPT
            - 0.9 * (self.e - self.mu_e)
            - 0.5 * (self.e + 0.5)
            - 0.8 * (self.s - 1.0)
            + 1.5 * self.fail_recent
            + 0.7 * self.bad_support
            + 0.9 * np.exp(-tenure / 45.0)
            + SEGMENT_HAZARD[self.segment]
            + CHANNEL_HAZARD[self.channel]
            + self.frailty
        )
        hazard_untreated = sigmoid(z)
        hazard = hazard_untreated * (1.0 - self.effect)
        churn = eligible & (u_churn < hazard)
        churned = np.flatnonzero(churn)
        explicit = u_kind[churned] < EXPLICIT_CANCEL_SHARE
        self.alive[churned] = False
        self.churn_day[churned] = t
        self.churn_explicit[churned] = explicit
        truth_idx = np.flatnonzero(eligible)
        hazard_truth = {
            "customer": truth_idx,
            "hazard": hazard[truth_idx],
            "hazard_untreated": hazard_untreated[truth_idx],
            "engagement": sigmoid(self.e[truth_idx]),
            "satisfaction": sigmoid(self.s[truth_idx]),
            # Acted on in the last 30 days, whether or not the customer responds.
            "treated": (t - self.last_action_day[truth_idx] <= TREATED_DAYS),
            "treatment_effect": self.effect[truth_idx],
            "churned": churn[truth_idx],
        }

        active_mask = self.alive & (self.signup_day <= t)
        active = np.flatnonzero(active_mask)
        sig_e = sigmoid(self.e)
        sessions = np.zeros(n, dtype=np.int64)
        sessions[active] = poisson(u_sessions[active], 1.8 * sig_e[active], MAX_SESSIONS)
        p_buy = np.clip(SEGMENT_BUY[self.segment] * (0.45 + 0.75 * sigmoid(self.s)), 0, 1)
        orders = binomial(u_orders, sessions, p_buy)
        failed = binomial(u_failed, orders, sigmoid(self.payment_risk))
        retried = binomial(u_retried, failed, RETRY_SHARE)
        recovered = binomial(u_recovered, retried, RECOVER_SHARE)
        unrecovered = failed - recovered

        can_refund = active_mask & (self.last_paid_order >= 0) & (self.last_paid_day >= t - 30)
        can_refund &= self.last_paid_day < t
        p_refund = 0.01 + 0.04 * sigmoid(-2.0 * (self.s - 0.5))
        refund_mask = can_refund & (u_refund < p_refund)
        refunds = np.flatnonzero(refund_mask)
        refund_share = np.where(k.uniform("refund.whole", t, refunds) < 0.7, 1.0,
                                0.3 + 0.5 * k.uniform("refund.share", t, refunds))

        self.s -= 0.5 * unrecovered + 0.15 * recovered + 0.15 * refund_mask
        self.fail_recent += unrecovered + 0.3 * recovered

        z_ticket = (
            -5.3 + 1.8 * (unrecovered > 0) + 0.8 * (failed > 0) + 1.2 * refund_mask
            - 0.6 * (self.s - 1.0)
        )
        opened = np.flatnonzero(active_mask & ~self.ticket_open & (u_ticket < sigmoid(z_ticket)))
        self._open_tickets(t, opened, unrecovered, refund_mask)
        resolved = np.flatnonzero(self.ticket_open & (self.ticket_resolved < self.day_epoch(t + 1)))
        self._resolve_tickets(resolved, active_mask)

        seg_change = np.flatnonzero(active_mask & (u_seg < 0.002) & (self.signup_day < t))
        # Engaged customers upgrade, others downgrade; a move past either end is no change.
        current = self.segment[seg_change]
        moved = np.clip(current + np.where(sig_e[seg_change] > 0.45, 1, -1), 0, 2)
        seg_change, moved = seg_change[moved != current], moved[moved != current]
        self.segment[seg_change] = moved
        email_change = np.flatnonzero(active_mask & (u_email < 0.0008) & (self.signup_day < t))
        self.email_version[email_change] += 1
        self.email_domain[email_change] = integers(
            k.uniform("profile.email_domain", t, email_change), 0, len(V.EMAIL_DOMAINS))

        hazard_truth.update(self._true_effects(t, truth_idx, hazard_untreated[truth_idx], churn[truth_idx]))
        act_idx, act_code = self._apply_actions(t, actions, active_mask)
        return DayPlan(
            t=t, signups=signups, churned=churned, churned_explicit=explicit, active=active,
            sessions=sessions, orders=orders, failed=failed, retried=retried, recovered=recovered,
            refunds=refunds, refund_share=refund_share, tickets_opened=opened,
            tickets_resolved=resolved, segment_changes=seg_change, email_changes=email_change,
            action_customers=act_idx, action_codes=act_code, hazard=hazard_truth,
        )

    def _open_tickets(self, t: int, idx: np.ndarray, unrecovered: np.ndarray, refund: np.ndarray):
        """Draw every detail of a new ticket now: its delays and CSAT define the experience."""
        k = self.keyed
        category = categorical(k.uniform("ticket.category", t, idx), V.TICKET_CATEGORY_SHARE)
        category = np.where(unrecovered[idx] > 0, 3, np.where(refund[idx], 4, category))
        priority = categorical(k.uniform("ticket.priority", t, idx), V.PRIORITY_SHARE)
        priority = np.where(unrecovered[idx] > 0, np.maximum(priority, 2), priority)
        channel = categorical(k.uniform("ticket.channel", t, idx), V.TICKET_CHANNEL_SHARE)
        # One backlog level per day: on a bad day every queue is slow.
        backlog = k.rng("ticket.backlog", t).lognormal(0.0, 0.4)
        speed = V.PRIORITY_SPEED[priority] * backlog
        response_h = V.TICKET_CHANNEL_RESPONSE_HOURS[channel] * speed * np.exp(
            0.8 * k.normal("ticket.response", t, idx))
        resolve_h = 5.0 * speed * np.exp(1.1 * k.normal("ticket.resolve", t, idx))
        opened = self.day_epoch(t) + integers(k.uniform("ticket.opened", t, idx), 6 * 3600, 86400 - 600)
        responded = opened + (response_h * 3600).astype(np.int64) + 30
        resolved = responded + (resolve_h * 3600).astype(np.int64) + 60
        score = (
            3.6 + 0.9 * (self.s[idx] - 1.0) - 0.45 * np.log1p(response_h)
            - 0.35 * np.log1p(resolve_h / 6.0) + 0.7 * k.normal("ticket.csat", t, idx)
        )
        csat = np.clip(np.rint(score), 1, 5).astype(np.int64)
        self.ticket_open[idx] = True
        self.ticket_id[idx] = self.record_ids("ticket", t, idx)
        self.ticket_category[idx], self.ticket_priority[idx] = category, priority
        self.ticket_channel[idx] = channel
        self.ticket_opened[idx], self.ticket_responded[idx] = opened, responded
        self.ticket_resolved[idx] = resolved
        # Only ~65% answer the survey, but the experience shapes satisfaction either way.
        answered = k.uniform("ticket.answered", t, idx) < 0.65
        self.ticket_csat[idx] = np.where(answered, csat, 0)
        self.ticket_bad[idx] = (csat <= 2) | (response_h + resolve_h > 72)

    def _resolve_tickets(self, idx: np.ndarray, active_mask: np.ndarray) -> None:
        csat_shock = np.where(self.ticket_csat[idx] > 0, 0.25 * (self.ticket_csat[idx] - 3), 0)
        bad = self.ticket_bad[idx]
        self.s[idx] += csat_shock - 0.4 * bad
        self.bad_support[idx] += bad
        # A customer who left before the resolution no longer answers the survey.
        self.ticket_csat[idx] = np.where(active_mask[idx], self.ticket_csat[idx], 0)
        self.ticket_open[idx] = False

    def action_effects(self, t: int, idx: np.ndarray) -> np.ndarray:
        """The true effect of each action (rows: ``V.ACTIONS``) on customers ``idx`` contacted on
        day ``t``: the share of the daily churn hazard it removes on day ``t + 1`` (it fades by
        ``ACTION_DECAY`` a day from there).

        Heterogeneous, and visible in what the business records, so targeting by uplift can beat
        targeting by risk (Ascarza 2018): a voucher moves price-sensitive customers (they redeem
        offers; basic plans) and more so those drifting away; an e-mail only those still engaged
        (recent sessions); a loyalty reward long-tenured and premium customers. Nothing moves a
        customer whose recent payment failures or bad support experiences drive the churn, and
        little one who is deeply dissatisfied (the "lost causes": failed payments, tickets, poor
        CSAT, refunds), nor the ~10% who never respond.
        """
        sig_e = sigmoid(self.e[idx])
        tenure_years = np.minimum((t - self.signup_day[idx]) / 365.0, 1.0)
        voucher = -0.15 + 1.2 * self.price_sensitivity[idx] + 0.3 * (1.0 - sig_e) + self.voucher_noise[idx]
        email = 0.7 * np.clip((sig_e - 0.3) / 0.4, 0.0, 1.0) * (0.6 + 0.4 * self.response_scale[idx])
        loyalty = 0.05 + 0.30 * tenure_years + 0.15 * (self.segment[idx] == 2)
        scars = np.exp(-1.5 * (self.fail_recent[idx] + self.bad_support[idx]))
        content = sigmoid(3.0 * (self.s[idx] - 0.2))
        tau = np.clip(np.stack([voucher, email, loyalty]), 0.0, 0.85)
        return tau * (scars * content * self.responder[idx])

    def expected_daily_revenue(self, idx: np.ndarray) -> np.ndarray:
        """Customers' expected paid revenue per day in their current state (before discounts and
        refunds): sessions x purchase rate x paid share x order value."""
        sessions = 1.8 * sigmoid(self.e[idx])
        p_buy = np.clip(SEGMENT_BUY[self.segment[idx]] * (0.45 + 0.75 * sigmoid(self.s[idx])), 0, 1)
        fail = sigmoid(self.payment_risk[idx])
        paid = 1.0 - fail + fail * RETRY_SHARE * RECOVER_SHARE
        category = (OWN_CATEGORY_SHARE * CATEGORY_PRICE[self.category[idx]]
                    + (1.0 - OWN_CATEGORY_SHARE) * float(V.CATEGORY_SHARE @ CATEGORY_PRICE))
        value = (SEGMENT_PRICE[self.segment[idx]] * category * np.exp(PRICE_SIGMA**2 / 2)
                 * (1.0 + QUANTITY_MEAN))
        return sessions * p_buy * paid * value

    def _true_effects(self, t: int, idx: np.ndarray, hazard: np.ndarray, churned: np.ndarray) -> dict:
        """For customers ``idx``, what each action would do if they were contacted today.

        With the state held at today's (the daily untreated hazard ``hazard`` on every day of the
        window; the latent state moves on in truth, unaffected by actions): the probability of
        churning in the next ``EFFECT_WINDOW_DAYS`` days without an action, and per action the
        share of hazard removed tomorrow (``effect_<action>``), the reduction of that churn
        probability (``churn_reduction_<action>``), and the revenue it keeps in expectation
        (``revenue_kept_<action>``: the expected extra days as a customer in the window times
        ``revenue_rate``, the expected paid revenue per day). Customers who churned today can no
        longer be contacted: their effects are 0. A customer already under an action's effect
        gains less than this (the stronger effect replaces the weaker).
        """
        tau = self.action_effects(t, idx)
        tau[:, churned] = 0.0
        lam = -np.log1p(-hazard)
        decay = ACTION_DECAY[:, None]
        # Share-days of hazard removed through day k of the window: tau * sum_{j<=k} decay^j.
        def removed(k: float) -> np.ndarray:
            return tau * (decay * (1.0 - decay**k) / (1.0 - decay))

        def alive_gain(k: float) -> np.ndarray:
            return np.exp(-lam * k) * np.expm1(lam * removed(k))

        window = EFFECT_WINDOW_DAYS
        days = np.arange(EFFECT_STEP / 2 + 0.5, window + 0.5, EFFECT_STEP)
        extra_days = sum(alive_gain(k) for k in days) * EFFECT_STEP
        reduction = alive_gain(window)
        rate = self.expected_daily_revenue(idx)
        out = {"churn_probability_window": -np.expm1(-lam * window), "revenue_rate": rate}
        for a, action in enumerate(V.ACTIONS):
            out[f"effect_{action}"] = tau[a]
            out[f"churn_reduction_{action}"] = reduction[a]
            out[f"revenue_kept_{action}"] = extra_days[a] * rate
        return out

    def _apply_actions(self, t: int, actions, active_mask: np.ndarray):
        """Retention actions act from tomorrow on; the true effect is heterogeneous and fades."""
        if actions is None or actions[0].size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        idx, code = actions
        keep = active_mask[idx]
        idx, code = idx[keep], code[keep]
        tau = self.action_effects(t, idx)[code, np.arange(idx.size)]
        self.last_action_day[idx] = t
        stronger = tau > self.effect[idx]
        self.effect[idx] = np.where(stronger, tau, self.effect[idx])
        self.effect_decay[idx] = np.where(stronger, ACTION_DECAY[code], self.effect_decay[idx])
        gives_offer = code != 1
        offer_idx = idx[gives_offer]
        self.grant_offers(
            offer_idx, np.where(code[gives_offer] == 0, 1, 2),
            np.where(code[gives_offer] == 0, VOUCHER_PCT, LOYALTY_PCT), t + 2 * OFFER_DAYS,
        )
        return idx, code

    def grant_offers(self, idx: np.ndarray, stem, pct, expiry_day: int) -> None:
        self.offer_stem[idx], self.offer_pct[idx], self.offer_expiry[idx] = stem, pct, expiry_day

    def record_paid_orders(self, t, customers, order_ids, cents, quantity) -> None:
        """Remember each customer's latest paid order: refunds reference it on a later day."""
        if customers.size == 0:
            return
        last = customers.size - 1 - np.unique(customers[::-1], return_index=True)[1]
        c = customers[last]
        self.last_paid_order[c], self.last_paid_cents[c] = order_ids[last], cents[last]
        self.last_paid_quantity[c], self.last_paid_day[c] = quantity[last], t

    def forget_refunded(self, customers: np.ndarray) -> None:
        self.last_paid_order[customers] = -1

    def traits(self) -> dict[str, np.ndarray]:
        """The latent traits the ground truth publishes."""
        return {
            "base_engagement": sigmoid(self.mu_e), "base_satisfaction": sigmoid(self.mu_s),
            "engagement_drift": self.drift, "price_sensitivity": self.price_sensitivity,
            "responder": self.responder, "payment_risk": sigmoid(self.payment_risk),
            "frailty": self.frailty,
        }

    def save(self, folder: Path) -> None:
        """Every per-customer array and the seed, so a later run can go on."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        pl.DataFrame(arrays).write_parquet(folder / "state.parquet", statistics=False)
        meta = {
            "n": self.n, "days": self.days, "start_epoch": self.start_epoch,
            "seed": self.seed,
        }
        (folder / "state.json").write_text(json.dumps(meta, sort_keys=True, default=int))

    @classmethod
    def load(cls, folder: Path) -> BusinessState:
        meta = json.loads((folder / "state.json").read_text())
        self = cls.__new__(cls)
        self.n, self.days, self.start_epoch = meta["n"], meta["days"], meta["start_epoch"]
        self.seed = meta["seed"]
        self.keyed = Keyed(self.seed)
        for name, column in pl.read_parquet(folder / "state.parquet").to_dict().items():
            setattr(self, name, column.to_numpy().copy())
        return self
