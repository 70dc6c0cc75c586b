"""The client against real servers: Node socket.io 4.8 in every transport mode, and
python-socketio. Connect, emit (JSON and binary), acks both ways, namespaces, auth, headers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers.procs import NodeServer, PySocketIOServer
from support import Recorder, client_threads, wait_until

from sio_mqtt import AckCancelled, AckTimeout, Client, ClientBuilder, ConnectError
from sio_mqtt.errors import ReservedEventError

MODES = {
    "upgrade": ("polling", "websocket"),
    "websocket": ("websocket",),
    "polling": ("polling",),
}


@pytest.fixture(scope="module")
def node() -> Iterator[NodeServer]:
    with NodeServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def pysrv() -> Iterator[PySocketIOServer]:
    with PySocketIOServer() as srv:
        yield srv


@pytest.fixture(
    params=[
        "node-upgrade",
        "node-websocket",
        "node-polling",
        "python-upgrade",
        "python-websocket",
        "python-polling",
    ]
)
def make_client(
    request: pytest.FixtureRequest, node: NodeServer, pysrv: PySocketIOServer
) -> Iterator[Callable[..., Client]]:
    """Factory of clients for each (server, transport mode); all disconnected at teardown."""
    server_kind, mode = request.param.split("-")
    server = node if server_kind == "node" else pysrv
    clients: list[Client] = []

    def factory(**kwargs: Any) -> Client:
        kwargs.setdefault("transports", MODES[mode])
        kwargs.setdefault("reconnect_delay", 0.05)
        kwargs.setdefault("reconnect_delay_max", 0.2)
        client = Client(server.url, **kwargs)
        clients.append(client)
        return client

    factory.server_kind = server_kind  # type: ignore[attr-defined]
    factory.mode = mode  # type: ignore[attr-defined]
    yield factory
    for client in clients:
        client.disconnect()
    wait_until(lambda: not client_threads(), 5, f"client threads to end: {client_threads()}")


def test_connect_emit_and_receive_json_and_binary(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("echo", rec.handler("echo"))
    client.connect()
    assert client.connected and client.sid
    payload = {"nested": [1, {"blob": b"\x00\xffbin"}], "text": "héllo"}
    client.emit("echo", payload, b"raw", 3)
    (args,) = rec.wait("echo")
    assert args == (payload, b"raw", 3)


def test_transport_property_follows_the_mode(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.connect()
    expected = "polling" if make_client.mode == "polling" else "websocket"  # type: ignore[attr-defined]
    wait_until(lambda: client.transport == expected, 5, f"transport {expected}")
    assert client.call("get_transport", timeout=5) == expected


def test_call_returns_none_value_or_tuple(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.connect()
    assert client.call("ack_nothing", timeout=5) is None
    assert client.call("echo_ack", {"a": 1}, timeout=5) == {"a": 1}
    assert client.call("echo_ack", 1, "two", b"3", timeout=5) == (1, "two", b"3")


def test_emit_with_ack_future_and_callback(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.connect()
    future = client.emit_with_ack("echo_ack", 1, 2, timeout=5, callback=rec.handler("cb"))
    assert future.result(5) == (1, 2)
    assert rec.wait("cb") == [(1, 2)]


def test_ack_timeout_raises_timeout_error(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.connect()
    with pytest.raises(AckTimeout) as info:
        client.call("no_ack", timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    future = client.emit_with_ack("no_ack", timeout=0.2)
    with pytest.raises(AckTimeout):
        future.result(5)
    assert client.connected  # a missing ack does not hurt the connection


def test_pending_ack_fails_at_once_on_disconnect(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.connect()
    future = client.emit_with_ack("no_ack", timeout=60)
    assert client.call("ack_nothing", timeout=5) is None  # the no_ack event has been sent
    client.disconnect()
    with pytest.raises(AckCancelled):
        future.result(2)


def test_server_ack_answered_with_handler_return(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("client_ack_result", rec.handler("result"))
    client.on("question", lambda *args: {"got": list(args)})
    client.on("question_multi", lambda *args: ("one", b"\x01\x02", 3))
    client.on("question_none", lambda *args: None)
    client.connect()
    client.emit("server_emit_with_ack", {"event": "question", "args": [1, "x"]})
    ((result,),) = rec.wait("result")
    assert result == {"err": None, "res": [{"got": [1, "x"]}]}
    client.emit("server_emit_with_ack", {"event": "question_multi", "args": []})
    result = rec.wait("result", 2)[1][0]
    assert result == {"err": None, "res": ["one", b"\x01\x02", 3]}
    client.emit("server_emit_with_ack", {"event": "question_none", "args": []})
    result = rec.wait("result", 3)[2][0]
    assert result == {"err": None, "res": []}


def test_deferred_ack_from_another_thread(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("client_ack_result", rec.handler("result"))

    def later(ack: Any, *args: Any) -> None:
        threading.Thread(target=ack, args=("later", *args)).start()

    client.on("question", later, with_ack=True)
    client.connect()
    client.emit("server_emit_with_ack", {"event": "question", "args": [7]})
    ((result,),) = rec.wait("result")
    assert result == {"err": None, "res": ["later", 7]}


def test_handler_may_call_and_emit_without_deadlock(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()

    def on_echo(*args: Any) -> None:
        if args and args[0] == "start":
            rec.record("inner", client.call("echo_ack", "from-handler", timeout=5))

    client.on("echo", on_echo)
    client.connect()
    client.emit("echo", "start")
    assert rec.wait("inner") == [("from-handler",)]


def test_handler_exception_is_logged_and_connection_survives(
    make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    client = make_client()

    def boom(*args: Any) -> None:
        raise RuntimeError("user bug")

    client.on("echo", boom)
    client.on_any(lambda event, *args: rec.record("any", event, *args))
    client.connect()
    client.emit("echo", 1)
    client.emit("echo", 2)
    rec.wait("any", 2)
    assert client.connected
    assert "user bug" in caplog.text


def test_events_named_error_and_message_are_data(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("error", rec.handler("error"))
    client.on("message", rec.handler("message"))
    client.connect()
    client.emit("echo", "ignored")  # echo comes back as "echo", not as error/message
    client.call("broadcast", {"event": "error", "args": [{"code": 1}]}, timeout=5)
    client.call("broadcast", {"event": "message", "args": ["hi"]}, timeout=5)
    assert rec.wait("error") == [({"code": 1},)]
    assert rec.wait("message") == [("hi",)]


def test_reserved_event_names_cannot_be_emitted(make_client: Callable[..., Client]) -> None:
    client = make_client()
    for name in ("connect", "disconnect", "connect_error", "disconnecting", "newListener"):
        with pytest.raises(ReservedEventError):
            client.emit(name)


def test_on_any_sees_every_event_in_order(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on_any(lambda event, *args: rec.record("any", event, *args))
    client.connect()
    client.emit("flood", {"n": 500, "event": "tick", "payload": "p"})
    rec.wait("any", 501)
    seen = rec.get("any")
    assert [e[0] for e in seen] == ["tick"] * 500 + ["flood_done"]


def test_namespaces_share_one_engine_connection(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.connect()
    engine = client.manager.engine
    chat = client.socket("/chat")
    rec = Recorder()
    chat.on("echo", rec.handler("chat-echo"))
    client.on("echo", rec.handler("main-echo"))
    chat.connect()
    assert client.manager.engine is engine
    assert chat.sid and chat.sid != client.sid
    chat.emit("echo", "to-chat")
    client.emit("echo", "to-main")
    assert rec.wait("chat-echo") == [("to-chat",)]
    assert rec.wait("main-echo") == [("to-main",)]
    assert client.socket("/chat") is chat
    hs_main = client.call("get_handshake", timeout=5)
    hs_chat = chat.call("get_handshake", timeout=5)
    assert hs_main["nsp"] == "/" and hs_chat["nsp"] == "/chat"
    # leaving one namespace keeps the other
    chat.disconnect()
    assert not chat.connected
    assert client.call("echo_ack", "still", timeout=5) == "still"


def test_auth_accepted_and_refused(make_client: Callable[..., Client]) -> None:
    good = make_client(namespace="/admin", auth={"token": "secret"})
    good.connect()
    assert good.call("get_handshake", timeout=5)["auth"] == {"token": "secret"}

    rec = Recorder()
    bad = make_client(namespace="/admin", auth={"token": "wrong"})
    bad.on("connect_error", rec.handler("connect_error"))
    with pytest.raises(ConnectError) as info:
        bad.connect()
    assert info.value.message == "not authorized"
    assert info.value.data == {"reason": "bad token"}
    ((err,),) = rec.wait("connect_error")
    assert isinstance(err, ConnectError) and err.message == "not authorized"
    assert not bad.connected
    wait_until(lambda: bad.manager.engine is None, 5, "engine closed after refusal")


def test_headers_reach_the_server(make_client: Callable[..., Client]) -> None:
    client = make_client(headers={"X-Test-Header": "hello"})
    client.connect()
    handshake = client.call("get_handshake", timeout=5)
    assert handshake["headers"]["x-test-header"] == "hello"


def test_disconnect_leaves_no_thread(make_client: Callable[..., Client]) -> None:
    before = client_threads()
    assert before == []
    client = make_client()
    client.on("echo", lambda *a: None)
    client.connect()
    client.socket("/chat").connect()
    client.call("echo_ack", 1, timeout=5)
    assert client_threads()
    client.disconnect()
    assert client_threads() == []
    assert not client.connected


def test_disconnect_event_reason_client(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("connect", rec.handler("connect"))
    client.on("disconnect", rec.handler("disconnect"))
    client.connect()
    rec.wait("connect")
    client.disconnect()
    assert rec.get("disconnect") == [("io client disconnect",)]


def test_server_disconnect_does_not_reconnect(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("disconnect", rec.handler("disconnect"))
    client.on("reconnect_attempt", rec.handler("reconnect_attempt"))
    client.connect()
    client.emit("server_disconnect")
    assert rec.wait("disconnect") == [("io server disconnect",)]
    wait_until(lambda: not client_threads(), 5, "threads to end after server disconnect")
    assert rec.get("reconnect_attempt") == []
    assert not client.connected


def test_context_manager_and_builder(make_client: Callable[..., Client]) -> None:
    client = make_client()
    with client as connected:
        assert connected.connected
    assert not client.connected
    url = client.manager.url
    rec = Recorder()
    built = (
        ClientBuilder(url)
        .namespace("/admin")
        .auth({"token": "secret"})
        .opening_header("X-From", "builder")
        .transport_type("websocket" if make_client.mode == "websocket" else "any")  # type: ignore[attr-defined]
        .reconnect(False)
        .reconnect_delay(0.1, 1.0)
        .max_reconnect_attempts(3)
        .on("echo", rec.handler("echo"))
        .on_any(lambda event, *a: rec.record("any", event))
        .connect()
    )
    try:
        assert built.namespace == "/admin" and built.connected
        built.emit("echo", "b")
        assert rec.wait("echo") == [("b",)]
        assert built.call("get_handshake", timeout=5)["headers"]["x-from"] == "builder"
    finally:
        built.disconnect()


def test_large_binary_round_trip(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.connect()
    # 512 KiB: as base64 on polling it stays within the server's default 1 MB maxPayload
    blob = bytes(range(256)) * 2048
    assert client.call("echo_ack", blob, timeout=20) == blob


def test_connect_again_after_disconnect(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("connect", rec.handler("connect"))
    client.connect()
    first = client.sid
    client.disconnect()
    assert client_threads() == []
    client.connect()
    assert client.connected and client.sid != first
    assert client.call("echo_ack", "again", timeout=5) == "again"
    rec.wait("connect", 2)


def test_handler_may_disconnect(make_client: Callable[..., Client]) -> None:
    rec = Recorder()
    client = make_client()
    client.on("disconnect", rec.handler("disconnect"))
    client.on("echo", lambda *a: client.disconnect())
    client.connect()
    client.emit("echo", "bye")
    assert rec.wait("disconnect") == [("io client disconnect",)]
    wait_until(lambda: not client_threads(), 5, "threads to end")
    assert not client.connected
