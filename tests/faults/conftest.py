"""Fixtures of the fault-injection suite (``-m faults``): real mosquitto, the real Node
socket.io server, the gateway CLI as a subprocess, TCP proxies, killed and restarted for real.

``world`` (a :class:`fault_support.World`) owns every process and client a scenario starts and
stops them all at teardown, in reverse order. Each scenario's numbers (messages, duplicates,
down time) are printed in the terminal summary.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_support import RESULTS, World


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(tmp_path, request.node.name)
    yield w
    w.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault-injection scenarios")
    for name, text in RESULTS:
        terminalreporter.write_line(f"{name}: {text}")
