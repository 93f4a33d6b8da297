"""Session checks that protect every test from running code other than the sources, and a
logging set-up that each test leaves as it found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.native import stale_native_modules


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_native_modules()
    if stale:
        raise pytest.UsageError(
            f"{', '.join(stale)} changed after it was compiled, so the tests would run the old "
            "code: run `make native` to compile again, or `make clean-native` to run from sources"
        )


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """Each test gets the logging set-up the one before found: a handler a test (or a command
    run in process) attached to a stream pytest has since closed, or a level a test lowered,
    must not reach the next test."""
    root = logging.getLogger()
    ours = logging.getLogger("autotuner")
    handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(root_level)
    ours.setLevel(our_level)
