"""Fidelity, HTTP half: a real gunicorn service under open-loop Poisson load, and the model.

The service is `bench/fidelity_app.py` under gunicorn (`bench/fidelity_server.py`) with
`workers` sync workers on a free loopback port. Each request asks the app to sleep a service time drawn from the load
generator's seeded generator (exponential with the given mean), so the service times are known
exactly and CPU contention does not make them.

The load generator is open loop: arrival times are drawn in advance (Poisson, seeded) and each
request is sent at its time whatever the replies are doing, on its own connection (a sync
worker closes the connection after each reply, so keep-alive would not hold one), by one
asyncio loop with as many connections in flight as the backlog needs. A request's response
time runs from its scheduled arrival to the last byte of its reply, so a late send counts
against the server, as it would for a real client; how late the sends were is reported too.

The model is driven through `autotuner.sim.api.api_step` only: one ready pod with `workers`
workers, cores ample enough that CPU never binds, `cpu_seconds` tiny, the measured per-request
overhead as the spec's `overhead`, and the load the run offered: its arrivals per second, and
its mean drawn sleep as `downstream_seconds`.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from autotuner.sim.api import APISpec, api_step
from autotuner.sim.queueing import response_quantile
from bench.fidelity_server import Gunicorn, request

# Cores so many that the CPU never binds, and CPU work so small it is not there: the model's
# queue is then the workers' alone, as the sleeping app's is.
_AMPLE_CORES = 1.0e6
_TINY_CPU_SECONDS = 1.0e-9
_MODEL_TIMEOUT = 3600.0


@dataclass(frozen=True, slots=True)
class LoadRun:
    """One open-loop run: per request its scheduled arrival (s from the start), its drawn
    sleep, its response time and how late it was sent (both s)."""

    arrivals: np.ndarray
    sleeps: np.ndarray
    response_times: np.ndarray
    send_lags: np.ndarray

    def between(self, start: float, end: float) -> LoadRun:
        chosen = (self.arrivals >= start) & (self.arrivals < end)
        return LoadRun(
            self.arrivals[chosen],
            self.sleeps[chosen],
            self.response_times[chosen],
            self.send_lags[chosen],
        )

    def p95(self) -> float:
        return float(np.quantile(self.response_times, 0.95))


def open_loop(
    port: int, rate: float, mean_sleep: float, duration: float, seed: int, fixed: float = 0.0
) -> LoadRun:
    """Poisson arrivals at `rate` per second for `duration` seconds; sleeps of `fixed` plus an
    exponential, `mean_sleep` in all."""
    generator = np.random.default_rng(seed)
    expected = int(rate * duration * 1.2) + 100
    arrivals = np.cumsum(generator.exponential(1.0 / rate, expected))
    arrivals = arrivals[arrivals < duration]
    sleeps = fixed + generator.exponential(mean_sleep - fixed, arrivals.size)
    response_times, lags = asyncio.run(_drive(port, arrivals, sleeps))
    return LoadRun(arrivals, sleeps, response_times, lags)


async def _drive(
    port: int, arrivals: np.ndarray, sleeps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    lags = np.zeros(arrivals.size)
    tasks = []
    for index, (offset, sleep_seconds) in enumerate(zip(arrivals, sleeps, strict=True)):
        scheduled = start + float(offset)
        ahead = scheduled - loop.time()
        if ahead > 0.0:
            await asyncio.sleep(ahead)
        lags[index] = loop.time() - scheduled
        tasks.append(asyncio.create_task(_one(port, float(sleep_seconds), scheduled)))
    finished = await asyncio.gather(*tasks)
    return np.array(finished), lags


async def _one(port: int, sleep_seconds: float, scheduled: float) -> float:
    return (await _exchange(port, sleep_seconds, scheduled))[0]


# A reply as the app reports it: response time (s), the worker's pid, and the wall-clock times
# at which the app was entered and left.
Reply = tuple[float, int, float, float]


async def _exchange(port: int, sleep_seconds: float, scheduled: float) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request(sleep_seconds))
        reply = await reader.read()
    finally:
        writer.close()
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the service answered {reply[:60]!r}: the figures would mean nothing")
    elapsed = asyncio.get_running_loop().time() - scheduled
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    fields = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    )
    return elapsed, int(fields["x-worker"]), float(fields["x-entered"]), float(fields["x-left"])


def replay_fcfs(run: LoadRun, workers: int, overhead: float) -> np.ndarray:
    """Response times of the same requests through an ideal FCFS queue of `workers` servers,
    each request holding one for its sleep plus `overhead`: what the formulas approximate,
    without their sampling or their approximations (a check on both, not part of the model)."""
    free_at = [0.0] * workers
    response_times = np.empty(run.arrivals.size)
    for index, (arrival, sleep_seconds) in enumerate(zip(run.arrivals, run.sleeps, strict=True)):
        start = max(float(arrival), heapq.heappop(free_at))
        end = start + float(sleep_seconds) + overhead
        heapq.heappush(free_at, end)
        response_times[index] = end - arrival
    return response_times


def model_spec(workers: int, overhead: float) -> APISpec:
    return APISpec(
        replicas=1,
        workers=workers,
        cores=_AMPLE_CORES,
        cpu_seconds=_TINY_CPU_SECONDS,
        timeout=_MODEL_TIMEOUT,
        overhead=overhead,
        cpu_fixed_share=1.0,
    )


def modelled_p95(
    workers: int, mean_sleep: float, overhead: float, rate: float, fixed: float = 0.0
) -> float:
    """The model's steady-state p95: one `api_step` with no backlog. A fixed part of the sleep
    goes in as fixed CPU work (never stretched, the cores being ample), the rest as the
    exponential downstream wait."""
    spec = model_spec(workers, overhead)
    cpu = fixed if fixed > _TINY_CPU_SECONDS else _TINY_CPU_SECONDS
    return api_step(spec, rate, 1, cpu, mean_sleep - fixed, 0.0, 1.0)[0]


def plain_mmc_p95(workers: int, mean_sleep: float, rate: float) -> float:
    """M/M/c with the mean sleep as the service time, no overhead: what the sleeps alone give."""
    return response_quantile(rate, 1.0 / mean_sleep, workers)


def modelled_windows(
    workers: int,
    mean_sleep: float,
    overhead: float,
    rate: float,
    windows: Sequence[tuple[float, float]],
    steps_per_window: int = 10,
) -> list[float]:
    """`api_step` stepped from an empty queue; per window the mean of its steps' p95."""
    spec = model_spec(workers, overhead)
    end = windows[-1][1]
    dt = (windows[0][1] - windows[0][0]) / steps_per_window
    backlog, t = 0.0, 0.0
    step_p95: list[tuple[float, float]] = []
    while t < end - 1e-9:
        p95, _, _, backlog, _ = api_step(spec, rate, 1, _TINY_CPU_SECONDS, mean_sleep, backlog, dt)
        step_p95.append((t + dt / 2.0, p95))
        t += dt
    return [
        float(np.mean([p for mid, p in step_p95 if start <= mid < stop])) for start, stop in windows
    ]


@dataclass(frozen=True, slots=True)
class SteadyRow:
    # The fixed part of the sleeps (s); the rest is exponential.
    fixed: float
    # λ·(E[sleep] + overhead)/c, the workers' true utilisation; `nominal` leaves out the overhead.
    utilisation: float
    nominal: float
    rate: float
    requests: int
    measured_p95: float
    modelled_p95: float
    # The model with only the worker-held overhead holding a worker, the rest of the low-load
    # overhead added to every response as latency outside the workers.
    modelled_held_p95: float
    mmc_p95: float
    # The same requests through an ideal FCFS queue (`replay_fcfs`).
    replay_p95: float
    # The p95 of the drawn sleeps alone: how far this sample's service times sit from their
    # distribution's (for the exponential of mean S, S·ln 20).
    sleeps_p95: float
    mean_send_lag: float

    @property
    def error(self) -> float:
        return self.modelled_p95 / self.measured_p95 - 1.0


@dataclass(frozen=True, slots=True)
class OverloadResult:
    rate: float
    windows: tuple[tuple[float, float], ...]
    measured_p95: tuple[float, ...]
    modelled_p95: tuple[float, ...]
    # The model with only the worker-held overhead holding a worker, per window.
    modelled_held_p95: tuple[float, ...]
    # The same requests through an ideal FCFS queue (`replay_fcfs`), per window.
    replay_p95: tuple[float, ...]

    @staticmethod
    def _growth(values: Sequence[float], windows: Sequence[tuple[float, float]]) -> float:
        """p95 gained per second (s/s): the least-squares slope over the windows' middles."""
        middles = [(start + stop) / 2.0 for start, stop in windows]
        return float(np.polyfit(middles, values, 1)[0])

    @property
    def measured_growth(self) -> float:
        return self._growth(self.measured_p95, self.windows)

    @property
    def modelled_growth(self) -> float:
        return self._growth(self.modelled_p95, self.windows)

    @property
    def modelled_held_growth(self) -> float:
        return self._growth(self.modelled_held_p95, self.windows)

    @property
    def replay_growth(self) -> float:
        return self._growth(self.replay_p95, self.windows)

    @property
    def error(self) -> float:
        return self.modelled_growth / self.measured_growth - 1.0


def measure_overhead(
    server: Gunicorn, mean_sleep: float, duration: float, seed: int, utilisation: float = 0.2
) -> tuple[float, LoadRun]:
    """Mean response time less mean sleep at low load: the server's own cost per request."""
    rate = utilisation * server.workers / mean_sleep
    run = open_loop(server.port, rate, mean_sleep, duration, seed)
    return float(np.mean(run.response_times) - np.mean(run.sleeps)), run


def measure_worker_overhead(
    server: Gunicorn, sleep_seconds: float, duration: float, clients_per_worker: int = 3
) -> float:
    """The part of the overhead that holds a worker: with every worker busy (closed loop,
    more clients than workers), the mean time per request a worker spends outside the app's
    sleep, from the app's own clock: the gap from leaving one request to entering the next,
    plus the sleep's overshoot. The rest of the low-load figure is the client's and the
    kernel's (waking up, connecting), which a busy worker does not wait for."""
    replies = asyncio.run(_saturate(server, sleep_seconds, duration, clients_per_worker))
    by_worker: dict[int, list[tuple[float, float]]] = {}
    for _, worker, entered, left in replies:
        by_worker.setdefault(worker, []).append((entered, left))
    held: list[float] = []
    for visits in by_worker.values():
        visits.sort()
        # The first and last second are left out: workers are not all busy there.
        first, last = visits[0][0] + 1.0, visits[-1][1] - 1.0
        for (entered, left), (next_entered, _) in pairwise(visits):
            if first <= entered and next_entered <= last:
                held.append(next_entered - left + (left - entered - sleep_seconds))
    return float(np.mean(held))


async def _saturate(
    server: Gunicorn, sleep_seconds: float, duration: float, clients_per_worker: int
) -> list[Reply]:
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    replies: list[Reply] = []

    async def client() -> None:
        while loop.time() < end:
            replies.append(await _exchange(server.port, sleep_seconds, loop.time()))

    await asyncio.gather(*(client() for _ in range(clients_per_worker * server.workers)))
    return replies


def measure_steady(
    server: Gunicorn,
    mean_sleep: float,
    overhead: float,
    held: float,
    utilisation: float,
    duration: float,
    warmup: float,
    seed: int,
    fixed: float = 0.0,
) -> SteadyRow:
    """p95 of the requests arriving after `warmup`, at utilisation λ·(E[sleep] + overhead)/c;
    sleeps of `fixed` plus an exponential."""
    workers = server.workers
    rate = utilisation * workers / (mean_sleep + overhead)
    run = open_loop(server.port, rate, mean_sleep, warmup + duration, seed, fixed)
    kept = run.between(warmup, warmup + duration)
    replayed = replay_fcfs(run, workers, overhead)
    in_window = (run.arrivals >= warmup) & (run.arrivals < warmup + duration)
    # The model gets the load this run offered: its arrivals per second and mean drawn sleep.
    offered = kept.arrivals.size / duration
    drawn = float(np.mean(kept.sleeps))
    return SteadyRow(
        fixed=fixed,
        utilisation=utilisation,
        nominal=rate * mean_sleep / workers,
        rate=rate,
        requests=int(kept.arrivals.size),
        measured_p95=kept.p95(),
        modelled_p95=modelled_p95(workers, drawn, overhead, offered, fixed),
        modelled_held_p95=modelled_p95(workers, drawn, held, offered, fixed) + overhead - held,
        mmc_p95=plain_mmc_p95(workers, drawn, offered),
        replay_p95=float(np.quantile(replayed[in_window], 0.95)),
        sleeps_p95=float(np.quantile(kept.sleeps, 0.95)),
        mean_send_lag=float(np.mean(kept.send_lags)),
    )


def measure_overload(
    server: Gunicorn,
    mean_sleep: float,
    overhead: float,
    held: float,
    factor: float,
    duration: float,
    window: float,
    seed: int,
) -> OverloadResult:
    """`factor` x the workers' capacity c/(E[sleep] + overhead) from an empty queue; p95 per
    arrival window."""
    workers = server.workers
    rate = factor * workers / (mean_sleep + overhead)
    run = open_loop(server.port, rate, mean_sleep, duration, seed)
    count = max(2, math.floor(duration / window + 1e-9))
    windows = tuple((i * window, (i + 1) * window) for i in range(count))
    measured = tuple(run.between(start, stop).p95() for start, stop in windows)
    # The model gets the load this run offered: its arrivals per second and mean drawn sleep.
    offered = run.arrivals.size / duration
    drawn = float(np.mean(run.sleeps))
    modelled = tuple(modelled_windows(workers, drawn, overhead, offered, windows))
    modelled_held = tuple(
        p95 + overhead - held for p95 in modelled_windows(workers, drawn, held, offered, windows)
    )
    replayed = replay_fcfs(run, workers, overhead)
    replay = tuple(
        float(np.quantile(replayed[(run.arrivals >= start) & (run.arrivals < stop)], 0.95))
        for start, stop in windows
    )
    return OverloadResult(rate, windows, measured, modelled, modelled_held, replay)


def describe_machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.2f} at the start"
