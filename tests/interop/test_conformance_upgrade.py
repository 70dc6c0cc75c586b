"""Reference-client conformance, the upgrade: emits made while polling upgrades to websocket do
not wait for the last long-poll GET (which the server only releases on its 100 ms timer)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers.procs import NodeServer
from support import client_threads, wait_until

from sio_mqtt import Client
from sio_mqtt.engineio.packet import Packet
from sio_mqtt.engineio.session import EngineSession, UpgradeState
from sio_mqtt.engineio.transports.polling import PollingTransport


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.disconnect()
    wait_until(lambda: not client_threads(), 5, "client threads to end")


def test_emits_during_the_upgrade_pause_go_out_as_posts(
    node_server: Callable[..., NodeServer],
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test holds the two moments open that are too short to hit otherwise: the probe
    (until the namespace is connected) and the return of the last GET (while it emits)."""
    server = node_server()
    observer = Client(server.url, namespace="/chat", transports=("websocket",))
    clients.append(observer)
    observer.connect()
    assert observer.call("reset_count", timeout=5) == 0

    go = threading.Event()  # lets the upgrade start
    holding = threading.Event()  # the last GET came back during the pause and is held
    release = threading.Event()
    upgrade_start = EngineSession.upgrade_start
    poll = PollingTransport.poll

    def start_when_told(self: EngineSession) -> Packet:
        go.wait(10)
        return upgrade_start(self)

    def hold_the_last_get(self: PollingTransport, read_timeout: float) -> str:
        body = poll(self, read_timeout)
        engine = client.manager.engine
        # a GET that comes back once the probe went out: the upgrade's pause waits for it
        if engine is not None and engine.upgrade_state in (
            UpgradeState.PROBING,
            UpgradeState.PAUSING,
        ):
            holding.set()
            release.wait(10)
        return body

    monkeypatch.setattr(EngineSession, "upgrade_start", start_when_told)
    monkeypatch.setattr(PollingTransport, "poll", hold_the_last_get)
    client = Client(server.url, namespace="/chat", transports=("polling", "websocket"))
    clients.append(client)
    try:
        client.connect()
        go.set()
        assert holding.wait(10), "the upgrade did not start"
        engine = client.manager.engine
        assert engine is not None
        wait_until(lambda: engine.upgrade_state is UpgradeState.PAUSING, 10, "the pause")
        for _ in range(5):
            client.emit("count")

        def counted() -> Any:
            return observer.call("get_count", timeout=5)

        wait_until(lambda: counted() == 5, 5, "the emits made during the pause to arrive")
        assert engine.upgrade_state is UpgradeState.PAUSING  # the GET is still held
    finally:
        go.set()
        release.set()
    wait_until(lambda: client.transport == "websocket", 5, "the upgrade to finish")
    client.emit("count")
    assert client.call("get_count", timeout=5) == 6  # nothing lost or doubled by the switch
    assert client.call("get_transport", timeout=5) == "websocket"
