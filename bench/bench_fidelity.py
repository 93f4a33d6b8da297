"""How close the simulator's models are to real servers on loopback: measured against modelled.

Run: .venv/bin/python bench/bench_fidelity.py [--workers 16] [--mean-sleep 0.1] [--seed 1]

HTTP (bench/fidelity_http.py): gunicorn with `--workers` sync workers runs an app that sleeps
a service time (mean `--mean-sleep`; exponential, or a fixed 70 ms plus an exponential) drawn
by the load generator's seeded generator. An open-loop Poisson generator (asyncio, one
connection per request) measures each response time from the request's scheduled arrival.
First the server's own per-request overhead: mean response time less mean sleep at utilisation
0.2 (the model's `overhead`), and for comparison the part of it that holds a worker: with every
worker busy (closed loop, fixed sleeps, 5 s), the time per request a worker spends outside the
app's sleep, by the app's clock. Then p95 at utilisations 0.5-0.95 (and 0.9 with the fixed
part), where utilisation is λ·(mean sleep + overhead)/c (the nominal λ·mean sleep/c is shown
beside it), each after a 5 s warm-up from an empty queue; and an overload at 1.25 x the
workers' capacity from an empty queue, p95 per 5 s window of arrivals. The model is `api_step`
with that many workers, ample cores, `overhead` = the measured overhead, the fixed part of the
sleep as its (fixed) CPU work or 1 ns, and the load each run offered: its arrivals per second
and `downstream_seconds` = its mean drawn exponential part (a 25 s sample's mean sleep is off
by 1-3%, which moves an overload's growth by 5-15%). Its p95 with no backlog for the steady
rows; stepped (0.5 s steps, backlog carried) for the overload, whose growth (p95 gained per
second, the least-squares slope over the windows) is compared. Beside each, the same requests
replayed through an ideal FCFS queue of c servers holding each for its sleep plus the
overhead: what the formulas approximate, without their approximations.

Columns: model = `api_step` as above; model* = the same with only the worker-held part of the
overhead as its `overhead` and the rest added to every response (latency outside the workers);
FCFS = the ideal FCFS replay; M/M/c = M/M/c with the sleeps alone (no overhead); sleeps = the
drawn sleeps' own p95; lag = how late the requests were sent, on average.

Cache (bench/fidelity_cache.py): a Redis cache-aside on 127.0.0.1:6379 (keys under a prefix
unique to the run, deleted at the end) under Zipf(0.9) requests over 20,000 keys at 2,000 a
second, started in its steady state, with the TTL 5 s, raised to 15 s at 10 s, cut to 1 s at
40 s. Time is compressed 60x: the model's variable is λ·T, so this stands for 33 requests a
second with TTLs 300 -> 900 -> 60 s and 150 s windows. Hit rates per 2.5 s window against
`ttl_step_response` (the simulator's `CacheState`) through the same schedule in 0.05 s steps,
and in steady state (TTL 5 s over 0-10 s, 15 s over 25-40 s, a full TTL, 1 s over 57.5-62.5 s)
against `cache_tables`.

Goals (issue 10): p95 within 15% up to utilisation 0.9; the overload's growth within 25%; hit
rate within 1 point in steady state and within 3 points in every window through a TTL change.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
# The harness modules sit beside this file; bench/ is not an installed package.
sys.path.insert(0, str(REPO))

from bench import fidelity_cache as cache  # noqa: E402
from bench import fidelity_http as http  # noqa: E402
from bench.fidelity_server import Gunicorn  # noqa: E402

# (fixed part of the sleep in s, utilisation): measured seconds. The fixed-part row puts the
# model's M/G/c (Allen-Cunneen) against a service time that is mostly fixed.
STEADY_POINTS = {
    (0.0, 0.5): 10.0,
    (0.0, 0.7): 15.0,
    (0.0, 0.8): 20.0,
    (0.0, 0.9): 50.0,
    (0.0, 0.95): 20.0,
    (0.07, 0.9): 35.0,
}
GOAL_UP_TO = 0.9
WARMUP = 5.0
P95_GOAL = 0.15
GROWTH_GOAL = 0.25
OVERLOAD_FACTOR, OVERLOAD_SECONDS, OVERLOAD_WINDOW = 1.25, 25.0, 5.0

CACHE_KEYS, CACHE_ZIPF, CACHE_RATE = 20000, 0.9, 2000.0
COMPRESSION = 60.0
SCHEDULE: cache.Schedule = ((0.0, 5.0), (10.0, 15.0), (40.0, 1.0))
CACHE_SECONDS = 62.5
CACHE_WINDOW = 2.5
STEADY_SPANS = ((5.0, 0.0, 10.0), (15.0, 25.0, 40.0), (1.0, 57.5, 62.5))
CHANGES = (("raise 5 -> 15 s", 10.0, 40.0), ("cut 15 -> 1 s", 40.0, 57.5))
STEADY_GOAL, CHANGE_GOAL = 0.01, 0.03


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


STEADY_HEADER = (
    "  HTTP p95 (s) service  util nominal  req/s     n  measured  model    err   model*    err"
    "   FCFS  M/M/c  sleeps  lag ms  goal"
)


def run_http(workers: int, mean_sleep: float, seed: int) -> list[str]:
    rows: list[str] = [STEADY_HEADER]
    with Gunicorn(workers) as server:
        overhead, low = http.measure_overhead(server, mean_sleep, 8.0, seed)
        print(
            f"  overhead: mean response {low.response_times.mean() * 1000:.1f} ms - mean sleep "
            f"{low.sleeps.mean() * 1000:.1f} ms = {overhead * 1000:.2f} ms per request "
            f"({low.arrivals.size} requests at utilisation 0.2)"
        )
        held = http.measure_worker_overhead(server, mean_sleep, 5.0)
        print(
            f"  of which holds a worker: {held * 1000:.2f} ms (every worker busy, closed loop, "
            f"fixed {mean_sleep * 1000:.0f} ms sleeps, from the app's clock)"
        )
        print(rows[0], flush=True)
        for index, ((fixed, utilisation), seconds) in enumerate(STEADY_POINTS.items()):
            row = http.measure_steady(
                server,
                mean_sleep,
                overhead,
                held,
                utilisation,
                seconds,
                WARMUP,
                seed + 1 + index,
                fixed,
            )
            judged = utilisation <= GOAL_UP_TO + 1e-9
            mark = verdict(abs(row.error) <= P95_GOAL) if judged else "(none)"
            held_error = row.modelled_held_p95 / row.measured_p95 - 1.0
            service = f"{fixed * 1000:.0f}+exp" if fixed > 0.0 else "exp"
            rows.append(
                f"  {'':12} {service:>7}  {utilisation:4.2f}    {row.nominal:4.2f}  {row.rate:5.1f}  "
                f"{row.requests:4d}     {row.measured_p95:5.3f}  {row.modelled_p95:5.3f} "
                f"{row.error:+6.1%}    {row.modelled_held_p95:5.3f} {held_error:+6.1%}  "
                f"{row.replay_p95:5.3f}  {row.mmc_p95:5.3f}   {row.sleeps_p95:5.3f}  "
                f"{row.mean_send_lag * 1000:6.1f}  {mark}"
            )
            print(rows[-1], flush=True)
        overload = http.measure_overload(
            server,
            mean_sleep,
            overhead,
            held,
            OVERLOAD_FACTOR,
            OVERLOAD_SECONDS,
            OVERLOAD_WINDOW,
            seed,
        )
    print("  overload p95 (s) per window of arrivals: measured, model, model*, FCFS replay")
    for (start, stop), *figures in zip(
        overload.windows,
        overload.measured_p95,
        overload.modelled_p95,
        overload.modelled_held_p95,
        overload.replay_p95,
        strict=True,
    ):
        print(f"    {start:4.0f}-{stop:3.0f} s  " + "  ".join(f"{f:6.3f}" for f in figures))
    held_error = overload.modelled_held_growth / overload.measured_growth - 1.0
    rows.append(
        f"  HTTP overload {OVERLOAD_FACTOR:.2f}x capacity ({overload.rate:.0f}/s on {workers} "
        f"workers), p95 growth (s/s): measured {overload.measured_growth:.3f}, model "
        f"{overload.modelled_growth:.3f} ({overload.error:+.1%}), model* "
        f"{overload.modelled_held_growth:.3f} ({held_error:+.1%}), FCFS replay "
        f"{overload.replay_growth:.3f}  {verdict(abs(overload.error) <= GROWTH_GOAL)}"
    )
    print(rows[-1], flush=True)
    rows.append(
        f"  (overhead {overhead * 1000:.2f} ms at low load, {held * 1000:.2f} ms of it holding a "
        "worker; model* = the model with the worker-held part as its overhead, the rest added "
        "as latency outside the workers)"
    )
    return rows


def run_cache(seed: int) -> list[str]:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as error:
        raise SystemExit(
            f"the cache half needs the Redis at 127.0.0.1:6379 ({error}): start redis-server"
        ) from None
    try:
        run = cache.cache_aside(
            client, CACHE_KEYS, CACHE_ZIPF, CACHE_RATE, SCHEDULE, CACHE_SECONDS, seed
        )
    finally:
        client.close()
    print(
        f"  {run.times.size} requests, sent late by {run.lags.mean() * 1000:.1f} ms on average "
        f"(at most {run.lags.max() * 1000:.0f} ms)"
    )
    windows = cache.windows_between(0.0, CACHE_SECONDS, CACHE_WINDOW)
    modelled = cache.modelled_windows(CACHE_KEYS, CACHE_ZIPF, CACHE_RATE, SCHEDULE, windows)
    errors: dict[float, float] = {}
    for (start, stop), model in zip(windows, modelled, strict=True):
        measured = run.hit_rate(start, stop)
        errors[start] = model - measured
        print(
            f"    window {start:5.1f}-{stop:5.1f} s, TTL {cache.ttl_at(SCHEDULE, start):4.1f} s: "
            f"hit rate measured {measured:.3f}, modelled {model:.3f} ({100 * (model - measured):+5.1f} pt)"
        )
    rows: list[str] = []
    for ttl, start, stop in STEADY_SPANS:
        measured = run.hit_rate(start, stop)
        model = cache.steady_hit_rate(CACHE_KEYS, CACHE_ZIPF, CACHE_RATE, ttl)
        rows.append(
            f"  Redis steady hit rate, TTL {ttl:4.1f} s (stands for {ttl * COMPRESSION:4.0f} s), "
            f"{start:.1f}-{stop:.1f} s: measured {measured:.3f}, modelled {model:.3f} "
            f"({100 * (model - measured):+.1f} pt)  {verdict(abs(model - measured) <= STEADY_GOAL)}"
        )
        print(rows[-1])
    for label, start, stop in CHANGES:
        through = [abs(error) for at, error in errors.items() if start <= at < stop]
        worst = max(through)
        rows.append(
            f"  Redis hit rate through a TTL {label}, {start:.0f}-{stop:.1f} s: worst window "
            f"{100 * worst:.1f} pt, mean {100 * sum(through) / len(through):.1f} pt  "
            f"{verdict(worst <= CHANGE_GOAL)}"
        )
        print(rows[-1])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16, help="gunicorn sync workers")
    parser.add_argument("--mean-sleep", type=float, default=0.1, help="mean service time, s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    print(
        f"fidelity: {platform.python_implementation()} {platform.python_version()}, "
        f"{http.describe_machine()}"
    )
    print(
        f"HTTP: gunicorn, {args.workers} sync workers, exponential sleeps of mean "
        f"{args.mean_sleep * 1000:.0f} ms, open-loop Poisson load"
    )
    rows = run_http(args.workers, args.mean_sleep, args.seed)
    print(
        f"Redis cache-aside: Zipf({CACHE_ZIPF}) over {CACHE_KEYS} keys, {CACHE_RATE:.0f} req/s, "
        f"TTL schedule {SCHEDULE} (time compressed {COMPRESSION:.0f}x)"
    )
    rows += run_cache(args.seed)
    print(f"\nmeasured against modelled ({time.monotonic() - started:.0f} s wall):")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
