"""Reference-client conformance, the API it has: ``query=``, volatile emits, the catch-all
listeners (incoming and outgoing), ``ack_timeout=`` and the at-least-once retry mode."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from servers.procs import NodeServer
from support import MODES, Recorder

from sio_mqtt import AckTimeout, Client, NotConnectedError
from sio_mqtt.engineio.transports.polling import PollingTransport


# -- query -----------------------------------------------------------------------------------
def test_query_reaches_the_server_merged_with_the_url_query(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(
        server.url + "/?from_url=1", transports=mode, query={"token": "abc", "n": 5, "on": True}
    )
    clients.append(client)
    client.connect()
    query = client.call("get_handshake", timeout=5)["query"]
    assert query["token"] == "abc" and query["n"] == "5" and query["on"] == "true"
    assert query["from_url"] == "1" and query["EIO"] == "4"


@pytest.mark.parametrize("transports", [MODES["polling"], MODES["upgrade"]])
def test_query_is_on_every_engine_io_request(
    node_server: Callable[..., NodeServer], clients: list[Client], transports: tuple[str, ...]
) -> None:
    """(On websocket alone the handshake is the only request: the test above covers it.)"""
    server = node_server()
    client = Client(server.url, transports=transports, query={"token": "abc"})
    clients.append(client)
    client.connect()
    for i in range(5):
        assert client.call("echo_ack", i, timeout=5) == i  # a few polls and posts
    requests = client.call("get_query", timeout=5)["requests"]
    assert requests  # polls, posts, the websocket (upgrade) request
    assert all(r.get("token") == "abc" and r.get("EIO") == "4" for r in requests), requests


@pytest.mark.parametrize(
    "query", [{"EIO": "3"}, {"sid": "x"}, {"": "x"}, {"a": None}, {"a": [1]}, {1: "x"}]
)
def test_a_bad_query_is_refused_naming_the_key(query: dict[Any, Any]) -> None:
    with pytest.raises(ValueError, match="query"):
        Client("http://127.0.0.1:1", query=query)


# -- volatile --------------------------------------------------------------------------------
def test_volatile_emits_are_dropped_while_disconnected(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, namespace="/chat", transports=mode)
    clients.append(client)
    client.emit("count", volatile=True)  # not connected: dropped, not buffered
    future = client.emit_with_ack("echo_ack", 1, volatile=True)
    with pytest.raises(NotConnectedError):
        future.result(1)
    assert client.buffered == 0 and client.volatile_dropped == 2
    client.emit("reset_count")
    client.connect()
    assert client.call("get_count", timeout=5) == 0  # the volatile one never arrived


def test_volatile_emits_go_out_when_writable(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, transports=("websocket",))
    clients.append(client)
    rec = Recorder()
    client.on("echo", rec.handler("echo"))
    client.connect()
    client.emit("echo", "v", volatile=True)
    assert client.emit_with_ack("echo_ack", 2, volatile=True).result(5) == 2
    assert rec.wait("echo") == [("v",)]
    assert client.volatile_dropped == 0


# -- catch-all listeners ---------------------------------------------------------------------
def test_prepend_any_and_off_any(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, transports=("websocket",))
    clients.append(client)
    rec = Recorder()
    first = rec.handler("first")
    second = rec.handler("second")
    client.on_any(second)
    client.prepend_any(first)
    client.on("echo", rec.handler("echo"))
    client.connect()
    client.emit("echo", 1)
    rec.wait("echo")
    assert rec.order == ["first", "second", "echo"]
    assert rec.get("first") == [("echo", 1)]
    client.off_any(first)
    client.emit("echo", 2)
    rec.wait("echo", 2)
    assert rec.order[3:] == ["second", "echo"]
    client.off_any()
    client.emit("echo", 3)
    rec.wait("echo", 3)
    assert rec.order[5:] == ["echo"]


def test_outgoing_listeners_see_every_emitted_event(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, transports=mode)
    clients.append(client)
    rec = Recorder()
    late = rec.handler("late")
    early = rec.handler("early")
    client.on_any_outgoing(late)
    client.prepend_any_outgoing(early)
    client.emit("echo", "buffered")  # sent on connect: seen then
    client.connect()
    client.emit("echo", {"bin": b"\x00\x01"}, 2)
    assert client.call("echo_ack", 3, timeout=5) == 3
    rec.wait("late", 3)
    assert rec.get("early") == rec.get("late")
    assert rec.get("late") == [
        ("echo", "buffered"),
        ("echo", {"bin": b"\x00\x01"}, 2),
        ("echo_ack", 3),
    ]
    assert rec.order[:2] == ["early", "late"]
    client.off_any_outgoing(early)
    client.emit_with_ack("echo_ack", 4).result(5)
    rec.wait("late", 4)
    client.off_any_outgoing()
    client.emit_with_ack("echo_ack", 5).result(5)
    # an ack callback runs on the dispatcher after the listeners of what was sent before it
    barrier: Future[Any] = client.emit_with_ack("echo_ack", 6, callback=rec.handler("barrier"))
    barrier.result(5)
    rec.wait("barrier")
    assert len(rec.get("early")) == 3 and len(rec.get("late")) == 4


# -- ack_timeout and retries -----------------------------------------------------------------
def test_ack_timeout_is_the_default_timeout(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, transports=("websocket",), ack_timeout=0.2)
    clients.append(client)
    client.connect()
    with pytest.raises(AckTimeout):
        client.emit_with_ack("no_ack").result(5)
    with pytest.raises(AckTimeout):
        client.call("no_ack")
    assert client.call("echo_ack", 1, timeout=5) == 1  # an explicit timeout wins


@pytest.mark.parametrize("bad", [0, -1, "1", True, float("inf")])
def test_bad_ack_timeout_or_retries_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="ack_timeout"):
        Client("http://127.0.0.1:1", ack_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries"):
        Client("http://127.0.0.1:1", retries=-1)


def test_retries_keep_the_order_one_in_flight(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, namespace="/chat", transports=mode, retries=1, ack_timeout=5)
    clients.append(client)
    sent = Recorder()
    client.on_any_outgoing(sent.handler("sent"))
    client.connect()
    client.emit("clear_recorded")
    futures = [client.emit_with_ack("record", i) for i in range(20)]
    client.emit("record", "no ack asked: still acked, in order")
    assert [f.result(10) for f in futures] == [True] * 20
    recorded = client.call("get_recorded", timeout=10)
    assert [r["args"][0] for r in recorded] == [*range(20), "no ack asked: still acked, in order"]
    sent.wait("sent", 23)  # each once: no resend was needed


def test_retries_fail_after_the_last_try(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, transports=mode, retries=3, ack_timeout=0.05)
    clients.append(client)
    sent = Recorder()
    client.on_any_outgoing(sent.handler("sent"))
    failed = Recorder()
    client.connect()
    future = client.emit_with_ack("no_ack", "x")
    with pytest.raises(AckTimeout):
        future.result(10)
    # the one in flight blocked the next until it failed; then the next goes
    next_one = client.emit_with_ack("echo_ack", "next", timeout=5, callback=failed.handler("cb"))
    assert next_one.result(10) == "next"
    assert failed.wait("cb") == [("next",)]
    tries = sent.wait("sent", 5)
    assert tries[:4] == [("no_ack", "x")] * 4  # 1 + 3 retries, each with a new ack id
    assert tries[4] == ("echo_ack", "next")


def test_the_retry_queue_waits_while_disconnected(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, transports=mode, retries=3, ack_timeout=0.2)
    clients.append(client)
    future = client.emit_with_ack("echo_ack", 1)
    # an ack timeout of 0.3 s elsewhere: proof that more than our ack_timeout has passed
    clock = Client(server.url, reconnect=False)
    with pytest.raises(AckTimeout):
        clock.emit_with_ack("never sent", timeout=0.3).result(5)
    clock.disconnect()
    assert not future.done()  # not drained (nor timed out) while disconnected
    client.connect()
    assert future.result(10) == 1


def test_an_emit_in_the_connect_handler_is_sent_once(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    server = node_server()
    client = Client(server.url, namespace="/chat", transports=mode, retries=3)
    clients.append(client)
    sent = Recorder()
    client.on_any_outgoing(sent.handler("sent"))
    client.on("connect", lambda: client.emit("record", "from connect"))
    client.connect()
    sent.wait("sent")  # the record, sent from the handler (a fresh server recorded nothing)
    recorded = client.call("get_recorded", timeout=10)  # queued behind it: answered after it
    assert recorded == [{"event": "record", "args": ["from connect"]}]
    assert [a for a in sent.get("sent") if a[0] == "record"] == [("record", "from connect")]


def test_call_in_retry_mode_waits_for_the_last_try(
    node_server: Callable[..., NodeServer], clients: list[Client]
) -> None:
    server = node_server()
    client = Client(server.url, transports=("websocket",), retries=2, ack_timeout=0.05)
    clients.append(client)
    sent = Recorder()
    client.on_any_outgoing(sent.handler("sent"))
    client.connect()
    with pytest.raises(AckTimeout):
        client.call("no_ack")  # bounded by the tries, not by one ack_timeout
    assert client.emit_with_ack("echo_ack", "ok", timeout=5).result(10) == "ok"
    assert [a for a in sent.wait("sent", 4) if a[0] == "no_ack"] == [("no_ack",)] * 3


def test_a_volatile_emit_is_dropped_while_a_post_is_in_flight(
    node_server: Callable[..., NodeServer],
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reference's "discard a volatile packet when the pipe is not ready": on polling the
    transport cannot write while a POST is in flight (the test holds that POST open)."""
    server = node_server()
    client = Client(server.url, namespace="/chat", transports=("polling",))
    clients.append(client)
    client.connect()
    client.emit("reset_count")
    assert client.call("get_count", timeout=5) == 0
    in_flight = threading.Event()
    release = threading.Event()
    post = PollingTransport.post

    def held_post(self: PollingTransport, body: str) -> None:
        if '"count"' in body:
            in_flight.set()
            release.wait(10)
        post(self, body)

    monkeypatch.setattr(PollingTransport, "post", held_post)
    try:
        client.emit("count")
        assert in_flight.wait(10)
        client.emit("count", volatile=True)  # the pipe is busy: dropped
        assert client.volatile_dropped == 1
    finally:
        release.set()
    assert client.call("get_count", timeout=5) == 1


def test_an_emit_after_disconnect_is_sent_on_the_next_connect(
    node_server: Callable[..., NodeServer], clients: list[Client], mode: tuple[str, ...]
) -> None:
    """The reference's "should not discard an unsent ack"."""
    server = node_server()
    client = Client(server.url, transports=mode)
    clients.append(client)
    client.connect()
    client.disconnect()
    future = client.emit_with_ack("echo_ack", "a")  # buffered
    assert client.buffered == 1
    client.connect()
    assert future.result(5) == "a"
