"""The compiled modules (`make native`) decide exactly as their sources do.

A scenario is run twice in fresh interpreters: once from a copy of the package's sources
alone, once from the project as built. Their reports must be the same, byte for byte, and the
second run must have used the compiled modules wherever they were built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.native import ROOT, is_compiled, native_modules

SCENARIO = ROOT / "sim/scenarios/flash-crowd.yaml"

# Prints where the engine and the model were imported from, then runs the CLI.
RUN = """
import sys
import autotuner.core.engine, autotuner.sim.system
print(autotuner.core.engine.__file__, autotuner.sim.system.__file__, file=sys.stderr)
from autotuner.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _simulate(pythonpath: Path, cwd: Path) -> tuple[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    result = subprocess.run(
        [sys.executable, "-c", RUN, "sim", str(SCENARIO), "--policy", "rules", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr.splitlines()[0].split()


def test_the_compiled_modules_report_what_their_sources_report(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    shutil.copytree(
        ROOT / "autotuner",
        sources / "autotuner",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    interpreted, interpreted_from = _simulate(sources, tmp_path)
    built, built_from = _simulate(ROOT, tmp_path)

    assert all(path.startswith(str(sources)) and path.endswith(".py") for path in interpreted_from)
    expected = {
        "autotuner/core/engine.py": built_from[0],
        "autotuner/sim/system.py": built_from[1],
    }
    for source, imported in expected.items():
        assert source in native_modules()
        assert imported.endswith(".py") != is_compiled(source), (source, imported)
    assert json.loads(interpreted)["actions"]["total"] > 0  # the rules acted: decisions ran
    assert built == interpreted
