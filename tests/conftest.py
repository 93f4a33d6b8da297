"""Session checks that protect every test from running code other than the sources."""

from __future__ import annotations

import pytest

from tests.native import stale_native_modules


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_native_modules()
    if stale:
        raise pytest.UsageError(
            f"{', '.join(stale)} changed after it was compiled, so the tests would run the old "
            "code: run `make native` to compile again, or `make clean-native` to run from sources"
        )
