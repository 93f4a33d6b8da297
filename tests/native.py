"""Which modules tools/build_native.py compiles, and whether their compiled form is current."""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))


def native_modules() -> tuple[str, ...]:
    """The source paths, relative to the project root, that the native build compiles."""
    spec = importlib.util.spec_from_file_location("build_native", ROOT / "tools/build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.NATIVE_MODULES)


def compiled_path(source: str) -> Path:
    return ROOT / (source.removesuffix(".py") + EXTENSION_SUFFIX)


def stale_native_modules() -> list[str]:
    """Sources changed since they were compiled: Python would import the old, compiled code."""
    stale = []
    for source in native_modules():
        compiled = compiled_path(source)
        if compiled.exists() and compiled.stat().st_mtime < (ROOT / source).stat().st_mtime:
            stale.append(source)
    return stale


def is_compiled(source: str) -> bool:
    return compiled_path(source).exists()
