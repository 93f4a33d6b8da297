"""One figure of a run: load, latencies, replicas, caches, pool and actions on one time axis.

Long runs are binned to at most `MAX_POINTS` points per line (latencies keep each bin's worst
value, everything else its mean), so a three-week run stays readable. Fault spans are shaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.backend_bases import FigureCanvasBase

from autotuner.sim.faults import INSTANT_KINDS
from autotuner.sim.runner import RunResult
from autotuner.sim.scenario import Scenario

MAX_POINTS = 3000
ROWS = 8


def _binned(values: np.ndarray, size: int, worst: bool = False) -> np.ndarray:
    if size <= 1:
        return values
    usable = len(values) // size * size
    shaped = values[:usable].reshape(-1, size)
    return np.asarray(shaped.max(axis=1) if worst else shaped.mean(axis=1))


def _knob_label(knob: str) -> str:
    return knob.removeprefix("deployment/").removeprefix("key/").replace("crm:cache:ttl:", "ttl ")


def plot_target_problem(out: Path) -> str | None:
    """Why a plot cannot be written to `out`, or None; checked before a run, so that a long
    run is not lost to a typo in the file name."""
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if out.suffix.lower().removeprefix(".") not in formats:
        return (
            f"{out}: cannot tell the image format from {out.suffix or 'a name without a suffix'}; "
            f"end the name with one of {', '.join('.' + f for f in formats)}"
        )
    folder = out.parent
    if not folder.is_dir():
        return f"{out}: the folder {folder} does not exist; create it or write the plot elsewhere"
    if not os.access(folder, os.W_OK):
        return f"{out}: the folder {folder} is not writable"
    return None


def plot_runs(scenario: Scenario, results: Sequence[RunResult], out: Path) -> None:
    """Write a PNG with one column per run (more with --vs), panels sharing the time axis, and
    each row its y-axis across the columns so that runs compare at a glance."""
    fig, axes = plt.subplots(
        ROWS,
        len(results),
        figsize=(8 * len(results), 17),
        sharex=True,
        sharey="row",
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 1, 1, 1, 1, 1, 0.8, 1.1]},
    )
    caches = [c.name for c in scenario.system.caches]
    days = scenario.settings.duration > 2 * 86400
    unit, scale = ("days", 86400.0) if days else ("hours", 3600.0)
    knobs = sorted({c.knob for r in results for c in r.changes})
    # Shared rows get their limits from every run; room above the lines keeps legends clear.
    largest_pool = max(1.0, *(float(r.signals["pool_size"].max()) for r in results))
    longest_ttl = max(
        [1.0] + [float(r.signals[f"ttl:{name}"].max()) / 60.0 for r in results for name in caches]
    )
    for column, result in enumerate(results):
        s = result.signals
        size = max(1, len(result.times) // MAX_POINTS)
        x = _binned(result.times, size) / scale

        def line(
            name: str, worst: bool = False, s: dict[str, np.ndarray] = s, size: int = size
        ) -> np.ndarray:
            return _binned(s[name], size, worst)

        ax = axes[:, column]
        ax[0].set_title(f"{scenario.name}: policy {result.policy.value}")
        ax[0].plot(x, line("load_rps"), color="tab:gray", lw=0.8)
        ax[0].set_ylabel("load (req/s)")

        ax[1].plot(x, line("api_p95", worst=True), lw=0.8, label="API p95")
        ax[1].axhline(scenario.slos.api_p95, color="tab:red", ls="--", lw=0.9, label="SLO")
        ax[1].set_yscale("log")
        ax[1].set_ylabel("API p95 (s)")
        ax[1].legend(loc="upper right", fontsize=7)

        ax[2].plot(x, line("ml_p95", worst=True), lw=0.8, color="tab:purple", label="ML p95")
        ax[2].axhline(scenario.slos.ml_p95, color="tab:red", ls="--", lw=0.9, label="SLO")
        ax[2].set_yscale("log")
        ax[2].set_ylabel("ML p95 (s)")
        ax[2].legend(loc="upper right", fontsize=7)

        ax[3].plot(x, line("api_replicas"), label="API desired", lw=0.9)
        ax[3].plot(x, line("api_ready"), label="API ready", lw=0.7, ls=":", color="black")
        ax[3].plot(x, line("ml_replicas"), label="ML desired", lw=0.9, color="tab:green")
        ax[3].set_ylabel("replicas")
        ax[3].legend(loc="upper right", fontsize=7)

        for name in caches:
            ax[4].plot(x, line(f"hit:{name}"), lw=0.8, label=name)
            ax[5].plot(x, line(f"ttl:{name}") / 60.0, lw=0.8, label=name)
        ax[4].set_ylabel("hit rate")
        ax[4].set_ylim(0, 1)
        ax[4].legend(loc="lower right", fontsize=6, ncol=3)
        ax[5].set_ylabel("effective TTL (min)")
        ax[5].set_ylim(0, longest_ttl * 1.45)
        if caches:
            ax[5].legend(loc="upper right", fontsize=6, ncol=3)

        ax[6].plot(x, line("pool_size"), label="pool size", color="tab:brown")
        ax[6].set_ylim(0, largest_pool * 1.6)
        ax[6].set_ylabel("pool size")
        usage = ax[6].twinx()
        usage.plot(x, line("pool_usage"), lw=0.6, color="tab:olive", label="pool usage")
        usage.set_ylim(0, 1.05)
        if column == len(results) - 1:
            usage.set_ylabel("pool usage", color="tab:olive")
        else:
            usage.tick_params(labelright=False, right=False)
        # One legend for both axes of the panel.
        size_lines, size_labels = ax[6].get_legend_handles_labels()
        usage_lines, usage_labels = usage.get_legend_handles_labels()
        usage.legend(
            size_lines + usage_lines, size_labels + usage_labels, loc="upper right", fontsize=7
        )

        for change in result.changes:
            up = change.new > change.old
            ax[7].scatter(
                change.time / scale,
                knobs.index(change.knob),
                marker="^" if up else "v",
                color="tab:green" if up else "tab:orange",
                s=14,
            )
        ax[7].set_yticks(range(len(knobs)), [_knob_label(k) for k in knobs], fontsize=7)
        ax[7].set_ylim(-0.7, max(len(knobs), 1) - 0.3)
        ax[7].set_ylabel(f"actions ({len(result.changes)})")
        ax[7].set_xlabel(unit)

        for index, fault in enumerate(scenario.faults):
            start = fault.at / scale
            for axis in ax:
                if fault.kind in INSTANT_KINDS:
                    axis.axvline(start, color="tab:red", lw=0.8, alpha=0.5)
                else:
                    end = (fault.at + fault.duration) / scale
                    axis.axvspan(start, end, color="tab:red", alpha=0.08)
            # Labels step down the panel so that faults close in time stay legible.
            ax[0].annotate(
                fault.describe(),
                (start, 0.97 - 0.1 * (index % 4)),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                va="top",
                color="tab:red",
            )
        for axis in ax:
            axis.grid(alpha=0.3)
    # After every column is drawn, so that the shared top fits the highest run.
    axes[3, 0].set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
