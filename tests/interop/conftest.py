"""Fixtures of the client interop tests: the clients a test made (disconnected after it, with
no library thread left) and the transport mode (upgrade, websocket only, polling only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import MODES, client_threads, wait_until

from sio_mqtt import Client


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.disconnect()
    wait_until(lambda: not client_threads(), 5, "client threads to end")


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return MODES[request.param]
