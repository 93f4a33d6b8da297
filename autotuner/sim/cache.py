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

Out of steady state (after a TTL change or a flush) entries expire on the TTL they were written
with: `cache_cohorts.Cohorts` follows them per popularity node until the class is steady again,
then this closed form takes over. A flush empties the cache; each key then hits again only once
requested since, and the cohorts follow the refill.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from autotuner.sim.cache_cohorts import Cohorts, popularity_nodes, zipf_popularity

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


@lru_cache(maxsize=32)
def cache_tables(keys: int, exponent: float, points: int = 240) -> CacheTables:
    popularity = zipf_popularity(keys, exponent)
    grid = np.logspace(-4.0, 10.0, points)
    hit = np.empty(points)
    held = np.empty(points)
    # Whole blocks of grid points at once: a (block x keys) matrix stays within a few MB.
    block = max(1, (1 << 21) // max(keys, 1))
    for start in range(0, points, block):
        per_key = np.outer(grid[start : start + block], popularity)
        h = per_key / (1.0 + per_key)
        hit[start : start + block] = h @ popularity
        held[start : start + block] = h.sum(axis=1)
    return CacheTables(LogTable(grid, hit), LogTable(grid, held))


def stale_share(ttl: float, update_interval: float) -> float:
    """Share of hits that serve an entry older than the update interval."""
    if ttl <= update_interval:
        return 0.0
    return (ttl - update_interval) / ttl


class CacheState:
    """One class's state: the TTL in force, and the held entries' cohorts while not steady.

    Steady (`cohorts` is None): the closed form at this step's rate and the target TTL. A TTL
    change or a flush starts the cohorts, from the steady state or from empty; once a single
    TTL has been in force longer than itself and the cohorts hold its steady state, the closed
    form takes over again.
    """

    __slots__ = (
        "_ahead",
        "_stale_share",
        "clock",
        "cohorts",
        "effective_ttl",
        "flushed",
        "spec",
        "steady_ttl",
        "tables",
        "target_ttl",
    )

    def __init__(self, spec: CacheClass) -> None:
        self.spec = spec
        self.tables = cache_tables(spec.keys, spec.zipf)
        self.target_ttl = spec.ttl
        # The TTL whose steady state holds while there are no cohorts.
        self.steady_ttl = spec.ttl
        # The TTL of the entries held, weighted by keys.
        self.effective_ttl = spec.ttl
        self.cohorts: Cohorts | None = None
        self.flushed = False
        self.clock = 0.0
        # The cohorts' last advance: hit rate, stale share, keys held, until their clock.
        self._ahead = (0.0, 0.0, 0.0)
        self._stale_share = stale_share(spec.ttl, spec.update_interval)

    def set_ttl(self, ttl: float) -> None:
        self.target_ttl = max(0.0, ttl)

    def flush(self) -> None:
        self.flushed = True

    def step(self, class_rps: float, dt: float) -> tuple[float, float, float, float]:
        """Advance `dt` seconds at `class_rps` requests per second to this class.

        Returns the step's hit rate, stale share of hits, memory held (bytes) and misses per
        second; the TTL of the entries held is `effective_ttl`.
        """
        spec = self.spec
        now = self.clock
        self.clock = now + dt
        cohorts = self.cohorts
        if self.flushed or (cohorts is None and self.target_ttl != self.steady_ttl):
            nodes = popularity_nodes(spec.keys, spec.zipf)
            if self.flushed:
                cohorts = Cohorts.empty(nodes, spec.update_interval, now, class_rps)
            else:
                cohorts = Cohorts.steady(
                    nodes, spec.update_interval, now, class_rps, self.steady_ttl
                )
            self.cohorts = cohorts
            self.flushed = False
        if cohorts is not None:
            if cohorts.now <= now + 1e-6 * dt:
                self._advance(cohorts, class_rps, dt)
            hit_rate, stale, keys_held = self._ahead
            return hit_rate, stale, keys_held * spec.object_bytes, class_rps * (1.0 - hit_rate)
        hit_rate, keys_held = self.tables.hit_rate.read_with(
            self.tables.keys_held, class_rps * self.steady_ttl
        )
        return (
            hit_rate,
            self._stale_share,
            keys_held * spec.object_bytes,
            class_rps * (1.0 - hit_rate),
        )

    def _advance(self, cohorts: Cohorts, class_rps: float, dt: float) -> None:
        """Advance the cohorts by whole ticks (as long as the TTLs in force allow) at this rate.

        The dynamics are no faster than a 16th of the shortest TTL, so the cohorts advance that
        far at once and the ticks up to there read the same figures: a TTL changed meanwhile
        acts at the next advance.
        """
        ticks = _advance_ticks(cohorts, self.target_ttl, dt)
        hit_rate, stale, keys_held = cohorts.step(class_rps, self.target_ttl, ticks * dt)
        self._ahead = (hit_rate, stale, keys_held)
        self.effective_ttl = cohorts.mean_ttl()
        if cohorts.settled(hit_rate, keys_held):
            self.cohorts = None
            self.steady_ttl = self.target_ttl
            self.effective_ttl = self.target_ttl
            self._stale_share = stale_share(self.target_ttl, self.spec.update_interval)


def _advance_ticks(cohorts: Cohorts, ttl: float, dt: float) -> int:
    """How many ticks the cohorts may advance at once.

    A 16th of the shortest TTL in force, a quarter of the time since the first write held (a
    cache refilling after a flush changes fastest at first), and no more than 5 minutes.
    """
    shortest = ttl
    for segment in cohorts.segments:
        shortest = min(shortest, segment.ttl)
    span = min(shortest / 16.0, (cohorts.now - cohorts.started) / 4.0, 300.0)
    return max(1, int(span / dt)) if dt > 0.0 else 1


def ttl_step_response(
    spec: CacheClass, class_rps: list[float], ttls: list[float], dt: float
) -> list[tuple[float, float, float, float]]:
    """The model driven from outside: per step, the class's rate and the TTL in force.

    Starts steady at `spec.ttl`; returns per step (hit rate, stale share of hits, memory held in
    bytes, TTL of the entries held), as the simulator computes them.
    """
    cache = CacheState(spec)
    rows: list[tuple[float, float, float, float]] = []
    for rate, ttl in zip(class_rps, ttls, strict=True):
        cache.set_ttl(ttl)
        hit_rate, stale, memory, _ = cache.step(rate, dt)
        rows.append((hit_rate, stale, memory, cache.effective_ttl))
    return rows
