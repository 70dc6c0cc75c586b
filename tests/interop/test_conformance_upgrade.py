"""Reference-client conformance, the upgrade: emits made while polling upgrades to websocket do
not wait for the last long-poll GET (which the server only releases on its 100 ms timer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from servers.procs import NodeServer
from support import wait_until

from sio_mqtt import Client
from sio_mqtt.engineio.packet import Packet
from sio_mqtt.engineio.session import EngineSession, UpgradeState
from sio_mqtt.engineio.transports.polling import PollingTransport


def test_emits_during_the_upgrade_pause_go_out_as_posts(
    node_server: Callable[..., NodeServer],
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test holds open two moments too short to hit otherwise: the probe's answer (until
    the namespace is connected) and the return of the last GET (while it emits)."""
    server = node_server()
    observer = Client(server.url, namespace="/chat", transports=("websocket",))
    clients.append(observer)
    observer.connect()
    assert observer.call("reset_count", timeout=5) == 0

    go = threading.Event()  # lets the upgrade go on from its probe
    holding = threading.Event()  # the last GET came back during the pause and is held
    release = threading.Event()
    probe_reply = EngineSession.upgrade_probe_reply
    poll = PollingTransport.poll

    def pause_when_told(self: EngineSession, packet: Packet) -> bool:
        go.wait(10)  # polling goes on normally meanwhile: the namespace connects
        return probe_reply(self, packet)

    def hold_the_last_get(self: PollingTransport, read_timeout: float) -> str:
        body = poll(self, read_timeout)
        engine = client.manager.engine
        # the GET that comes back during the pause: the switch waits for it
        if engine is not None and engine.upgrade_state is UpgradeState.PAUSING:
            holding.set()
            release.wait(10)
        return body

    monkeypatch.setattr(EngineSession, "upgrade_probe_reply", pause_when_told)
    monkeypatch.setattr(PollingTransport, "poll", hold_the_last_get)
    client = Client(server.url, namespace="/chat", transports=("polling", "websocket"))
    clients.append(client)
    try:
        client.connect()
        go.set()
        assert holding.wait(10), "the upgrade did not reach its pause"
        engine = client.manager.engine
        assert engine is not None
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
