"""One figure of a run: load, latencies, replicas, caches, pool and actions on one time axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from autotuner.sim.runner import RunResult
from autotuner.sim.scenario import Scenario


def plot_runs(scenario: Scenario, results: Sequence[RunResult], out: Path) -> None:
    """Write a PNG with one column per run (two with --vs), panels sharing the time axis."""
    rows = 7
    fig, axes = plt.subplots(
        rows, len(results), figsize=(7.5 * len(results), 15), sharex=True, squeeze=False
    )
    caches = [c.name for c in scenario.system.caches]
    for column, result in enumerate(results):
        s = result.signals
        hours = result.times / 3600.0
        ax = axes[:, column]
        ax[0].set_title(f"{scenario.name}: policy {result.policy.value}")
        ax[0].plot(hours, s["load_rps"], color="tab:gray", lw=0.8)
        ax[0].set_ylabel("load (req/s)")

        ax[1].plot(hours, s["api_p95"], lw=0.8, label="API p95")
        ax[1].axhline(scenario.slos.api_p95, color="tab:red", ls="--", lw=0.8, label="API SLO")
        ax[1].set_yscale("log")
        ax[1].set_ylabel("API p95 (s)")
        ax[1].legend(loc="upper right", fontsize=7)

        ax[2].plot(hours, s["ml_p95"], lw=0.8, color="tab:purple", label="ML p95")
        ax[2].axhline(scenario.slos.ml_p95, color="tab:red", ls="--", lw=0.8, label="ML SLO")
        ax[2].set_yscale("log")
        ax[2].set_ylabel("ML p95 (s)")
        ax[2].legend(loc="upper right", fontsize=7)

        ax[3].step(hours, s["api_replicas"], where="post", label="API desired", lw=0.9)
        ax[3].plot(hours, s["api_ready"], label="API ready", lw=0.6, ls=":")
        ax[3].step(hours, s["ml_replicas"], where="post", label="ML desired", lw=0.9)
        ax[3].set_ylabel("replicas")
        ax[3].legend(loc="upper right", fontsize=7)

        for name in caches:
            ax[4].plot(hours, s[f"hit:{name}"], lw=0.8, label=name)
            ax[5].plot(hours, s[f"ttl:{name}"] / 60.0, lw=0.8, label=name)
        ax[4].set_ylabel("hit rate")
        ax[4].set_ylim(0, 1)
        ax[4].legend(loc="lower right", fontsize=6, ncol=2)
        ax[5].set_ylabel("TTL (min)")
        ax[5].set_yscale("log")

        ax[6].step(hours, s["pool_size"], where="post", label="pool size", color="tab:brown")
        ax[6].set_ylabel("pool size")
        usage = ax[6].twinx()
        usage.plot(hours, s["pool_usage"], lw=0.6, color="tab:olive", label="pool usage")
        usage.set_ylim(0, 1.05)
        usage.set_ylabel("usage")
        ax[6].set_xlabel("hours")

        for change in result.changes:
            color = "tab:green" if change.new > change.old else "tab:orange"
            ax[0].axvline(change.time / 3600.0, color=color, lw=0.4, alpha=0.6)
        ax[0].text(
            0.01,
            0.95,
            f"{len(result.changes)} actions (green up, orange down)",
            transform=ax[0].transAxes,
            fontsize=7,
            va="top",
        )
        for axis in ax:
            axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
