"""Random draws keyed by what they are for: common random numbers for counterfactual twins.

Every random number the simulator uses is a pure function of (seed, purpose, day, customer,
item): a customer's third session on day 40 gets the same start time in every world with the
same seed, whatever other customers do, whoever else exists, and whether an action changed this
customer's day 39. A world with retention actions and its no-action twin therefore share every
draw the actions did not cause, so their difference is the actions' effect, exactly, customer by
customer (and a world stopped early is a prefix of the whole history).

Two generators, both counter-based:

- ``rng(purpose, *parts)``: a numpy ``Philox`` generator keyed by a digest of (seed, purpose,
  parts), for arrays drawn whole, of a size no customer decides (one value per customer index, or
  a scalar for a campaign). Customer ``i``'s value is the ``i``-th of the stream.
- ``uniform(purpose, day, ids, items)``: a hash of (key, id, item) per element (the SplitMix64
  finalizer over a Weyl-spaced counter), for draws of rows whose number depends on the state
  (sessions, events, orders, dirt on a row): vectorized, and no row's draw depends on another's.

Distributions whose numpy sampler consumes a variable number of raw draws per value (Poisson,
binomial) are taken by inverse CDF from one uniform, for the same reason.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# A row's draw counter is ``id << ITEM_BITS | item``: ids below 2**43, items below 2**20.
ITEM_BITS = 20
_SHIFTS = tuple(np.uint64(s) for s in (30, 27, 31, 11, 32))
_TWO53 = 2.0**-53
_TWO32 = 2.0**-32
_TWO16 = 2.0**-16


class Keyed:
    """The seed's keyed draws. Purposes are short names (``"session.hour"``); each draw site
    has its own, so adding a draw never shifts another."""

    def __init__(self, seed: int):
        self.seed = seed

    def _digest(self, purpose: str, parts: tuple[int, ...], size: int) -> int:
        text = f"{self.seed}|{purpose}|{'|'.join(str(int(p)) for p in parts)}".encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=size).digest(), "little")

    def rng(self, purpose: str, *parts: int) -> np.random.Generator:
        """A generator for arrays of a fixed size (one value per customer index, or scalars)."""
        return np.random.Generator(np.random.Philox(key=self._digest(purpose, parts, 16)))

    def bits(self, purpose: str, t: int, ids: np.ndarray, items: np.ndarray | int | None = None) -> np.ndarray:
        """64 random bits per element, a function of (seed, purpose, t, id, item) only."""
        x = np.asarray(ids).astype(np.uint64)
        if items is not None:
            x <<= np.uint64(ITEM_BITS)
            x |= np.asarray(items).astype(np.uint64)
        x *= _GAMMA
        x ^= np.uint64(self._digest(purpose, (t,), 8))
        s30, s27, s31, _, _ = _SHIFTS
        x ^= x >> s30
        x *= _M1
        x ^= x >> s27
        x *= _M2
        x ^= x >> s31
        return x

    def uniform(self, purpose: str, t: int, ids: np.ndarray, items: np.ndarray | int | None = None) -> np.ndarray:
        """Uniforms in [0, 1), one per element."""
        return (self.bits(purpose, t, ids, items) >> _SHIFTS[3]) * _TWO53

    def normal(self, purpose: str, t: int, ids: np.ndarray, items: np.ndarray | int | None = None) -> np.ndarray:
        """Standard normals (Box-Muller on the two 32-bit halves of one draw)."""
        x = self.bits(purpose, t, ids, items)
        u1 = ((x >> _SHIFTS[4]).astype(np.float64) + 0.5) * _TWO32
        u2 = (x & np.uint64(0xFFFFFFFF)).astype(np.float64) * _TWO32
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

    def lanes(self, purpose: str, t: int, ids: np.ndarray, items: np.ndarray | int | None = None,
              count: int = 4) -> list[np.ndarray]:
        """``count`` (at most 4) uniforms per element with 16-bit resolution, from the four
        16-bit lanes of one draw: for several coarse choices about one row (an hour, a device, a
        category), at the cost of one."""
        x = self.bits(purpose, t, ids, items)
        mask = np.uint64(0xFFFF)
        return [(((x >> np.uint64(16 * lane)) & mask).astype(np.float64) + 0.5) * _TWO16
                for lane in range(count)]

    def scalar(self, purpose: str, t: int, index: int = 0) -> float:
        """One uniform for a day-level choice (does a domain-day get re-dropped, …)."""
        return float(self.uniform(purpose, t, np.array([index]))[0])


def categorical(u: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Codes with probabilities ``share`` from uniforms ``u``."""
    cdf = np.cumsum(share) / np.sum(share)
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(share) - 1)


def integers(u: np.ndarray, low: int, high: int) -> np.ndarray:
    """Integers in ``[low, high)`` from uniforms ``u``."""
    return low + (u * (high - low)).astype(np.int64)


def exponential(u: np.ndarray, scale: float) -> np.ndarray:
    return -scale * np.log1p(-u)


def poisson(u: np.ndarray, lam: np.ndarray, cap: int) -> np.ndarray:
    """Poisson(``lam``) by inverse CDF, at most ``cap`` (the rates here are small)."""
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), u.shape)
    out = np.zeros(u.shape, dtype=np.int64)
    pmf = np.exp(-lam)
    cdf = pmf.copy()
    for k in range(cap):
        more = u >= cdf
        if not more.any():
            break
        out += more
        pmf = pmf * lam / (k + 1)
        cdf += pmf
    return out


def binomial(u: np.ndarray, trials: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial(``trials``, ``p``) by inverse CDF; ``trials`` are small counts."""
    out = np.zeros(u.shape, dtype=np.int64)
    some = np.flatnonzero(trials > 0)
    if some.size == 0:
        return out
    u, n = u[some], trials[some]
    p = np.clip(np.broadcast_to(np.asarray(p, dtype=np.float64), trials.shape)[some], 0.0, 1.0 - 1e-12)
    odds = p / (1.0 - p)
    pmf = (1.0 - p) ** n
    cdf = pmf.copy()
    k = np.zeros(n.size, dtype=np.int64)
    for j in range(int(n.max())):
        more = (u >= cdf) & (j < n)
        if not more.any():
            break
        k += more
        pmf = pmf * (n - j) / (j + 1) * odds
        cdf += pmf
    out[some] = k
    return out
