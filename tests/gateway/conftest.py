"""Fixtures of the gateway end-to-end tests (helpers live in gw_support.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers.procs import Mosquitto, NodeServer, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gw_support import Env

from sio_mqtt.socketio.client import Client


@pytest.fixture(params=[5, "3.1.1"], ids=["mqtt5", "mqtt311"])
def protocol(request: pytest.FixtureRequest) -> int | str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def env(
    tmp_path: Path, mosquitto: Mosquitto, node_server_default: NodeServer, protocol: int | str
) -> Iterator[Env]:
    e = Env(tmp_path, mosquitto, node_server_default.url, protocol)
    yield e
    e.close()


@pytest.fixture
def free_sio_port() -> int:
    """A port where no Socket.IO server runs (yet)."""
    return free_port()


@pytest.fixture
def sio_client() -> Iterator[Callable[[str], Client]]:
    clients: list[Client] = []

    def make(url: str) -> Client:
        c = Client(url, reconnect=True, reconnect_delay=0.1, reconnect_delay_max=0.5)
        c.connect()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.disconnect()
