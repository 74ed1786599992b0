"""Customer lifetime value: expected revenue per customer over a horizon (default 365 days).

Approach: a probabilistic "buy till you die" model, fitted by maximum likelihood with scipy:

- **MBG/NBD** (modified BG/NBD, Batislam, Denizel & Filiztekin 2007) for the number of orders:
  while alive, a customer orders at a Poisson rate ``lambda ~ Gamma(r, alpha)``; at time 0 and
  after every order they drop out with probability ``p ~ Beta(a, b)``. Unlike plain BG/NBD it
  lets a customer with no orders be gone, which matters here: a signup who never ordered, or a
  customer whose last order predates a long silence, should not be assumed alive.
- **Gamma-Gamma** (Fader, Hardie & Lee 2005) for the value of an order, shrinking each
  customer's observed average order value towards the population's by how many orders it rests
  on. Refunds are accounted for by the population's net-of-refunds share of order value.

Why this and not a supervised regressor on the features: the issue asks for horizons longer
than the labelled history (365 days from ~150 days of data; 730 in the tests) and for sensible
values for customers with little history. A regressor can only predict the horizons it saw
labels for, and for a new customer it has nothing to say beyond its training averages; the
parametric model extrapolates to any horizon in closed form, and for a customer with no orders
and no tenure it returns the population's expected value. It reads only the gold features
(``orders_total``, ``days_since_last_order``, ``tenure_days``, ``avg_order_value``,
``revenue_total``, ``is_cancelled``), so a transactions-only business works too. The
``lifetimes`` package is unmaintained, so the likelihoods and expectations are written here.

Time runs in days from each customer's *birth*: signup (``tenure_days``), or, when the history
before ``history_start`` was never loaded, ``history_start`` (left truncation: orders before it
are unseen, so counting from signup would understate the order rate). A customer known only
from payments (no profile: ``status`` null) is born at their first order, which is then not a
repeat order. An explicitly cancelled customer is worth 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from scipy.stats import spearmanr

HORIZON_DAYS = 365


def customer_history(features: pl.DataFrame, history_start: date | None = None) -> pl.DataFrame:
    """One snapshot of gold features -> per customer: ``orders`` (counted after birth),
    ``recency`` (birth to last counted order, days), ``age`` (birth to the snapshot, days),
    ``order_value`` (average paid order value, null without orders) and ``cancelled``."""
    days = features["snapshot_date"].unique()
    if days.len() != 1:
        raise ValueError(f"customer_history needs one snapshot day, got {days.len()}")
    return purchase_history(features, history_start)


def purchase_history(features: pl.DataFrame, history_start: date | None = None) -> pl.DataFrame:
    """``customer_history`` of every row, whatever its snapshot day.

    A customer is born at their first order, which is then not a repeat order, when they have
    no profile (known from payments only) or signed up the day of that order (a profile made
    at checkout, or derived from the transactions): otherwise every such customer would count
    one repeat order too many.
    """
    tenure = pl.col("tenure_days").cast(pl.Float64).fill_null(0.0).clip(lower_bound=0.0)
    orders = pl.col("orders_total").cast(pl.Float64).fill_null(0.0)
    born_at_first_order = pl.col("status").is_null() & (orders > 0)
    if "days_since_first_order" in features.columns:
        since_first = pl.col("days_since_first_order").cast(pl.Float64)
        born_at_first_order = (orders > 0) & (
            pl.col("status").is_null() | (since_first >= tenure).fill_null(False))
        tenure = pl.when(born_at_first_order).then(since_first.fill_null(tenure)).otherwise(tenure)
    if history_start is not None:
        observed = (pl.col("snapshot_date") - pl.lit(history_start)).dt.total_days()
        tenure = tenure.clip(upper_bound=observed.clip(lower_bound=0).cast(pl.Float64))
    since_last = pl.col("days_since_last_order").cast(pl.Float64).fill_null(0.0)
    return features.select(
        "customer_id",
        orders=pl.when(born_at_first_order).then(orders - 1).otherwise(orders),
        recency=pl.when(orders > 0).then((tenure - since_last).clip(lower_bound=0.0))
        .otherwise(0.0),
        age=tenure,
        order_value=pl.when(orders > 0).then(pl.col("avg_order_value").cast(pl.Float64)),
        spend_orders=orders,
        net_revenue=pl.col("revenue_total").cast(pl.Float64).fill_null(0.0),
        cancelled=pl.col("is_cancelled").cast(pl.Boolean).fill_null(False),
    )


@dataclass(frozen=True)
class CltvModel:
    """Fitted parameters: MBG/NBD ``(r, alpha, a, b)``, Gamma-Gamma ``(p, q, gamma)`` and the
    population's net-of-refunds share of order value."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    gamma: float
    net_share: float
    history_start: date | None = None

    def expected_orders(self, history: pl.DataFrame, horizon_days: float) -> np.ndarray:
        """E[orders in the next ``horizon_days``] given each customer's history (MBG/NBD)."""
        x, t_x, t_age = _arrays(history)
        return _conditional_orders(self.r, self.alpha, self.a, self.b, x, t_x, t_age,
                                   float(horizon_days))

    def probability_alive(self, history: pl.DataFrame) -> np.ndarray:
        x, t_x, t_age = _arrays(history)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        odds = a / (b + x) * np.exp((r + x) * (np.log(alpha + t_age) - np.log(alpha + t_x)))
        return 1.0 / (1.0 + odds)

    def expected_order_value(self, history: pl.DataFrame) -> np.ndarray:
        """Gamma-Gamma posterior mean order value (the population mean without orders)."""
        n = history["spend_orders"].to_numpy()
        mean = history["order_value"].fill_null(0.0).to_numpy()
        return self.p * (self.gamma + n * mean) / (self.p * n + self.q - 1.0)

    def predict(self, features: pl.DataFrame, horizon_days: float = HORIZON_DAYS) -> pl.DataFrame:
        """``customer_id``, ``expected_orders``, ``expected_order_value``, ``probability_alive``
        and ``cltv`` (expected net revenue over ``horizon_days``)."""
        if horizon_days <= 0:
            raise ValueError(f"horizon_days must be positive, got {horizon_days}")
        history = customer_history(features, self.history_start)
        live = ~history["cancelled"].to_numpy()
        orders = self.expected_orders(history, horizon_days) * live
        value = self.expected_order_value(history)
        return pl.DataFrame({
            "customer_id": history["customer_id"],
            "expected_orders": orders,
            "expected_order_value": value,
            "probability_alive": self.probability_alive(history) * live,
            "cltv": orders * value * self.net_share,
        })


def fit_cltv(features: pl.DataFrame, history_start: date | None = None,
             penalizer: float = 0.0) -> CltvModel:
    """Fit both models on one snapshot of gold features (all customers known that day).

    Log-parameters are bounded to ``[-12, 12]``, so degenerate samples (every order the same
    value, nobody with a repeat order) stop at a bound instead of running to infinity.
    ``penalizer`` adds an L2 penalty on the log-parameters; it biases the fit (on 30,000
    customers drawn from a known MBG/NBD, 1e-3 overstated next-year orders by ~4 %, none by
    ~1 %), so it is off by default.
    """
    # Sorted: on a small or short history the likelihood is flat enough that the order of the
    # sums moves the optimum (a 7 % different `a` from the same rows read by another engine).
    history = customer_history(features.sort("customer_id"), history_start)
    if history.height < 10:
        raise ValueError(f"fit_cltv needs at least 10 customers, got {history.height}")
    x, t_x, t_age = _arrays(history)
    r, alpha, a, b = _fit(lambda v: _mbg_nll(v, x, t_x, t_age), 4, penalizer,
                          start=np.log([1.0, max(t_age.mean(), 1.0), 1.0, 1.0]))
    buyers = history.filter((pl.col("spend_orders") > 0) & (pl.col("order_value") > 0))
    if buyers.height < 5:
        raise ValueError("fit_cltv needs at least 5 customers with a paid order to fit order "
                         f"values, got {buyers.height}")
    n, mean = buyers["spend_orders"].to_numpy(), buyers["order_value"].to_numpy()
    p, q, gamma = _fit(lambda v: _gamma_gamma_nll(v, n, mean), 3, penalizer,
                       start=np.log([1.0, 1.0, float(mean.mean())]))
    gross = float((n * mean).sum())
    net_share = float(np.clip(buyers["net_revenue"].sum() / gross, 0.0, 1.0)) if gross else 1.0
    # a and q enter as 1 + exp(.): the expectations need a > 1 and q > 1 to be finite.
    return CltvModel(r, alpha, 1.0 + a, b, p, 1.0 + q, gamma, net_share, history_start)


@dataclass(frozen=True)
class CltvEvaluation:
    total_predicted: float
    total_actual: float
    spearman: float
    top_decile_share: float
    customers: int

    def as_dict(self) -> dict[str, float]:
        return {"total_predicted": self.total_predicted, "total_actual": self.total_actual,
                "spearman": self.spearman, "top_decile_share": self.top_decile_share,
                "customers": float(self.customers)}


def evaluate_cltv(predicted: pl.DataFrame, actual: pl.DataFrame) -> CltvEvaluation:
    """Predicted ``cltv`` against ``actual`` (``customer_id``, ``revenue``; customers without
    revenue may be absent): totals, Spearman rank correlation, and the share of actual revenue
    earned by the predicted top decile."""
    joined = predicted.select("customer_id", "cltv").join(
        actual.select("customer_id", "revenue"), on="customer_id", how="left",
    ).with_columns(pl.col("revenue").fill_null(0.0)).sort("cltv", descending=True)
    top = max(1, joined.height // 10)
    total_actual = float(joined["revenue"].sum())
    rho = spearmanr(joined["cltv"].to_numpy(), joined["revenue"].to_numpy()).statistic
    return CltvEvaluation(
        total_predicted=float(joined["cltv"].sum()), total_actual=total_actual,
        spearman=float(rho),
        top_decile_share=float(joined["revenue"].head(top).sum() / total_actual)
        if total_actual else float("nan"),
        customers=joined.height,
    )


def actual_revenue(payments: pl.DataFrame, after: date, until: date) -> pl.DataFrame:
    """Net revenue per customer from silver payments dated in ``(after, until]``: paid charges
    plus refunds (negative), as gold counts ``revenue``."""
    counted = ((pl.col("transaction_type") == "charge") & (pl.col("status") == "paid")) | (
        (pl.col("transaction_type") == "refund") & (pl.col("status") != "failed"))
    return (
        payments.lazy()
        .filter(counted & (pl.col("event_date") > after) & (pl.col("event_date") <= until))
        .group_by("customer_id").agg(revenue=pl.col("amount").sum())
        .collect()
    )


# ---------------------------------------------------------------- likelihoods


def _arrays(history: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (history["orders"].to_numpy(), history["recency"].to_numpy(),
            history["age"].to_numpy())


def _mbg_nll(log_params, x, t_x, t_age) -> float:
    r, alpha, a_minus_1, b = np.exp(log_params)
    a = 1.0 + a_minus_1
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x + 1) - betaln(a, b) - (r + x) * np.log(alpha + t_age)
    a3 = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + t_age) - np.log(alpha + t_x))
    return -float(np.mean(a1 + a2 + np.logaddexp(0.0, a3)))


def _gamma_gamma_nll(log_params, n, mean) -> float:
    p, q_minus_1, gamma = np.exp(log_params)
    q = 1.0 + q_minus_1
    ll = (gammaln(p * n + q) - gammaln(p * n) - gammaln(q) + q * np.log(gamma)
          + (p * n - 1) * np.log(mean) + p * n * np.log(n) - (p * n + q) * np.log(gamma + n * mean))
    return -float(np.mean(ll))


def _fit(nll, size: int, penalizer: float, start: np.ndarray) -> tuple[float, ...]:
    def objective(v):
        return nll(v) + penalizer * float(np.sum(v**2))

    result = minimize(objective, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * size)
    if not np.isfinite(result.fun):
        raise ValueError(f"the CLTV likelihood did not converge: {result.message}")
    return tuple(float(v) for v in np.exp(result.x))


def _conditional_orders(r, alpha, a, b, x, t_x, t_age, t) -> np.ndarray:
    """MBG/NBD E[X(t) | x, t_x, T] (Batislam et al. 2007, eq. 5), with Euler's transformation
    of 2F1 where the direct series is unstable (its argument near 1, for long horizons)."""
    z = t / (alpha + t_age + t)
    c = a + b + x
    f = hyp2f1(r + x, b + x + 1, c, z)
    bad = ~np.isfinite(f)
    if bad.any():
        # 2F1(p, q; c; z) = (1 - z)^(c - p - q) 2F1(c - p, c - q; c; z)
        cp, cq = c - (r + x), c - (b + x + 1)
        f = np.where(bad, (1 - z) ** (c - (r + x) - (b + x + 1))
                     * hyp2f1(cp, cq, c, z), f)
    ratio = np.exp((r + x) * (np.log(alpha + t_age) - np.log(alpha + t_age + t)))
    numerator = (a + b + x) / (a - 1) * (1.0 - f * ratio)
    denominator = 1.0 + a / (b + x) * np.exp(
        (r + x) * (np.log(alpha + t_age) - np.log(alpha + t_x)))
    return np.maximum(numerator / denominator, 0.0)
