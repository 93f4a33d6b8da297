"""Compile the decision core and the simulator's model with mypyc, in place.

The modules below are plain, fully typed Python; mypyc (part of mypy) turns each into a C
extension module that sits beside its source, and Python imports it in preference to the
source. The code is the same, about twice as fast: what lets the simulator replay three weeks
of traffic in seconds. Everything else stays interpreted. Without this step the package runs
unchanged from its sources.

    python tools/build_native.py          # `make native` runs it when a source changes
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Hot in every tick of the daemon, the simulator and rule tests. Listed, not globbed, so that
# adding a module to a package does not silently compile it.
NATIVE_MODULES = (
    "autotuner/core/answers.py",
    "autotuner/core/cycle.py",
    "autotuner/core/engine.py",
    "autotuner/core/knob_resolution.py",
    "autotuner/core/learn/capacity.py",
    "autotuner/core/learn/replicas.py",
    "autotuner/core/model.py",
    "autotuner/core/objective_targets.py",
    "autotuner/core/objectives.py",
    "autotuner/core/records.py",
    "autotuner/core/policies.py",
    "autotuner/core/rules.py",
    "autotuner/core/state.py",
    "autotuner/core/threshold_targets.py",
    "autotuner/control/actuation.py",
    "autotuner/control/tick.py",
    "autotuner/sim/actuators.py",
    "autotuner/sim/api.py",
    "autotuner/sim/cache.py",
    "autotuner/sim/cache_cohorts.py",
    "autotuner/sim/faults.py",
    "autotuner/sim/metrics.py",
    "autotuner/sim/ml.py",
    "autotuner/sim/pool.py",
    "autotuner/sim/queueing.py",
    "autotuner/sim/runner.py",
    "autotuner/sim/service.py",
    "autotuner/sim/system.py",
)

# The runtime library the modules share lands inside the package, not at the top level.
GROUP_NAME = "autotuner._native"

# What was compiled, by content: the tests refuse to run compiled code whose source has changed
# since (file times cannot tell, as setuptools keeps the old file of a module it need not relink).
MANIFEST = ROOT / "build/native/sources.json"


def source_digests() -> dict[str, str]:
    return {
        module: hashlib.sha256((ROOT / module).read_bytes()).hexdigest()
        for module in NATIVE_MODULES
    }


def main() -> int:
    from mypyc.build import mypycify
    from setuptools import setup

    digests = source_digests()
    sources = [str(ROOT / module) for module in NATIVE_MODULES]
    setup(
        name="autotuner-native",
        script_args=["-q", "build_ext", "--inplace", "--build-temp", str(ROOT / "build/native")],
        ext_modules=mypycify(sources, opt_level="3", group_name=GROUP_NAME),
    )
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
