"""The latent business: customer traits, daily engagement and satisfaction, churn hazard, treatment.

Each customer has fixed traits and two latent states in logit space, engagement ``e`` and
satisfaction ``s``, each an AR(1) around the customer's baseline. About a third of customers have
an engagement baseline that starts to fade on some day: falling engagement is the main early
signal of churn. Failed payments, refunds and bad support experiences push satisfaction down and
leave decaying "scars" (``fail_recent``, ``bad_support``) that raise the churn hazard directly.
Nothing here writes rows; ``domains`` turns a day's plan into records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from churn_assets.simulator import vocab as V

PRE_START_SHARE = 0.70
# Intercept of the daily churn log-odds; calibrated so ~20-35% of 3000 customers churn in 120 days.
HAZARD_INTERCEPT = -7.7
SEGMENT_HAZARD = np.array([0.30, 0.0, -0.45])
CHANNEL_HAZARD = np.array([-0.10, 0.10, 0.25, -0.35, 0.35, 0.0])
SEGMENT_BUY = np.array([0.11, 0.16, 0.22])
EXPLICIT_CANCEL_SHARE = 0.15
ACTION_DECAY = np.array([0.93, 0.85, 0.96])
OFFER_DAYS = 7
TREATED_DAYS = 30
VOUCHER_PCT, LOYALTY_PCT = 20, 10


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw(rng: np.random.Generator, share: np.ndarray, size: int) -> np.ndarray:
    """``size`` categorical codes with probabilities ``share`` (faster than ``rng.choice``)."""
    cdf = np.cumsum(share) / np.sum(share)
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(share) - 1)


def _binomial(rng: np.random.Generator, trials: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial draws only where there is something to draw (most customers have no orders)."""
    out = np.zeros(trials.size, dtype=np.int64)
    some = np.flatnonzero(trials > 0)
    out[some] = rng.binomial(trials[some], p[some])
    return out


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
    """All customers' traits and latent state as numpy arrays, plus the generator that moves them.

    ``step(t, actions)`` advances one day and returns the day's plan; a later caller can feed it
    actions day by day. The draws that move the latent state and decide churn are made for every
    customer every day, so an action on day D leaves every other customer's day D+1 unchanged.
    """

    def __init__(self, customers: int, days: int, start_epoch: int, rng: np.random.Generator):
        self.n, self.days, self.start_epoch, self.rng = customers, days, start_epoch, rng
        n, r = customers, rng
        pre = r.random(n) < PRE_START_SHARE
        # Pre-start signups reach back up to ~3 years, denser recently (a growing business).
        back = np.minimum(r.exponential(300.0, n).astype(np.int64) + 1, 1100)
        self.signup_day = np.where(pre, -back, r.integers(0, days, n))
        self.signup_sec = r.integers(0, 86400, n)
        self.segment = draw(r, V.SEGMENT_SHARE, n)
        self.region = draw(r, V.REGION_SHARE, n)
        self.channel = draw(r, V.ACQUISITION_SHARE, n)
        self.method = draw(r, V.PAYMENT_METHOD_SHARE, n)
        self.device = draw(r, V.DEVICE_SHARE, n)
        self.category = draw(r, V.CATEGORY_SHARE, n)
        self.first_name = r.integers(0, len(V.FIRST_NAMES), n)
        self.last_name = r.integers(0, len(V.LAST_NAMES), n)
        self.email_domain = r.integers(0, len(V.EMAIL_DOMAINS), n)
        self.phone_number = r.integers(0, 10**10, n)
        self.mu_e = r.normal(-0.6 + 0.3 * self.segment, 0.8)
        self.mu_s = r.normal(1.0, 0.6, n)
        fading = r.random(n) < 0.35
        self.drift = np.where(fading, -r.uniform(0.01, 0.05, n), 0.0)
        self.drift_start = r.integers(-30, max(days, 1), n)
        self.price_sensitivity = r.beta(2.0, 3.0, n) + 0.15 * (self.segment == 0)
        self.responder = r.random(n) < 0.65
        self.voucher_noise = r.normal(0.0, 0.05, n)
        self.response_scale = r.beta(2.0, 2.0, n)
        self.payment_risk = r.normal(-2.9, 0.8, n) + V.PAYMENT_METHOD_RISK[self.method]
        self.frailty = r.normal(0.0, 0.5, n)

        self.e = self._mu_e(-1) + r.normal(0.0, 0.6, n)
        self.s = self.mu_s + r.normal(0.0, 0.4, n)
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
        self.counters = {k: 0 for k in ("order", "txn", "event", "session", "ticket", "mkt")}

    def _mu_e(self, t: int) -> np.ndarray:
        return self.mu_e + self.drift * np.maximum(0, t - self.drift_start)

    def day_epoch(self, t: int) -> int:
        return self.start_epoch + 86400 * t

    def take_ids(self, kind: str, count: int) -> np.ndarray:
        """``count`` fresh sequential ids of one kind (orders, events, …), unique over the history."""
        first = self.counters[kind]
        self.counters[kind] = first + count
        return np.arange(first, first + count, dtype=np.int64)

    def step(self, t: int, actions: tuple[np.ndarray, np.ndarray] | None = None) -> DayPlan:
        """Advance to day ``t``: latent states, hazard, churn, the day's activity counts, actions."""
        r, n = self.rng, self.n
        eps_e, eps_s = r.standard_normal((2, n))
        u_churn, u_kind, u_refund, u_ticket, u_seg, u_email = r.random((6, n))

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
        sessions[active] = r.poisson(1.8 * sig_e[active])
        p_buy = np.clip(SEGMENT_BUY[self.segment] * (0.45 + 0.75 * sigmoid(self.s)), 0, 1)
        orders = _binomial(r, sessions, p_buy)
        failed = _binomial(r, orders, sigmoid(self.payment_risk))
        retried = _binomial(r, failed, np.full(n, 0.6))
        recovered = _binomial(r, retried, np.full(n, 0.7))
        unrecovered = failed - recovered

        can_refund = active_mask & (self.last_paid_order >= 0) & (self.last_paid_day >= t - 30)
        can_refund &= self.last_paid_day < t
        p_refund = 0.01 + 0.04 * sigmoid(-2.0 * (self.s - 0.5))
        refund_mask = can_refund & (u_refund < p_refund)
        refunds = np.flatnonzero(refund_mask)
        refund_share = np.where(r.random(refunds.size) < 0.7, 1.0, r.uniform(0.3, 0.8, refunds.size))

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
        self.email_domain[email_change] = r.integers(0, len(V.EMAIL_DOMAINS), email_change.size)

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
        r, k = self.rng, idx.size
        category = draw(r, V.TICKET_CATEGORY_SHARE, k)
        category = np.where(unrecovered[idx] > 0, 3, np.where(refund[idx], 4, category))
        priority = draw(r, V.PRIORITY_SHARE, k)
        priority = np.where(unrecovered[idx] > 0, np.maximum(priority, 2), priority)
        channel = draw(r, V.TICKET_CHANNEL_SHARE, k)
        # One backlog level per day: on a bad day every queue is slow.
        backlog = r.lognormal(0.0, 0.4)
        speed = V.PRIORITY_SPEED[priority] * backlog
        response_h = V.TICKET_CHANNEL_RESPONSE_HOURS[channel] * speed * r.lognormal(0, 0.8, k)
        resolve_h = 5.0 * speed * r.lognormal(0.0, 1.1, k)
        opened = self.day_epoch(t) + r.integers(6 * 3600, 86400 - 600, k)
        responded = opened + (response_h * 3600).astype(np.int64) + 30
        resolved = responded + (resolve_h * 3600).astype(np.int64) + 60
        score = (
            3.6 + 0.9 * (self.s[idx] - 1.0) - 0.45 * np.log1p(response_h)
            - 0.35 * np.log1p(resolve_h / 6.0) + r.normal(0.0, 0.7, k)
        )
        csat = np.clip(np.rint(score), 1, 5).astype(np.int64)
        self.ticket_open[idx] = True
        self.ticket_id[idx] = self.take_ids("ticket", k)
        self.ticket_category[idx], self.ticket_priority[idx] = category, priority
        self.ticket_channel[idx] = channel
        self.ticket_opened[idx], self.ticket_responded[idx] = opened, responded
        self.ticket_resolved[idx] = resolved
        # Only ~65% answer the survey, but the experience shapes satisfaction either way.
        answered = r.random(k) < 0.65
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

    def _apply_actions(self, t: int, actions, active_mask: np.ndarray):
        """Retention actions act from tomorrow on; the true effect is heterogeneous and fades."""
        if actions is None or actions[0].size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        idx, code = actions
        keep = active_mask[idx]
        idx, code = idx[keep], code[keep]
        tenure_years = np.minimum((t - self.signup_day[idx]) / 365.0, 1.0)
        voucher = 0.10 + 0.6 * self.price_sensitivity[idx] + self.voucher_noise[idx]
        email = 0.05 + 0.3 * self.response_scale[idx]
        loyalty = 0.10 + 0.25 * tenure_years + 0.10 * (self.segment[idx] == 2)
        tau = np.choose(code, [voucher, email, loyalty])
        tau = np.clip(tau, 0.0, 0.85) * self.responder[idx]
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
        """Every per-customer array and the generator's position, so a later run can go on."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        pl.DataFrame(arrays).write_parquet(folder / "state.parquet", statistics=False)
        meta = {
            "n": self.n, "days": self.days, "start_epoch": self.start_epoch,
            "counters": self.counters, "rng": self.rng.bit_generator.state,
        }
        (folder / "state.json").write_text(json.dumps(meta, sort_keys=True, default=int))

    @classmethod
    def load(cls, folder: Path) -> BusinessState:
        meta = json.loads((folder / "state.json").read_text())
        self = cls.__new__(cls)
        self.n, self.days, self.start_epoch = meta["n"], meta["days"], meta["start_epoch"]
        self.counters = meta["counters"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng"]
        for name, column in pl.read_parquet(folder / "state.parquet").to_dict().items():
            setattr(self, name, column.to_numpy().copy())
        return self
