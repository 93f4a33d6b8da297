"""What a search found, for an SRE to act on: the Pareto front on tuning and validation traffic,
the chosen point as rule files and a diff, a picture, and the same as JSON.

The chosen point is the front's knee: each objective scaled to 0..1 across the front, the
point nearest to the corner where all are 0. Every point carries its figures on the validation
traffic, never tuned on, so a point that only fits the tuning days shows.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from autotuner.sim.scenario import Scenario
from autotuner.tune.space import TuneFile
from autotuner.tune.study import front, hpa_figures, measure

Figures = tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Point:
    trial: int
    parameters: dict[str, Any]
    tuning: Figures
    validation: Figures | None


@dataclass(frozen=True, slots=True)
class Outcome:
    study: str
    trials: int
    objectives: tuple[str, ...]
    current: Point
    hpa: tuple[Figures, Figures | None]
    front: tuple[Point, ...]
    chosen: Point
    # Days of traffic each side replays: figures compare per day.
    tuning_days: float = 1.0
    validation_days: float | None = None

    def held_up(self, point: Point) -> Figures | None:
        """Per objective, the point's validation figure per day over its tuning figure per
        day (1.0 where both are 0): how well it holds up on traffic never tuned on."""
        if point.validation is None or not self.validation_days:
            return None
        ratios = []
        for tuned, checked in zip(point.tuning, point.validation, strict=True):
            per_day_tuned = tuned / self.tuning_days
            per_day_checked = checked / self.validation_days
            if per_day_tuned > 0:
                ratios.append(per_day_checked / per_day_tuned)
            else:
                ratios.append(1.0 if per_day_checked == 0 else math.inf)
        return tuple(ratios)

    def beating_current(self) -> list[Point]:
        """Front points no worse than today's rules on every objective on the validation
        traffic, and better on one (on the tuning traffic without one)."""

        def figures(point: Point) -> Figures:
            return point.validation if point.validation is not None else point.tuning

        today = figures(self.current)
        return [
            p
            for p in self.front
            if p.trial != self.current.trial
            and all(a <= b for a, b in zip(figures(p), today, strict=True))
            and any(a < b for a, b in zip(figures(p), today, strict=True))
        ]

    def to_dict(self) -> dict[str, Any]:
        def point(p: Point) -> dict[str, Any]:
            return {
                "trial": p.trial,
                "parameters": p.parameters,
                "tuning": _named(self.objectives, p.tuning),
                "validation": None
                if p.validation is None
                else _named(self.objectives, p.validation),
            }

        tuning, validation = self.hpa
        return {
            "study": self.study,
            "trials": self.trials,
            "objectives": list(self.objectives),
            "current": point(self.current),
            "hpa": {
                "tuning": _named(self.objectives, tuning),
                "validation": None if validation is None else _named(self.objectives, validation),
            },
            "front": [point(p) for p in self.front],
            "chosen": self.chosen.trial,
            "chosen_held_up": None
            if (held := self.held_up(self.chosen)) is None
            else _named(self.objectives, held),
            "tuning_days": round(self.tuning_days, 4),
            "validation_days": None
            if self.validation_days is None
            else round(self.validation_days, 4),
            "beating_current": [p.trial for p in self.beating_current()],
        }


def _named(objectives: Sequence[str], values: Figures) -> dict[str, float]:
    return {name: round(value, 4) for name, value in zip(objectives, values, strict=True)}


def knee(points: Sequence[Point]) -> Point:
    count = len(points[0].tuning)
    lows = [min(p.tuning[i] for p in points) for i in range(count)]
    highs = [max(p.tuning[i] for p in points) for i in range(count)]

    def distance(p: Point) -> float:
        return math.sqrt(
            sum(
                ((p.tuning[i] - lows[i]) / (highs[i] - lows[i])) ** 2
                for i in range(count)
                if highs[i] > lows[i]
            )
        )

    return min(points, key=lambda p: (distance(p), p.trial))


def outcome(
    study: optuna.Study, tune: TuneFile, tuning: Scenario, validation: Scenario | None
) -> Outcome:
    """The study's front, each point also measured on the validation traffic."""

    def validated(values: dict[str, Any]) -> Figures | None:
        return None if validation is None else measure(tune, values, validation)

    trials = study.get_trials(deepcopy=False)
    first = next((t for t in trials if t.user_attrs.get("current")), trials[0])
    current_values = first.values or measure(tune, tune.current(), tuning)
    current = Point(
        first.number, dict(first.params), tuple(current_values), validated(first.params)
    )
    points = tuple(
        current
        if trial.number == current.trial
        else Point(trial.number, dict(trial.params), tuple(trial.values), validated(trial.params))
        for trial in front(study)
    )
    hpa = (
        hpa_figures(tune, tuning),
        None if validation is None else hpa_figures(tune, validation),
    )
    return Outcome(
        study=study.study_name,
        trials=len(trials),
        objectives=tuple(o.text for o in tune.objectives),
        current=current,
        hpa=hpa,
        front=points,
        chosen=knee(points) if points else current,
        tuning_days=tuning.settings.duration / 86400.0,
        validation_days=None if validation is None else validation.settings.duration / 86400.0,
    )


def table(result: Outcome) -> str:
    names = list(result.objectives)
    lines = [
        f"{result.trials} trials; the Pareto front on the tuning traffic (validation after /):"
    ]
    header = "  trial  " + "  ".join(f"{n:>28}" for n in names) + "  parameters"
    lines.append(header)

    def row(label: str, tuning: Figures, validation: Figures | None, parameters: str) -> str:
        cells = []
        for index, value in enumerate(tuning):
            after = f" / {validation[index]:.2f}" if validation is not None else ""
            cells.append(f"{value:.2f}{after}".rjust(28))
        return f"  {label:>5}  " + "  ".join(cells) + f"  {parameters}"

    for point in result.front:
        mark = "*" if point.trial == result.chosen.trial else " "
        params = ", ".join(f"{k}={_shown(v)}" for k, v in sorted(point.parameters.items()))
        lines.append(row(f"{mark}{point.trial}", point.tuning, point.validation, params))
    lines.append(
        row("now", result.current.tuning, result.current.validation, "the rules as they are")
    )
    lines.append(row("hpa", result.hpa[0], result.hpa[1], "the Kubernetes HPA, same floors"))
    held = result.held_up(result.chosen)
    if held is not None:
        lines.append(
            f"the chosen point on validation, per day, over tuning ({result.tuning_days:g} "
            f"days against {result.validation_days:g}): " + ", ".join(f"{v:.2f}x" for v in held)
        )
    beating = result.beating_current()
    lines.append(
        f"chosen: trial {result.chosen.trial} (*), the front's knee; "
        + (
            f"beating today's rules on every objective on the validation traffic: "
            f"{', '.join(str(p.trial) for p in beating)}"
            if beating
            else "no point beats today's rules on every objective on the validation traffic"
        )
    )
    return "\n".join(lines) + "\n"


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_chosen(tune: TuneFile, result: Outcome, directory: Path) -> str:
    """The chosen point's rule files in `directory`, and a unified diff against today's.

    Both sides are written as YAML from their parsed form, so the diff shows only the values
    that changed (the files' comments are not carried over).
    """
    written = tune.write(result.chosen.parameters, directory)
    diff: list[str] = []
    for source, target in zip(tune.rule_files, written, strict=True):
        before = yaml.safe_dump(yaml.safe_load(source.read_text()), sort_keys=False)
        after = target.read_text()
        diff.extend(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=str(source),
                tofile=str(target),
            )
        )
    return "".join(diff)


def plot(result: Outcome, study: optuna.Study, path: Path) -> None:
    """The first two objectives for every trial on the tuning traffic, with the front, today's
    rules, the HPA and the chosen point; beside it the same points on the validation traffic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    validating = result.hpa[1] is not None and result.current.validation is not None
    figure, panels = plt.subplots(1, 2 if validating else 1, figsize=(14 if validating else 8, 6))
    axes_list = list(panels) if validating else [panels]
    finished = [
        t.values
        for t in study.get_trials(deepcopy=False)
        if t.values and all(map(math.isfinite, t.values))
    ]
    tuning_axes = axes_list[0]
    tuning_axes.scatter(
        [v[0] for v in finished], [v[1] for v in finished], s=12, c="0.7", label="trials"
    )
    _points(tuning_axes, result, lambda p: p.tuning, result.hpa[0])
    tuning_axes.set_title(
        f"{result.study}: {result.trials} trials on {result.tuning_days:g} days (tuning)"
    )
    if validating:
        hpa = result.hpa[1]
        assert hpa is not None
        _points(axes_list[1], result, lambda p: p.validation or p.tuning, hpa)
        axes_list[1].set_title(f"the same points on {result.validation_days:g} days (validation)")
    for axes in axes_list:
        axes.set_xlabel(result.objectives[0])
        axes.set_ylabel(result.objectives[1])
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _points(axes: Any, result: Outcome, figures: Any, hpa: Figures) -> None:
    along = sorted(result.front, key=lambda p: figures(p))
    axes.plot(
        [figures(p)[0] for p in along],
        [figures(p)[1] for p in along],
        "o-",
        c="tab:blue",
        label="Pareto front",
    )
    now, chosen = figures(result.current), figures(result.chosen)
    axes.scatter([now[0]], [now[1]], marker="s", s=80, c="tab:orange", label="rules now")
    axes.scatter([hpa[0]], [hpa[1]], marker="^", s=80, c="tab:red", label="HPA, same floors")
    axes.scatter(
        [chosen[0]],
        [chosen[1]],
        marker="o",
        s=160,
        facecolors="none",
        edgecolors="k",
        label="chosen",
    )
