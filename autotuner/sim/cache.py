"""Cache classes under a TTL: hit rate, memory held and stale hits.

Model (Fofack, Nain, Neglia & Towsley, "Analysis of TTL-based cache networks", 2012; the
non-reset TTL cache): key i of a class with Zipf(s) popularity over N keys gets Poisson requests
at l_i = λ·p_i with p_i ∝ i^-s. A miss fetches the key and keeps it T seconds; requests within
those T seconds hit. Per key the hit probability, and the share of time the key is held, are
both h_i = l_i·T / (1 + l_i·T). So

    hit rate  H(λT) = Σ p_i · h_i          keys held  K(λT) = Σ h_i

depend on λ and T only through x = λ·T; both are tabulated once on a log grid of x.

Staleness: a hit is stale when the entry it serves is older than the class's update interval U
(the origin has moved on by then). Hits fall at ages uniform on (0, T), so the stale share of
hits is max(0, T - U) / T: zero while the TTL is within the update interval, growing beyond it.

A TTL change acts gradually: entries written under the old TTL keep it, so the effective TTL moves
toward the new value with a time constant of the current effective TTL. After a flush, key i hits
again only once requested since; with m = requests to the class since the flush, the share of
requests to keys touched since is R(m) = Σ p_i (1 - e^{-p_i·m}), and H is scaled by R(m).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

# Cache classes and their TTLs (seconds) from the origin document's L2 (Redis) cache.
ORIGIN_TTLS: dict[str, float] = {
    "user_sessions": 1800.0,
    "api_responses": 900.0,
    "ml_predictions": 3600.0,
    "campaign_data": 1800.0,
    "transaction_summary": 600.0,
}


@dataclass(frozen=True, slots=True)
class CacheClass:
    name: str
    ttl: float
    keys: int = 20000
    zipf: float = 0.9
    # Share of API requests that read this class.
    share: float = 0.2
    # Mean interval between origin updates of one key, seconds.
    update_interval: float = 3600.0
    object_bytes: float = 2048.0


def zipf_popularity(keys: int, exponent: float) -> np.ndarray:
    ranks = np.arange(1, keys + 1, dtype=np.float64)
    weights = ranks**-exponent
    return np.asarray(weights / weights.sum())


class LogTable:
    """A monotone function tabulated on a log grid, read by linear interpolation in log x."""

    __slots__ = ("_first_x", "_high", "_log_x", "_low", "_rises", "_spans", "_y")

    def __init__(self, xs: np.ndarray, ys: np.ndarray) -> None:
        self._log_x = [float(v) for v in np.log(xs)]
        self._y = [float(v) for v in ys]
        self._low = self._log_x[0]
        self._high = self._log_x[-1]
        self._first_x = math.exp(self._low)
        # Per grid interval: its width in log x, and how much y rises across it.
        self._spans = [b - a for a, b in pairwise(self._log_x)]
        self._rises = [b - a for a, b in pairwise(self._y)]

    def __call__(self, x: float) -> float:
        if x <= 0:
            return 0.0
        log_x = math.log(x)
        if log_x <= self._low:
            return self._y[0] * x / self._first_x
        if log_x >= self._high:
            return self._y[-1]
        index = bisect.bisect_right(self._log_x, log_x) - 1
        return (
            self._y[index] + self._rises[index] * (log_x - self._log_x[index]) / self._spans[index]
        )

    def read_with(self, other: LogTable, x: float) -> tuple[float, float]:
        """This table and `other`, tabulated on the same grid, at x: one search serves both."""
        if x <= 0:
            return 0.0, 0.0
        log_x = math.log(x)
        if log_x <= self._low:
            return self._y[0] * x / self._first_x, other._y[0] * x / self._first_x
        if log_x >= self._high:
            return self._y[-1], other._y[-1]
        index = bisect.bisect_right(self._log_x, log_x) - 1
        offset = log_x - self._log_x[index]
        span = self._spans[index]
        return (
            self._y[index] + self._rises[index] * offset / span,
            other._y[index] + other._rises[index] * offset / span,
        )


@dataclass(frozen=True, slots=True)
class CacheTables:
    hit_rate: LogTable
    keys_held: LogTable
    touched_share: LogTable


@lru_cache(maxsize=32)
def cache_tables(keys: int, exponent: float, points: int = 240) -> CacheTables:
    popularity = zipf_popularity(keys, exponent)
    grid = np.logspace(-4.0, 10.0, points)
    hit = np.empty(points)
    held = np.empty(points)
    touched = np.empty(points)
    # Whole blocks of grid points at once: a (block x keys) matrix stays within a few MB.
    block = max(1, (1 << 21) // max(keys, 1))
    for start in range(0, points, block):
        per_key = np.outer(grid[start : start + block], popularity)
        h = per_key / (1.0 + per_key)
        hit[start : start + block] = h @ popularity
        held[start : start + block] = h.sum(axis=1)
        touched[start : start + block] = -np.expm1(-per_key) @ popularity
    return CacheTables(LogTable(grid, hit), LogTable(grid, held), LogTable(grid, touched))


def stale_share(ttl: float, update_interval: float) -> float:
    """Share of hits that serve an entry older than the update interval."""
    if ttl <= update_interval:
        return 0.0
    return (ttl - update_interval) / ttl


class CacheState:
    """One class's evolving state: the effective TTL and the requests since the last flush."""

    __slots__ = (
        "_stale_share",
        "effective_ttl",
        "requests_since_flush",
        "spec",
        "tables",
        "target_ttl",
    )

    def __init__(self, spec: CacheClass) -> None:
        self.spec = spec
        self.tables = cache_tables(spec.keys, spec.zipf)
        self.target_ttl = spec.ttl
        self.effective_ttl = spec.ttl
        self.requests_since_flush = math.inf
        # A function of the effective TTL alone, so recomputed only when that moves.
        self._stale_share = stale_share(spec.ttl, spec.update_interval)

    def set_ttl(self, ttl: float) -> None:
        self.target_ttl = max(0.0, ttl)

    def flush(self) -> None:
        self.requests_since_flush = 0.0

    def step(self, class_rps: float, dt: float) -> tuple[float, float, float, float]:
        """Advance `dt` seconds at `class_rps` requests per second to this class.

        Returns the step's hit rate, stale share of hits, memory held (bytes) and misses per
        second; the effective TTL is `effective_ttl`.
        """
        if self.effective_ttl != self.target_ttl:
            time_constant = max(self.effective_ttl, dt)
            self.effective_ttl += (self.target_ttl - self.effective_ttl) * (
                1.0 - math.exp(-dt / time_constant)
            )
            if abs(self.effective_ttl - self.target_ttl) < 1e-3:
                self.effective_ttl = self.target_ttl
            self._stale_share = stale_share(self.effective_ttl, self.spec.update_interval)
        self.requests_since_flush += class_rps * dt
        tables = self.tables
        since_flush = self.requests_since_flush
        warm = 1.0 if math.isinf(since_flush) else tables.touched_share(since_flush)
        hit_rate_when_warm, keys_held_when_warm = tables.hit_rate.read_with(
            tables.keys_held, class_rps * self.effective_ttl
        )
        hit_rate = hit_rate_when_warm * warm
        memory_bytes = keys_held_when_warm * warm * self.spec.object_bytes
        return hit_rate, self._stale_share, memory_bytes, class_rps * (1.0 - hit_rate)
