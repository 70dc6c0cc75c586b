"""Reference-client conformance, the session: ``disconnect()`` is a namespace disconnect to the
server on every transport, a parse error on polling ends the old session on the server at once,
and a lifecycle handler registered after its event happened is not called for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from servers.procs import NodeServer
from support import Recorder, wait_until

from sio_mqtt import Client

FAST = {"reconnect_delay": 0.02, "reconnect_delay_max": 0.1}


def reason_seen(observer: Client, sid: str) -> str | None:
    reason: str | None = observer.call("get_disconnect_reason", sid, timeout=5)
    return reason


def test_disconnect_is_a_client_namespace_disconnect_to_the_server(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server(connection_state_recovery=True)
    observer = Client(server.url, transports=("websocket",))
    clients.append(observer)
    observer.connect()
    client = Client(server.url, transports=mode)
    clients.append(client)
    chat = client.socket("/chat")
    client.connect()
    chat.connect()
    sids = [client.sid, chat.sid]
    state = client.recovery_state
    assert state is not None and all(sids)
    client.disconnect()
    for sid in sids:
        assert sid is not None
        wait_until(lambda s=sid: reason_seen(observer, s) is not None, 5, "the server's close")
        assert reason_seen(observer, sid) == "client namespace disconnect"
    # so the server did not keep the session for recovery
    again = Client(server.url, transports=mode)
    clients.append(again)
    again.restore_recovery_state(*state)
    again.connect()
    assert again.recovered is False


def test_leaving_one_namespace_keeps_the_connection(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, transports=mode)
    clients.append(client)
    chat = client.socket("/chat")
    client.connect()
    chat.connect()
    sid = chat.sid
    assert sid is not None
    chat.disconnect()
    wait_until(lambda: reason_seen(client, sid) is not None, 5, "the server's close")
    assert reason_seen(client, sid) == "client namespace disconnect"
    assert client.connected and client.call("echo_ack", 1, timeout=5) == 1


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_a_parse_error_ends_the_old_session_on_the_server(
    node_server: Callable[..., NodeServer], clients: list[Client], transport: str
) -> None:
    # long heartbeats: without our CLOSE the server would keep the session for 40 s
    server = node_server(ping_interval=20_000, ping_timeout=20_000)
    observer = Client(server.url, transports=("websocket",))
    clients.append(observer)
    observer.connect()
    rec = Recorder()
    client = Client(server.url, transports=(transport,), **FAST)
    clients.append(client)
    client.on("disconnect", rec.handler("disconnect"))
    client.on("connect", rec.handler("connect"))
    client.connect()
    engine = client.manager.engine
    assert engine is not None
    old_sid = engine.sid
    assert observer.call("engine_has", old_sid, timeout=5) is True
    client.emit("send_raw", "9not a socket.io packet")
    assert rec.wait("disconnect") == [("parse error",)]
    wait_until(
        lambda: observer.call("engine_has", old_sid, timeout=5) is False,
        5,
        "the server to drop the old session",
    )
    rec.wait("connect", 2)  # and we reconnected, on a new session
    assert client.call("echo_ack", "again", timeout=5) == "again"


def test_a_connect_handler_registered_after_connect_is_not_called_for_it(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    for _ in range(10):
        client = Client(server.url, transports=mode)
        clients.append(client)
        client.connect()
        late = Recorder()
        client.on("connect", late.handler("connect"))
        # the ack callback runs on the dispatcher after everything submitted before it
        client.emit_with_ack("echo_ack", 1, callback=late.handler("barrier"))
        late.wait("barrier")
        assert late.get("connect") == []
        client.disconnect()
        client.connect()  # a new connection: now the handler is called
        late.wait("connect")
        client.disconnect()
