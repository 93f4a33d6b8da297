"""Which modules tools/build_native.py compiles, and whether their compiled form is current."""

from __future__ import annotations

import importlib.util
import json
import sysconfig
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_native", ROOT / "tools/build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def native_modules() -> tuple[str, ...]:
    """The source paths, relative to the project root, that the native build compiles."""
    return tuple(_build_script().NATIVE_MODULES)


def compiled_path(source: str) -> Path:
    return ROOT / (source.removesuffix(".py") + EXTENSION_SUFFIX)


def is_compiled(source: str) -> bool:
    return compiled_path(source).exists()


def stale_native_modules() -> list[str]:
    """Compiled modules whose source is not what was compiled: Python would run the old code."""
    script = _build_script()
    compiled = [source for source in script.NATIVE_MODULES if is_compiled(source)]
    if not compiled:
        return []
    manifest = Path(script.MANIFEST)
    built: dict[str, str] = json.loads(manifest.read_text()) if manifest.exists() else {}
    current: dict[str, str] = script.source_digests()
    return [source for source in compiled if built.get(source) != current[source]]
