"""A TTL cache out of steady state: entries expire on the TTL they were written with.

Per key of Poisson rate l (non-reset TTL cache; by PASTA a request finds the key held with the
probability P(t) that it is held), the entries alive at t are those written at s with
s + T(s) > t, where T(s) is the TTL in force at s, and a write happens at each miss:

    P(t) = ∫_{s: s + T(s) > t} l(s)·(1 − P(s)) ds

Hit rate Σ p_i P_i(t), keys held Σ P_i(t). A TTL raise changes nothing until the old entries
expire, then the new ones, written together, expire together (overshoot, ringing); a cut lets
the old entries run out over the old TTL.

Keys are grouped by popularity: node ranks log-spaced from 1 to N, and each key's weight split
between the two nodes around its popularity (linearly in log p for hits, in p for keys held),
so one P per node stands for all keys. Writes are kept as cohorts per TTL segment (blocks of at
most T/32 seconds, at least one step); within a step the rate and the expiry flow E are
constant, so dP/ds = l(1 − P) − E/dt has a closed-form solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Popularity nodes, log-spaced in rank: 24 keep the hit rate within 0.11 point of the per-key
# sum for up to 2,000,000 keys (tests/sim/test_cache.py).
BANDS = 24
# A segment's cohorts: blocks of at most this share of its TTL.
BLOCKS_PER_TTL = 32.0
# Out of steady state until the hit rate and keys held are this close to the steady values.
SETTLED_HIT_RATE = 1e-3
SETTLED_KEYS_HELD = 5e-3


@dataclass(frozen=True, slots=True)
class PopularityNodes:
    """Popularity nodes of a Zipf key space: each node's popularity and its weights."""

    popularity: tuple[float, ...]
    # Σ p_i P_i ≈ Σ hit_weight_n P_n and Σ P_i ≈ Σ key_weight_n P_n.
    hit_weight: tuple[float, ...]
    key_weight: tuple[float, ...]


def zipf_popularity(keys: int, exponent: float) -> np.ndarray:
    ranks = np.arange(1, keys + 1, dtype=np.float64)
    weights = ranks**-exponent
    return np.asarray(weights / weights.sum())


@lru_cache(maxsize=32)
def popularity_nodes(keys: int, exponent: float, bands: int = BANDS) -> PopularityNodes:
    ranks = np.arange(1, keys + 1, dtype=np.float64)
    popularity = zipf_popularity(keys, exponent)
    node_ranks = np.unique(np.round(np.logspace(0.0, math.log10(max(keys, 1)), bands + 1)))
    node_ranks = node_ranks.astype(np.int64)
    node_popularity = popularity[node_ranks - 1]
    if len(node_ranks) == 1:
        one = (float(node_popularity[0]),)
        return PopularityNodes(one, (1.0,), (float(keys),))
    # Each key between node j (more popular) and node j + 1.
    lower = np.minimum(np.searchsorted(node_ranks, ranks, side="right") - 1, len(node_ranks) - 2)
    high, low = node_popularity[lower], node_popularity[lower + 1]
    in_log = (np.log(popularity) - np.log(low)) / (np.log(high) - np.log(low))
    in_linear = (popularity - low) / (high - low)
    hit_weight = np.zeros(len(node_ranks))
    key_weight = np.zeros(len(node_ranks))
    np.add.at(hit_weight, lower, in_log * popularity)
    np.add.at(hit_weight, lower + 1, (1.0 - in_log) * popularity)
    np.add.at(key_weight, lower, in_linear)
    np.add.at(key_weight, lower + 1, 1.0 - in_linear)
    return PopularityNodes(
        tuple(float(v) for v in node_popularity),
        tuple(float(v) for v in hit_weight),
        tuple(float(v) for v in key_weight),
    )


def steady_held(popularity: list[float], rate_times_ttl: float) -> list[float]:
    """Per node, the share of time its key is held at a steady rate and TTL: x/(1 + x)."""
    return [p * rate_times_ttl / (1.0 + p * rate_times_ttl) for p in popularity]


class Segment:
    """The entries written under one TTL: blocks of writes, and what of them is still held."""

    __slots__ = (
        "aged_block",
        "aged_until",
        "ages",
        "alive_hits",
        "alive_keys",
        "block_hits",
        "block_keys",
        "block_length",
        "block_writes",
        "edges",
        "expired_block",
        "expired_until",
        "old_hits",
        "open_hits",
        "open_keys",
        "open_writes",
        "ttl",
    )

    def __init__(self, ttl: float, start: float, nodes: int, step: float, ages: bool) -> None:
        self.ttl = ttl
        # Whether its entries outlive the update interval, so that some of its hits are stale.
        self.ages = ages
        self.block_length = max(step, ttl / BLOCKS_PER_TTL)
        # Closed block k holds the writes of [edges[k], edges[k + 1]); the open one, from
        # edges[-1] on, collects the current writes.
        self.edges: list[float] = [start]
        self.block_writes: list[list[float]] = []
        self.block_hits: list[float] = []
        self.block_keys: list[float] = []
        self.open_writes: list[float] = [0.0] * nodes
        self.open_hits = 0.0
        self.open_keys = 0.0
        # Held now, weighted for hits and for keys; hits older than the update interval.
        self.alive_hits = 0.0
        self.alive_keys = 0.0
        self.old_hits = 0.0
        # Writes up to these times have expired, and have aged past the update interval.
        self.expired_until = start
        self.expired_block = 0
        self.aged_until = start
        self.aged_block = 0

    def close_block(self, now: float) -> None:
        if now <= self.edges[-1]:
            return
        self.edges.append(now)
        self.block_writes.append(self.open_writes)
        self.block_hits.append(self.open_hits)
        self.block_keys.append(self.open_keys)
        self.open_writes = [0.0] * len(self.open_writes)
        self.open_hits = 0.0
        self.open_keys = 0.0

    def expire(self, until: float, expiring: list[float]) -> None:
        """Retire the writes made before `until`: add them per node to `expiring`."""
        block = self.expired_block
        since = self.expired_until
        edges = self.edges
        closed = len(self.block_hits)
        while block < closed and since < until:
            start, end = edges[block], edges[block + 1]
            stop = min(end, until)
            share = (stop - max(start, since)) / (end - start)
            if share > 0.0:
                writes = self.block_writes[block]
                for node in range(len(expiring)):
                    expiring[node] += share * writes[node]
                hits = share * self.block_hits[block]
                self.alive_hits -= hits
                self.alive_keys -= share * self.block_keys[block]
                if self.ages:
                    # Entries that outlive the update interval expire old.
                    self.old_hits = max(0.0, self.old_hits - hits)
            since = stop
            if stop >= end:
                block += 1
        self.expired_block = block
        self.expired_until = since

    def age(self, until: float) -> None:
        """Count the hits of writes made before `until` as old (past the update interval)."""
        block = self.aged_block
        since = max(self.aged_until, self.expired_until)
        edges = self.edges
        closed = len(self.block_hits)
        while block < closed and since < until:
            start, end = edges[block], edges[block + 1]
            stop = min(end, until)
            if stop > since:
                self.old_hits += (stop - max(start, since)) / (end - start) * self.block_hits[block]
            since = max(since, stop)
            if stop >= end:
                block += 1
        self.aged_block = block
        self.aged_until = since

    def forget_spent_blocks(self) -> None:
        """Drop the blocks both expired and aged, so that a long segment keeps a few only."""
        spent = min(self.expired_block, self.aged_block) if self.ages else self.expired_block
        if spent < 64:
            return
        del self.edges[:spent]
        del self.block_writes[:spent]
        del self.block_hits[:spent]
        del self.block_keys[:spent]
        self.expired_block -= spent
        if self.ages:
            self.aged_block -= spent

    def spent(self) -> bool:
        return self.expired_until >= self.edges[-1] and len(self.block_hits) == self.expired_block


class Cohorts:
    """One cache class's held entries by popularity node, and their writes by TTL segment."""

    __slots__ = (
        "held",
        "hit_weight",
        "key_weight",
        "mean_rate",
        "now",
        "popularity",
        "segments",
        "stale_now",
        "started",
        "update_interval",
    )

    def __init__(self, nodes: PopularityNodes, update_interval: float, now: float) -> None:
        self.popularity = list(nodes.popularity)
        self.hit_weight = list(nodes.hit_weight)
        self.key_weight = list(nodes.key_weight)
        self.update_interval = update_interval
        self.now = now
        # The first write held: the flush, or a TTL ago for a steady start.
        self.started = now
        self.held = [0.0] * len(self.popularity)
        self.segments: list[Segment] = []
        self.mean_rate = 0.0
        # The stale share of hits now, at the end of the last step.
        self.stale_now = 0.0

    @classmethod
    def empty(
        cls, nodes: PopularityNodes, update_interval: float, now: float, rate: float
    ) -> Cohorts:
        """Nothing held, as right after a flush."""
        cohorts = cls(nodes, update_interval, now)
        cohorts.mean_rate = rate
        return cohorts

    @classmethod
    def steady(
        cls, nodes: PopularityNodes, update_interval: float, now: float, rate: float, ttl: float
    ) -> Cohorts:
        """Held as after a long time at `rate` and `ttl`: the writes of the last TTL, evenly."""
        cohorts = cls(nodes, update_interval, now)
        cohorts.mean_rate = rate
        if ttl <= 0.0:
            return cohorts
        cohorts.started = now - ttl
        held = steady_held(cohorts.popularity, rate * ttl)
        segment = Segment(ttl, now - ttl, len(held), ttl, ttl > update_interval)
        segment.open_writes = list(held)
        segment.open_hits = sum(w * h for w, h in zip(nodes.hit_weight, held, strict=True))
        segment.open_keys = sum(w * h for w, h in zip(nodes.key_weight, held, strict=True))
        segment.close_block(now)
        segment.alive_hits = segment.block_hits[0]
        segment.alive_keys = segment.block_keys[0]
        if ttl > update_interval:
            segment.old_hits = segment.alive_hits * (ttl - update_interval) / ttl
            segment.aged_until = now - update_interval
            cohorts.stale_now = (ttl - update_interval) / ttl
        cohorts.held = held
        cohorts.segments.append(segment)
        return cohorts

    def step(self, rate: float, ttl: float, dt: float) -> tuple[float, float, float]:
        """Advance `dt` seconds at `rate` requests per second, writing with `ttl`.

        Returns the step's mean hit rate, stale share of hits and keys held.
        """
        now = self.now
        segments = self.segments
        if not segments or segments[-1].ttl != ttl:
            if segments:
                segments[-1].close_block(now)
            ages = ttl > self.update_interval
            segments.append(Segment(ttl, now, len(self.held), dt, ages))
        current = segments[-1]
        end = now + dt
        expiring = [0.0] * len(self.held)
        for segment in segments:
            segment.expire(end - segment.ttl, expiring)
            if segment.ages:
                segment.age(end - self.update_interval)
            segment.forget_spent_blocks()
        # The share of this step's writes that expires within the step (a TTL under a step).
        own = max(0.0, 1.0 - ttl / dt) if dt > 0.0 else 0.0
        hit_rate = 0.0
        keys_held = 0.0
        written_hits = 0.0
        written_keys = 0.0
        held = self.held
        popularity = self.popularity
        hit_weight = self.hit_weight
        key_weight = self.key_weight
        open_writes = current.open_writes
        for node in range(len(held)):
            y = rate * popularity[node] * dt
            if y < 1e-4:
                kept = 1.0 - y / 2.0 + y * y / 6.0
                late = 0.5 - y / 6.0 + y * y / 24.0
                decay = 1.0 - y * kept
            else:
                decay = math.exp(-y)
                kept = (1.0 - decay) / y
                late = (1.0 - kept) / y
            before = held[node]
            expired = expiring[node]
            written = ((1.0 - decay) * (1.0 - before) + (1.0 - kept) * expired) / (
                1.0 - own + kept * own
            )
            leaving = expired + own * written
            after = before + written - leaving
            held[node] = after if after > 0.0 else 0.0
            mean_held = before * kept + (1.0 - kept) - late * leaving
            if mean_held < 0.0:
                mean_held = 0.0
            open_writes[node] += written
            hit_rate += hit_weight[node] * mean_held
            keys_held += key_weight[node] * mean_held
            written_hits += hit_weight[node] * written
            written_keys += key_weight[node] * written
        current.open_hits += written_hits
        current.open_keys += written_keys
        current.alive_hits += written_hits * (1.0 - own)
        current.alive_keys += written_keys * (1.0 - own)
        if end - current.edges[-1] >= current.block_length * (1.0 - 1e-9):
            current.close_block(end)
        if len(segments) > 1:
            self.segments = [s for s in segments if s is current or not s.spent()]
        self.now = end
        if ttl > 0.0:
            self.mean_rate += (rate - self.mean_rate) * (1.0 - math.exp(-2.0 * dt / ttl))
        stale_before = self.stale_now
        self.stale_now = self.stale_share()
        return hit_rate, (stale_before + self.stale_now) / 2.0, keys_held

    def stale_share(self) -> float:
        """The share of the held entries' hits that are older than the update interval."""
        alive = 0.0
        old = 0.0
        for segment in self.segments:
            alive += segment.alive_hits
            old += segment.old_hits
        return min(1.0, old / alive) if alive > 0.0 else 0.0

    def mean_ttl(self) -> float:
        """The TTL of the held entries, weighted by keys held."""
        keys = 0.0
        weighted = 0.0
        for segment in self.segments:
            alive = max(0.0, segment.alive_keys)
            keys += alive
            weighted += alive * segment.ttl
        return weighted / keys if keys > 0.0 else self.segments[-1].ttl if self.segments else 0.0

    def settled(self, hit_rate: float, keys_held: float) -> bool:
        """Steady again: one TTL segment older than its TTL, held as its steady state holds."""
        if len(self.segments) != 1:
            return False
        segment = self.segments[0]
        if self.now - segment.edges[0] < segment.ttl:
            return False
        steady = steady_held(self.popularity, self.mean_rate * segment.ttl)
        steady_hits = sum(w * h for w, h in zip(self.hit_weight, steady, strict=True))
        steady_keys = sum(w * h for w, h in zip(self.key_weight, steady, strict=True))
        return abs(hit_rate - steady_hits) <= SETTLED_HIT_RATE and abs(
            keys_held - steady_keys
        ) <= SETTLED_KEYS_HELD * max(steady_keys, 1.0)
