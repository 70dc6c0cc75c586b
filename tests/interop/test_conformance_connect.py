"""Reference-client conformance, connecting: a failed first connection follows the reconnection
policy (``connect(wait=False)``, ``connect(retry=True)``), ``connect_error`` for every failed open,
``connect_timeout`` validation, and ``client.reconnect`` writable at run time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest
from servers.procs import NodeServer, free_port
from support import Recorder, client_threads, wait_until

from sio_mqtt import Client, ConnectError

FAST = {"reconnect_delay": 0.02, "reconnect_delay_max": 0.1}
EVENTS = (
    "connect",
    "connect_error",
    "disconnect",
    "reconnect_attempt",
    "reconnect_error",
    "reconnect_failed",
    "reconnect",
)


def recorded(client: Client) -> Recorder:
    rec = Recorder()
    for name in EVENTS:
        client.on(name, rec.handler(name))
    return rec


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def lifecycle(rec: Recorder) -> list[str]:
    return [name for name in rec.order if name in EVENTS]


def test_background_connect_to_a_dead_url_follows_the_policy(
    clients: list[Client], mode: tuple[str, ...]
) -> None:
    client = Client(dead_url(), transports=mode, max_reconnect_attempts=2, **FAST)
    clients.append(client)
    rec = recorded(client)
    client.connect(wait=False)  # returns at once
    rec.wait("reconnect_failed")
    wait_until(lambda: not client_threads(), 5, "threads to end after giving up")
    assert lifecycle(rec) == [
        "connect_error",  # the first open
        "reconnect_attempt",
        "connect_error",
        "reconnect_error",
        "reconnect_attempt",
        "connect_error",
        "reconnect_error",
        "reconnect_failed",
    ]
    assert [n for (n,) in rec.get("reconnect_attempt")] == [1, 2]
    assert all(isinstance(e, ConnectError) for (e,) in rec.get("connect_error"))
    assert all(isinstance(e, ConnectError) for (e,) in rec.get("reconnect_error"))
    assert not client.connected and not client.active


def test_background_connect_gets_through_once_the_server_is_up(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = NodeServer()  # not started yet
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    rec = recorded(client)
    client.connect(wait=False)
    rec.wait("reconnect_error")  # a few failed attempts first
    try:
        server.start()
        rec.wait("connect")
        assert client.connected
        (attempt,) = rec.wait("reconnect")[0]
        assert attempt == len(rec.get("reconnect_attempt"))  # reconnect(n): n attempts made
        assert client.call("echo_ack", "up", timeout=5) == "up"
    finally:
        client.disconnect()
        server.stop()


def test_background_connect_to_a_live_server_is_no_reconnection(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    rec = recorded(client)
    client.emit("echo", "buffered before the connection")
    client.on("echo", rec.handler("echo"))
    client.connect(wait=False)
    assert rec.wait("echo") == [("buffered before the connection",)]
    assert lifecycle(rec) == ["connect"]


def test_disconnect_stops_the_series_and_connect_starts_a_fresh_one(
    clients: list[Client],
) -> None:
    client = Client(dead_url(), **FAST)
    clients.append(client)
    rec = recorded(client)
    client.connect(wait=False)
    rec.wait("reconnect_attempt", 3)
    client.disconnect()
    wait_until(lambda: not client_threads(), 5, "the series to end")
    attempts = len(rec.get("reconnect_attempt"))
    assert not client.active
    # nothing runs any more: no attempt can come after the threads ended
    assert len(rec.get("reconnect_attempt")) == attempts
    assert rec.get("reconnect_failed") == []

    client.connect(wait=False)  # a fresh series counts from 1 again
    rec.wait("reconnect_attempt", attempts + 2)
    assert [n for (n,) in rec.get("reconnect_attempt")][attempts:][:2] == [1, 2]


def test_blocking_connect_raises_after_connect_error(
    clients: list[Client], mode: tuple[str, ...]
) -> None:
    client = Client(dead_url(), transports=mode, **FAST)
    clients.append(client)
    rec = recorded(client)
    with pytest.raises(ConnectError) as raised:
        client.connect()
    (error,) = rec.wait("connect_error")[0]
    assert error is raised.value
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert rec.get("reconnect_attempt") == []  # no retry without retry=True


def test_blocking_connect_with_retry_raises_after_the_last_attempt(
    clients: list[Client], mode: tuple[str, ...]
) -> None:
    client = Client(dead_url(), transports=mode, max_reconnect_attempts=3, **FAST)
    clients.append(client)
    rec = recorded(client)
    with pytest.raises(ConnectError):
        client.connect(retry=True)
    # the events are dispatched on the client's thread; they all come
    rec.wait("reconnect_failed")
    assert [n for (n,) in rec.get("reconnect_attempt")] == [1, 2, 3]
    assert len(rec.get("connect_error")) == 4
    wait_until(lambda: not client_threads(), 5, "threads to end")


def test_blocking_connect_with_retry_returns_once_connected(
    clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = NodeServer()
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    rec = recorded(client)

    def start_after_a_failure() -> None:
        rec.wait("reconnect_error")
        server.start()

    starter = threading.Thread(target=start_after_a_failure)
    starter.start()
    try:
        client.connect(retry=True)
        assert client.connected
        assert client.call("echo_ack", 1, timeout=5) == 1
        rec.wait("reconnect")
    finally:
        starter.join()
        client.disconnect()
        server.stop()


def test_retry_is_one_attempt_when_reconnect_is_off(clients: list[Client]) -> None:
    client = Client(dead_url(), reconnect=False, **FAST)
    clients.append(client)
    rec = recorded(client)
    with pytest.raises(ConnectError):
        client.connect(retry=True)
    client.connect(wait=False)
    rec.wait("connect_error", 2)
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert lifecycle(rec) == ["connect_error", "connect_error"]


def test_a_refused_namespace_is_not_retried(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, namespace="/admin", auth={"token": "wrong"}, **FAST)
    clients.append(client)
    rec = recorded(client)
    client.connect(wait=False)
    (error,) = rec.wait("connect_error")[0]
    assert error.message == "not authorized" and error.data == {"reason": "bad token"}
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert lifecycle(rec) == ["connect_error"]


def test_connect_error_on_an_open_timeout(clients: list[Client], mode: tuple[str, ...]) -> None:
    """A server that accepts TCP and never answers: the open times out."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = Client(url, transports=mode, connect_timeout=0.3, **FAST)
        clients.append(client)
        rec = recorded(client)
        with pytest.raises(ConnectError):
            client.connect()
        (error,) = rec.wait("connect_error")[0]
        assert isinstance(error, ConnectError)
        client.disconnect()


def test_connect_error_when_the_namespace_does_not_answer_in_time(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, namespace="/no-such-namespace", connect_timeout=5, **FAST)
    clients.append(client)
    rec = recorded(client)
    with pytest.raises(ConnectError) as raised:
        client.connect()  # the server refuses an unknown namespace: CONNECT_ERROR
    assert rec.wait("connect_error") == [(raised.value,)]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "20", True, None])
def test_connect_timeout_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        Client("http://127.0.0.1:1", connect_timeout=bad)  # type: ignore[arg-type]


def test_reconnect_set_false_stops_a_reconnection_in_progress(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    rec = recorded(client)

    def turn_off(err: ConnectError) -> None:
        client.reconnect = False  # as the reference test "should stop trying to reconnect"
        rec.record("reconnect_error", err)

    client.on("reconnect_error", turn_off)
    client.connect()
    future = client.emit_with_ack("echo_ack", "sent")
    assert future.result(5) == "sent"
    server.kill()
    rec.wait("reconnect_error")
    wait_until(lambda: not client_threads(), 5, "the reconnection to stop")
    assert client.reconnect is False
    assert len(rec.get("reconnect_attempt")) == 1
    assert rec.get("reconnect_failed") == []
    assert not client.active


def test_reconnect_set_false_before_a_loss_means_no_reconnection(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, **FAST)
    clients.append(client)
    rec = recorded(client)
    client.connect()
    client.reconnect = False
    client.emit("close_transport")
    assert rec.wait("disconnect") == [("transport close",)]
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert rec.get("reconnect_attempt") == []
    client.reconnect = True  # and on again: a new connect() reconnects after a loss
    client.connect()
    client.emit("close_transport")
    rec.wait("reconnect")
    wait_until(lambda: client.connected, 5, "reconnected")


def test_disconnect_while_opening_is_no_connect_error(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    """The reference's "doesn't fire an error event if we force disconnect in opening state"."""
    server = node_server()
    for _ in range(5):
        client = Client(server.url, transports=mode, **FAST)
        clients.append(client)
        rec = recorded(client)
        client.connect(wait=False)
        client.disconnect()
        wait_until(lambda: not client_threads(), 5, "threads to end")
        assert rec.get("connect_error") == [] and rec.get("reconnect_attempt") == []
        assert not client.connected and not client.active


def test_a_namespace_leaving_during_a_reconnection_does_not_stop_the_others(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    """The reference's "should stop reconnecting on a socket and keep to reconnect on another"."""
    server = node_server()
    client = Client(server.url, transports=mode, **FAST)
    clients.append(client)
    chat = client.socket("/chat")
    rec = recorded(client)
    left = Recorder()
    chat.on("connect", left.handler("connect"))
    client.connect()
    chat.connect()
    left.wait("connect")
    server.kill()
    rec.wait("reconnect_error")  # reconnecting, the server still down
    chat.disconnect()
    server.start()
    rec.wait("reconnect")
    wait_until(lambda: client.connected, 5, "the main namespace back")
    assert client.call("echo_ack", 1, timeout=5) == 1
    assert not chat.connected and not chat.active
    assert len(left.get("connect")) == 1  # chat did not come back


def test_a_namespace_joining_a_failing_series_shares_it(clients: list[Client]) -> None:
    """The reference's "should still try to reconnect twice after opening another socket
    asynchronously": the second namespace joins the series, which still gives up after 2."""
    client = Client(
        dead_url(),
        max_reconnect_attempts=2,
        reconnect_delay=0.3,
        reconnect_delay_max=0.3,
        randomization_factor=0,
    )
    clients.append(client)
    rec = recorded(client)
    chat = client.socket("/chat")
    chat_rec = recorded(chat)
    client.connect(wait=False)
    rec.wait("reconnect_attempt")
    chat.connect(wait=False)
    rec.wait("reconnect_failed")
    chat_rec.wait("reconnect_failed")
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert [n for (n,) in rec.get("reconnect_attempt")] == [1, 2]
    assert not client.active and not chat.active
