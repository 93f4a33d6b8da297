"""Fidelity, cache half: a real Redis cache-aside under a Zipf key stream, and the model.

Each request (Poisson, seeded) reads one of `keys` keys drawn with Zipf(`exponent`)
popularity (`autotuner.sim.cache_cohorts.zipf_popularity`, the model's own ranks): GET, and on a
miss SET with PX = the TTL in force at that moment (the non-reset TTL cache of the model: a hit never extends
an entry). The requests due at one moment (usually one to a few, within a millisecond) go as
one MGET and one pipeline of SETs, so one Python client keeps up with thousands a second. The
TTL follows a schedule of (from second, TTL) steps. All keys live under a prefix unique to the
run and only those are deleted afterwards.

The cache starts in its steady state rather than empty: key i is present with the model's
probability h_i = l_i·T / (1 + l_i·T), with a remaining TTL uniform on (0, T) (an entry's age
is uniform over its life). A cold start would insert every popular key at once and make them
expire together every T seconds, ringing for many TTLs; the model, too, starts in its steady
state.

Time is compressed: the model's variable is λ·T, so a run at k times the request rate with
TTLs divided by k stands for the slower system; TTLs go in milliseconds (PX), so short ones are
exact.

The model is driven through `autotuner.sim.cache` only: `ttl_step_response` (the simulator's
`CacheState` stepped at the same request rate and TTL schedule, from its steady state) and
`cache_tables` for the steady state.
"""

from __future__ import annotations

import bisect
import time
import uuid
from dataclasses import dataclass

import numpy as np
import redis

from autotuner.sim.cache import CacheClass, cache_tables, ttl_step_response
from autotuner.sim.cache_cohorts import zipf_popularity

# TTL schedule: (from second, TTL seconds), sorted, the first from 0.
Schedule = tuple[tuple[float, float], ...]


def ttl_at(schedule: Schedule, t: float) -> float:
    starts = [start for start, _ in schedule]
    return schedule[max(0, bisect.bisect_right(starts, t) - 1)][1]


@dataclass(frozen=True, slots=True)
class CacheRun:
    """Per request: its scheduled time (s from the start), whether it hit, how late it ran."""

    times: np.ndarray
    hits: np.ndarray
    lags: np.ndarray

    def hit_rate(self, start: float, end: float) -> float:
        chosen = (self.times >= start) & (self.times < end)
        return float(np.mean(self.hits[chosen]))


def cache_aside(
    client: redis.Redis,
    keys: int,
    exponent: float,
    rate: float,
    schedule: Schedule,
    duration: float,
    seed: int,
    prefix: str | None = None,
) -> CacheRun:
    """Run the request stream against Redis; every key of the run is deleted afterwards.

    Keys are named `prefix` + rank; by default a prefix unique to the run.
    """
    generator = np.random.default_rng(seed)
    popularity = zipf_popularity(keys, exponent)
    expected = int(rate * duration * 1.2) + 100
    times = np.cumsum(generator.exponential(1.0 / rate, expected))
    times = times[times < duration]
    requested = generator.choice(keys, size=times.size, p=popularity)
    if prefix is None:
        prefix = f"autotuner-fidelity:{uuid.uuid4().hex}:"
    names = [f"{prefix}{index}".encode() for index in range(keys)]
    hits = np.zeros(times.size, dtype=bool)
    lags = np.zeros(times.size)
    ttl_ms = [round(ttl * 1000.0) for _, ttl in schedule]
    changes = [start for start, _ in schedule]
    try:
        _fill_steady(client, names, popularity * rate, schedule[0][1], generator)
        start = time.perf_counter()
        done = 0
        while done < times.size:
            elapsed = time.perf_counter() - start
            due = bisect.bisect_right(times, elapsed, lo=done)
            if due == done:
                time.sleep(max(0.0, float(times[done]) - elapsed))
                continue
            ttl = ttl_ms[max(0, bisect.bisect_right(changes, elapsed) - 1)]
            hits[done:due] = _serve(client, [names[i] for i in requested[done:due]], ttl)
            lags[done:due] = elapsed - times[done:due]
            done = due
    finally:
        _delete(client, names)
    return CacheRun(times, hits, lags)


def _serve(client: redis.Redis, batch: list[bytes], ttl_ms: int) -> list[bool]:
    """The requests due now, in order: one MGET, then SET PX for each miss.

    A key missed earlier in the same batch is set by then, so a later request for it hits,
    exactly as the same requests one by one would.
    """
    found = client.mget(batch)
    hits: list[bool] = []
    written: set[bytes] = set()
    pipeline = client.pipeline(transaction=False)
    for name, value in zip(batch, found, strict=True):
        hit = value is not None or name in written
        hits.append(hit)
        if not hit:
            written.add(name)
            pipeline.set(name, b"1", px=ttl_ms)
    if written:
        pipeline.execute()
    return hits


def _fill_steady(
    client: redis.Redis,
    names: list[bytes],
    per_key_rate: np.ndarray,
    ttl: float,
    generator: np.random.Generator,
) -> None:
    held = per_key_rate * ttl / (1.0 + per_key_rate * ttl)
    present = np.flatnonzero(generator.random(held.size) < held)
    remaining_ms = np.maximum(1, (generator.random(present.size) * ttl * 1000.0).astype(int))
    pipeline = client.pipeline(transaction=False)
    for index, milliseconds in zip(present, remaining_ms, strict=True):
        pipeline.set(names[index], b"1", px=int(milliseconds))
    pipeline.execute()


def _delete(client: redis.Redis, names: list[bytes]) -> None:
    for first in range(0, len(names), 1000):
        client.delete(*names[first : first + 1000])


def steady_hit_rate(keys: int, exponent: float, rate: float, ttl: float) -> float:
    """The model's steady-state hit rate H(λT)."""
    return cache_tables(keys, exponent).hit_rate(rate * ttl)


def modelled_windows(
    keys: int,
    exponent: float,
    rate: float,
    schedule: Schedule,
    windows: list[tuple[float, float]],
    dt: float = 0.05,
) -> list[float]:
    """`ttl_step_response` through the schedule, from its steady state at the first TTL; per
    window the mean of its steps' hit rates."""
    spec = CacheClass(name="fidelity", ttl=schedule[0][1], keys=keys, zipf=exponent, share=1.0)
    count = round(windows[-1][1] / dt)
    middles = [(step + 0.5) * dt for step in range(count)]
    ttls = [ttl_at(schedule, middle - dt / 2.0) for middle in middles]
    rows = ttl_step_response(spec, [rate] * count, ttls, dt)
    return [
        float(
            np.mean([row[0] for mid, row in zip(middles, rows, strict=True) if start <= mid < stop])
        )
        for start, stop in windows
    ]


def windows_between(start: float, end: float, width: float) -> list[tuple[float, float]]:
    count = round((end - start) / width)
    return [(start + i * width, start + (i + 1) * width) for i in range(count)]
