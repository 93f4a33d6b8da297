"""The ML prediction service: replicas that serve requests in batches.

Each replica collects up to b requests and runs them together in t(b) = overhead + b·per_item
seconds, so a larger batch raises throughput (b / t(b)) but makes requests wait for the batch to
fill. With M replicas and λ requests/s, a batch fills from λ/M arrivals per second, at most
`max_batch_wait` seconds: effective size b' = min(b, 1 + (λ/M)·max_batch_wait), forming delay
(b' - 1)/(2λ/M) on average. Batches then queue as M/M/M with arrival rate λ/b' and service time
t(b') (see `service` for overload). p95 = p95 of the batch queue + the mean forming delay.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotuner.sim.service import serve


@dataclass(frozen=True, slots=True)
class MLSpec:
    replicas: int = 2
    batch_size: int = 8
    batch_overhead: float = 0.008
    per_item_seconds: float = 0.002
    max_batch_wait: float = 0.01
    # Share of API requests that call the ML service.
    share: float = 0.4
    timeout: float = 10.0


# A step of the ML service, in this order: p95 and mean response time (s), utilisation, the
# backlog carried forward and the effective batch size. A plain tuple: one is made every
# simulated step.
MLReading = tuple[float, float, float, float, float]


def ml_step(
    spec: MLSpec, request_rate: float, replicas: int, batch_size: int, backlog: float, dt: float
) -> MLReading:
    per_replica = request_rate / replicas if replicas > 0 else 0.0
    # min() and max() written as comparisons: a builtin call costs several times as much, and
    # this runs every simulated step.
    filled = 1.0 + per_replica * spec.max_batch_wait
    capped = filled if filled < batch_size else float(batch_size)
    batch = capped if capped > 1.0 else 1.0
    forming = (batch - 1.0) / (2.0 * per_replica) if per_replica > 0 else 0.0
    batch_seconds = spec.batch_overhead + batch * spec.per_item_seconds
    p95, mean, utilisation, backlog, _ = serve(
        request_rate / batch, batch_seconds, replicas, backlog, dt, spec.timeout
    )
    p95 += forming
    mean += forming
    timeout = spec.timeout
    return (
        p95 if p95 < timeout else timeout,
        mean if mean < timeout else timeout,
        utilisation,
        backlog,
        batch,
    )
