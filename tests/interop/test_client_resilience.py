"""Reconnection, ping timeout, offline buffering, connection-state recovery, cookies, msgpack,
dead URLs: the client against real servers that are stopped, frozen, killed and restarted."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from servers.procs import NodeServer, PySocketIOServer, free_port
from support import Recorder, client_threads, wait_until

from sio_mqtt import AckTimeout, BufferFullError, Client, ConnectError

FAST = {"reconnect_delay": 0.05, "reconnect_delay_max": 0.3}


def test_reconnects_after_server_restart_and_flushes_buffer_in_order(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    rec = Recorder()
    tokens = iter(range(1000))
    client = Client(server.url, transports=mode, auth=lambda: {"n": next(tokens)}, **FAST)
    clients.append(client)
    for name in ("connect", "disconnect", "reconnect_attempt", "reconnect"):
        client.on(name, rec.handler(name))
    client.on("echo", rec.handler("echo"))
    client.connect()
    assert client.call("get_handshake", timeout=5)["auth"] == {"n": 0}

    server.kill()
    (reason,) = rec.wait("disconnect")[0]
    assert reason in ("transport close", "transport error")
    assert not client.connected
    for i in range(50):  # buffered while offline
        client.emit("echo", i)
    assert client.buffered == 50
    server.start()
    rec.wait("reconnect")
    rec.wait("connect", 2)
    got = [args[0] for args in rec.wait("echo", 50)]
    assert got == list(range(50))
    handshake = client.call("get_handshake", timeout=5)
    assert handshake["auth"]["n"] >= 1  # auth was evaluated again
    assert rec.get("reconnect_attempt")[0] == (1,)


def test_ping_timeout_detected_and_recovered(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server(ping_interval=300, ping_timeout=200)
    rec = Recorder()
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    client.on("disconnect", rec.handler("disconnect"))
    client.on("reconnect", rec.handler("reconnect"))
    client.connect()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # frozen: TCP stays open, no pings arrive
    try:
        started = time.monotonic()
        assert rec.wait("disconnect", timeout=5) == [("ping timeout",)]
        # detected within pingInterval + pingTimeout (plus scheduling slack)
        assert time.monotonic() - started < 0.5 + 1.0
    finally:
        os.kill(server.pid, signal.SIGCONT)
    rec.wait("reconnect", timeout=10)
    wait_until(lambda: client.connected, 5, "connected again")
    assert client.call("echo_ack", "alive", timeout=5) == "alive"


def test_transport_close_from_server_reconnects(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    rec = Recorder()
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    chat = client.socket("/chat")
    for sock, tag in ((client, "main"), (chat, "chat")):
        sock.on("disconnect", rec.handler(f"{tag}-disconnect"))
        sock.on("connect", rec.handler(f"{tag}-connect"))
    client.connect()
    chat.connect()
    first_sid = chat.sid
    client.emit("close_transport")
    assert rec.wait("main-disconnect") == [("transport close",)]
    assert rec.wait("chat-disconnect") == [("transport close",)]
    rec.wait("main-connect", 2)
    rec.wait("chat-connect", 2)  # every namespace reconnects
    assert chat.sid and chat.sid != first_sid
    assert chat.call("echo_ack", 1, timeout=5) == 1


def test_reconnect_gives_up_after_max_attempts(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    rec = Recorder()
    client = Client(server.url, max_reconnect_attempts=2, **FAST)
    clients.append(client)
    for name in ("reconnect_attempt", "reconnect_failed", "disconnect"):
        client.on(name, rec.handler(name))
    client.connect()
    future = client.emit_with_ack("never-sent")  # buffered after the server is gone? no: sent
    server.kill()
    rec.wait("reconnect_failed")
    assert [a for (a,) in rec.get("reconnect_attempt")] == [1, 2]
    assert future.done()
    wait_until(lambda: not client_threads(), 5, "threads to end after giving up")


def test_offline_buffer_is_bounded(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, buffer_size=3, reconnect=False)
    clients.append(client)
    for i in range(3):
        client.emit("echo", i)  # never connected yet: buffered
    with pytest.raises(BufferFullError, match="full"):
        client.emit("echo", 3)
    rec = Recorder()
    client.on("echo", rec.handler("echo"))
    client.connect()
    assert [a for (a,) in rec.wait("echo", 3)] == [0, 1, 2]


def test_no_reconnect_when_disabled(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    rec = Recorder()
    client = Client(server.url, reconnect=False)
    clients.append(client)
    client.on("disconnect", rec.handler("disconnect"))
    client.on("reconnect_attempt", rec.handler("reconnect_attempt"))
    client.connect()
    client.emit("close_transport")
    rec.wait("disconnect")
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert rec.get("reconnect_attempt") == []


def test_connection_state_recovery(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server(connection_state_recovery=True)
    rec = Recorder()
    client = Client(server.url, transports=mode, **FAST)
    other = Client(server.url, transports=mode)
    clients.extend([client, other])
    client.on("news", rec.handler("news"))
    client.on("connect", rec.handler("connect"))
    client.on("disconnect", rec.handler("disconnect"))
    client.connect()
    other.connect()
    assert client.recovered is False
    sid = client.sid
    other.call("broadcast", {"event": "news", "args": ["before"]}, timeout=5)
    rec.wait("news")
    # the server closes the transport and broadcasts in the same tick: the client is away for it
    # whatever its reconnection delay (a broadcast from ``other`` could race the reconnect)
    client.emit("close_transport", {"broadcast": {"event": "news", "args": ["missed"]}})
    rec.wait("disconnect")  # an event: a poll of client.connected could miss a quick reconnect
    rec.wait("connect", 2)
    assert client.recovered is True
    assert client.sid == sid
    news = rec.wait("news", 2)
    assert news == [("before",), ("missed",)]  # the offset argument is not passed on
    # order: the missed event was delivered before the connect handler ran
    order = [n for n in rec.order if n in ("news", "connect")]
    assert order == ["connect", "news", "news", "connect"]


def test_sticky_session_cookie_is_sent_back(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server(cookie=True)
    client = Client(server.url)  # polling, then upgrade: every request must carry the cookie
    clients.append(client)
    client.connect()
    wait_until(lambda: client.transport == "websocket", 5, "upgrade")
    cookies = client.call("get_cookies", timeout=5)
    assert cookies["requests"], "the server saw no request with a sid"
    assert all(c and "io=" in c for c in cookies["requests"])


def test_msgpack_parser(node_server: Callable[..., NodeServer], clients: list[Client]) -> None:
    server = node_server(parser="msgpack")
    for transports in (("polling", "websocket"), ("polling",)):
        rec = Recorder()
        client = Client(server.url, parser="msgpack", transports=transports)
        clients.append(client)
        client.on("echo", rec.handler("echo"))
        client.on("client_ack_result", rec.handler("result"))
        client.on("question", lambda *a: ("answer", b"\x00"))
        client.connect()
        client.emit("echo", {"a": [1, b"\x01"]}, "x")
        assert rec.wait("echo") == [({"a": [1, b"\x01"]}, "x")]
        assert client.call("echo_ack", b"bin", 2, timeout=5) == (b"bin", 2)
        client.emit("server_emit_with_ack", {"event": "question", "args": []})
        ((result,),) = rec.wait("result")
        assert result == {"err": None, "res": ["answer", b"\x00"]}


def test_connect_to_dead_url_fails_fast_with_cause(clients: list[Client]) -> None:
    port = free_port()
    for transports in (("polling", "websocket"), ("websocket",)):
        client = Client(f"http://127.0.0.1:{port}", transports=transports, connect_timeout=3)
        clients.append(client)
        started = time.monotonic()
        with pytest.raises(ConnectError) as info:
            client.connect()
        assert time.monotonic() - started < 3
        assert f"127.0.0.1:{port}" in str(info.value)
        assert "refused" in str(info.value).lower()
    assert client_threads() == []


def test_connect_timeout_on_silent_server(clients: list[Client]) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts TCP, never answers HTTP
    try:
        port = listener.getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", connect_timeout=0.5)
        clients.append(client)
        started = time.monotonic()
        with pytest.raises(ConnectError, match="timed out"):
            client.connect()
        assert time.monotonic() - started < 3
    finally:
        listener.close()


def test_polling_batches_respect_max_payload(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    # a small maxHttpBufferSize: many emits must be split into several POST bodies
    server = node_server(max_http_buffer_size=2000, transports=["polling"])
    client = Client(server.url, transports=("polling",))
    clients.append(client)
    client.connect()
    client.call("reset_count", timeout=5)
    for _ in range(500):
        client.emit("count", "x" * 50)
    assert client.call("get_count", timeout=10) == 500
    assert client.connected


def test_python_socketio_server_reconnect(
    py_server: Callable[..., PySocketIOServer], clients: list[Client]
) -> None:
    server = py_server()
    rec = Recorder()
    client = Client(server.url, **FAST)
    clients.append(client)
    client.on("disconnect", rec.handler("disconnect"))
    client.on("connect", rec.handler("connect"))
    client.connect()
    server.restart()
    rec.wait("disconnect")
    rec.wait("connect", 2)
    assert client.call("echo_ack", "back", timeout=5) == "back"


def test_readme_example(node_server: Callable[..., NodeServer], clients: list[Client]) -> None:
    """The README's example, as written (only the URL differs)."""
    server = node_server()
    rec = Recorder()
    client = Client(server.url, namespace="/admin", auth={"token": "secret"})
    clients.append(client)

    @client.on("test")
    def on_test(*args: Any) -> Any:
        return {"got": True}

    client.on_any(lambda event, *args: rec.record("any", event))
    client.connect()
    client.emit("foo", {"token": 123})
    fut = client.emit_with_ack(
        "echo_ack", {"myAckData": 123}, timeout=2.0, callback=rec.handler("cb")
    )
    assert fut.result(3) == {"myAckData": 123}
    assert client.call("echo_ack", 1, 2, timeout=2.0) == (1, 2)
    chat = client.socket("/chat")
    chat.on("echo", rec.handler("msg"))
    chat.connect()
    chat.emit("echo", "hi")
    assert rec.wait("msg") == [("hi",)]
    assert rec.wait("cb") == [({"myAckData": 123},)]
    client.on("client_ack_result", rec.handler("result"))
    client.emit("server_emit_with_ack", {"event": "test", "args": []})
    assert rec.wait("result")[0][0]["res"] == [{"got": True}]
    client.disconnect()
    assert client_threads() == []


def test_recovery_state_survives_a_new_client(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    """A restarted process can persist (pid, offset) and recover what it missed."""
    server = node_server(connection_state_recovery=True)
    first = Client(server.url, transports=("websocket",), reconnect=False)
    other = Client(server.url, transports=("websocket",))
    clients.extend([first, other])
    rec1 = Recorder()
    first.on("news", rec1.handler("news"))
    first.connect()
    other.connect()
    other.call("broadcast", {"event": "news", "args": ["one"]}, timeout=5)
    rec1.wait("news")
    state = first.recovery_state
    assert state is not None and state[1] is not None
    sid = first.sid
    first.emit("close_transport")  # the process "dies" without a clean disconnect
    wait_until(lambda: not first.connected, 5, "first client gone")
    other.call("broadcast", {"event": "news", "args": ["two"]}, timeout=5)

    rec2 = Recorder()
    second = Client(server.url, transports=("websocket",))
    clients.append(second)
    second.on("news", rec2.handler("news"))
    second.restore_recovery_state(*state)
    second.connect()
    assert second.recovered is True and second.sid == sid
    assert rec2.wait("news") == [("two",)]


def test_connect_right_after_a_refusal_keeps_dispatching(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    """A refusal closes the connection (its last namespace); a connect() racing that close
    must get working helper threads (handlers run, acks time out)."""
    server = node_server()
    for round_ in range(10):
        token = {"token": "wrong"}
        rec = Recorder()
        client = Client(server.url, namespace="/admin", auth=lambda t=token: dict(t))
        clients.append(client)
        client.on("connect", rec.handler("connect"))
        client.on("echo", rec.handler("echo"))
        with pytest.raises(ConnectError):
            client.connect()
        token["token"] = "secret"
        client.connect()  # no pause: races the close of the refused connection
        rec.wait("connect", timeout=5)
        client.emit("echo", round_)
        assert rec.wait("echo", timeout=5) == [(round_,)]
        with pytest.raises(AckTimeout):
            client.call("no_ack", timeout=0.2)
        client.disconnect()
        assert client_threads() == []
