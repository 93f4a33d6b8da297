from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.real_world import DaemonProcess, World, real_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with real_world(tmp_path) as built:
        yield built


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)
        daemon.log.close()
