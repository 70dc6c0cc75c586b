"""Smoke tests for the real peer servers and their fixtures.

The peer here is python-socketio's own sync client, so these tests prove the
servers (and the start/stop/restart machinery), not our client.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests
import socketio
from servers.procs import (
    Mosquitto,
    NodeServer,
    PySocketIOServer,
    ServerStartError,
    free_port,
    port_open,
    wait_port_closed,
)

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5


class Peer:
    """python-socketio sync client that queues every received event."""

    def __init__(self, namespaces: tuple[str, ...] = ("/",), **client_kwargs: Any) -> None:
        client_kwargs.setdefault("reconnection", False)
        self.sio = socketio.Client(**client_kwargs)
        self.events: queue.Queue[tuple[str, str, tuple[Any, ...]]] = queue.Queue()
        self.disconnected = threading.Event()
        self.connect_errors: list[Any] = []
        self.ack_handlers: dict[str, Callable[..., Any]] = {}
        for ns in namespaces:
            self._register(ns)

    def _register(self, ns: str) -> None:
        def catch_all(event: str, *args: Any) -> Any:
            self.events.put((ns, event, args))
            handler = self.ack_handlers.get(event)
            return handler(*args) if handler else None

        self.sio.on("*", catch_all, namespace=ns)
        self.sio.on("disconnect", lambda *a: self.disconnected.set(), namespace=ns)
        self.sio.on("connect_error", self.connect_errors.append, namespace=ns)

    def get(self, event: str, timeout: float = TIMEOUT) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"event {event!r} not received")
            _, name, args = self.events.get(timeout=remaining)
            if name == event:
                return args


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(*namespaces: str, **kwargs: Any) -> Peer:
        p = Peer(namespaces or ("/",), **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.sio.disconnect()


@pytest.fixture(params=["node", "py"])
def any_server(
    request: pytest.FixtureRequest,
    node_server: Callable[..., NodeServer],
    py_server: Callable[..., PySocketIOServer],
) -> Callable[..., NodeServer | PySocketIOServer]:
    return node_server if request.param == "node" else py_server


def engineio_open(url: str, path: str = "/socket.io/") -> dict[str, Any]:
    """Raw Engine.IO v4 polling handshake: returns the OPEN packet's payload."""
    with urllib.request.urlopen(f"{url}{path}?EIO=4&transport=polling", timeout=TIMEOUT) as r:
        body = r.read().decode()
    assert body.startswith("0"), body
    return dict(json.loads(body[1:]))


# --------------------------------------------------------------------------- #
# Socket.IO servers
# --------------------------------------------------------------------------- #


def test_node_default_echo_and_acks(node_server_default: NodeServer, peers: Callable[..., Peer]):
    srv = node_server_default
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    p = peers("/")
    p.sio.connect(srv.url, wait_timeout=TIMEOUT)
    # several ack args come back as a tuple from python-socketio's call()
    assert p.sio.call("echo_ack", (1, "two", {"three": [3]}), timeout=TIMEOUT) == (
        1,
        "two",
        {"three": [3]},
    )
    assert p.sio.call("echo_ack", b"\x00\x01binary", timeout=TIMEOUT) == b"\x00\x01binary"
    assert p.sio.call("ack_nothing", timeout=TIMEOUT) is None
    p.sio.emit("echo", ("a", b"\xff"))
    assert p.get("echo") == ("a", b"\xff")
    hs = p.sio.call("get_handshake", timeout=TIMEOUT)
    assert hs["id"] == p.sio.get_sid("/")
    assert hs["recovered"] is False
    assert hs["transport"] in ("polling", "websocket")


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
def test_single_transport(
    any_server: Callable[..., Any], peers: Callable[..., Peer], transports: list[str]
):
    # python-engineio keeps a pending long-poll open until the next ping when
    # the client disconnects: a short ping interval keeps the teardown quick
    srv = any_server(transports=transports, ping_interval=1000, ping_timeout=1000)
    info = engineio_open(srv.url) if transports == ["polling"] else None
    if info is not None:
        assert info["upgrades"] == []
    p = peers("/")
    p.sio.connect(srv.url, transports=transports, wait_timeout=TIMEOUT)
    assert p.sio.call("get_transport", timeout=TIMEOUT) == transports[0]
    assert p.sio.call("echo_ack", "hi", timeout=TIMEOUT) == "hi"


def test_events_and_counters(any_server: Callable[..., Any], peers: Callable[..., Peer]):
    srv = any_server(ping_interval=2000, ping_timeout=2000)
    info = engineio_open(srv.url)
    assert info["pingInterval"] == 2000
    assert info["pingTimeout"] == 2000

    p = peers("/", "/chat")
    p.ack_handlers["please_ack"] = lambda *args: ("got", *args)
    p.sio.connect(srv.url, namespaces=["/", "/chat"], wait_timeout=TIMEOUT)

    assert p.sio.call("reset_count", namespace="/chat", timeout=TIMEOUT) == 0
    for _ in range(10):
        p.sio.emit("count", namespace="/chat")
    assert p.sio.call("get_count", namespace="/chat", timeout=TIMEOUT) == 10
    stats = p.sio.call("get_stats", namespace="/chat", timeout=TIMEOUT)
    assert stats["connected"] >= 1
    assert stats["count"] == 10

    p.sio.emit("flood", {"n": 200, "event": "f", "payload": {"k": 1}})
    got = 0
    while True:
        _, name, args = p.events.get(timeout=TIMEOUT)
        if name == "flood_done":
            assert args == (200,)
            break
        assert name == "f"
        assert args == ({"k": 1},)
        got += 1
    assert got == 200

    p.sio.emit("server_emit_with_ack", {"event": "please_ack", "args": [1, b"\x02"]})
    assert p.get("client_ack_result") == ({"err": None, "res": ["got", 1, b"\x02"]},)

    assert p.sio.call("join", "room1", namespace="/chat", timeout=TIMEOUT) is True
    p.sio.emit("broadcast", {"room": "room1", "event": "b", "args": ["x", 2]}, namespace="/chat")
    assert p.get("b") == ("x", 2)

    p.sio.emit("server_disconnect")
    assert p.disconnected.wait(TIMEOUT)


def test_close_transport(any_server: Callable[..., Any], peers: Callable[..., Peer]):
    srv = any_server()
    p = peers("/")
    p.sio.connect(srv.url, transports=["websocket"], wait_timeout=TIMEOUT)
    p.sio.emit("close_transport")
    assert p.disconnected.wait(TIMEOUT)


def test_admin_auth(any_server: Callable[..., Any], peers: Callable[..., Peer]):
    srv = any_server()
    ok = peers("/admin")
    ok.sio.connect(srv.url, namespaces=["/admin"], auth={"token": "secret"}, wait_timeout=TIMEOUT)
    hs = ok.sio.call("get_handshake", namespace="/admin", timeout=TIMEOUT)
    assert hs["auth"] == {"token": "secret"}

    bad = peers("/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        bad.sio.connect(
            srv.url, namespaces=["/admin"], auth={"token": "nope"}, wait_timeout=TIMEOUT
        )
    assert bad.connect_errors
    err = bad.connect_errors[0]
    assert err["message"] == "not authorized"
    assert err["data"] == {"reason": "bad token"}


def test_node_dynamic_namespace(node_server: Callable[..., NodeServer], peers: Callable[..., Peer]):
    srv = node_server()
    p = peers("/dyn-abc")
    p.sio.connect(srv.url, namespaces=["/dyn-abc"], wait_timeout=TIMEOUT)
    assert p.sio.call("echo_ack", 7, namespace="/dyn-abc", timeout=TIMEOUT) == 7
    hs = p.sio.call("get_handshake", namespace="/dyn-abc", timeout=TIMEOUT)
    assert hs["nsp"] == "/dyn-abc"


def test_cookie_affinity(any_server: Callable[..., Any], peers: Callable[..., Peer]):
    srv = any_server(cookie=True, transports=["polling"], ping_interval=1000, ping_timeout=1000)
    with urllib.request.urlopen(f"{srv.url}/socket.io/?EIO=4&transport=polling") as r:
        sid = json.loads(r.read().decode()[1:])["sid"]
        assert f"io={sid}" in r.headers.get("Set-Cookie", "")
    p = peers("/")
    p.sio.connect(srv.url, transports=["polling"], wait_timeout=TIMEOUT)
    cookies = p.sio.call("get_cookies", timeout=TIMEOUT)
    # requests.Session sent the affinity cookie back on the follow-up requests
    assert any(c and c.startswith("io=") for c in cookies["requests"]), cookies


def test_msgpack_tls_path_welcome(
    any_server: Callable[..., Any], peers: Callable[..., Peer], tls_files: dict[str, str]
):
    srv = any_server(parser="msgpack", tls=tls_files, path="/custom/", welcome="hello")
    assert srv.url.startswith("https://")
    http = requests.Session()
    # REQUESTS_CA_BUNDLE in the environment would override session.verify
    http.trust_env = False
    http.verify = tls_files["cert"]
    p = peers("/", serializer="msgpack", http_session=http)
    p.sio.connect(srv.url, socketio_path="/custom/", wait_timeout=TIMEOUT)
    hello = p.get("hello")[0]
    assert hello["id"] == p.sio.get_sid("/")
    assert hello["recovered"] is False
    assert p.sio.call("echo_ack", (1, b"\x01", {"a": [1.5]}), timeout=TIMEOUT) == (
        1,
        b"\x01",
        {"a": [1.5]},
    )


def test_node_recovery(node_server: Callable[..., NodeServer], peers: Callable[..., Peer]):
    rec = node_server(connection_state_recovery=True)
    p = peers("/")
    p.sio.connect(rec.url, wait_timeout=TIMEOUT)
    # with recovery on, server->client events carry the offset as a last argument
    p.sio.emit("echo", "a")
    args = p.get("echo")
    assert args[0] == "a"
    assert len(args) == 2
    assert isinstance(args[1], str)


def test_restart_same_port(any_server: Callable[..., Any], peers: Callable[..., Peer]):
    srv = any_server()
    port, pid = srv.port, srv.pid
    p = peers("/")
    p.sio.connect(srv.url, wait_timeout=TIMEOUT)
    srv.restart(kill=True)
    assert srv.port == port
    assert srv.pid != pid
    assert p.disconnected.wait(TIMEOUT)
    p2 = peers("/")
    p2.sio.connect(srv.url, wait_timeout=TIMEOUT)
    assert p2.sio.call("echo_ack", "again", timeout=TIMEOUT) == "again"
    srv.restart()  # graceful (SIGTERM)
    assert srv.port == port
    srv.stop()
    assert wait_port_closed(port)


def test_start_failure_is_reported():
    srv = NodeServer(parser="nope")
    with pytest.raises(ServerStartError, match="unknown parser"):
        srv.start()
    srv.stop()


def test_free_port_unique():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert 1883 not in ports


# --------------------------------------------------------------------------- #
# mosquitto
# --------------------------------------------------------------------------- #


def mqtt_client(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"smoke-{uuid.uuid4().hex[:8]}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def roundtrip(port: int, topic: str, payload: bytes, retain: bool = False) -> bytes:
    got: queue.Queue[bytes] = queue.Queue()
    sub = mqtt_client(port)
    sub.on_message = lambda c, u, m: got.put(m.payload)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe(topic, qos=1)
    assert subscribed.wait(TIMEOUT)
    pub = mqtt_client(port)
    pub.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)
    try:
        return got.get(timeout=TIMEOUT)
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def test_mosquitto_module_fixture(mosquitto: Mosquitto):
    assert mosquitto.port != 1883
    assert port_open(mosquitto.port)
    assert roundtrip(mosquitto.port, "smoke/a", b"hello") == b"hello"


def test_mosquitto_restart_with_persistence(mosquitto_factory: Callable[..., Mosquitto]):
    broker = mosquitto_factory(persistent=True)
    port = broker.port
    assert roundtrip(port, "smoke/retained", b"keep", retain=True) == b"keep"
    broker.restart()  # SIGTERM: the db is written at shutdown
    assert broker.port == port
    # the retained message survived the restart
    got: queue.Queue[bytes] = queue.Queue()
    c = mqtt_client(port)
    c.on_message = lambda cl, u, m: got.put(m.payload)
    c.subscribe("smoke/retained", qos=1)
    try:
        assert got.get(timeout=TIMEOUT) == b"keep"
    finally:
        c.disconnect()
        c.loop_stop()
    broker.restart(kill=True)
    assert roundtrip(port, "smoke/b", b"after kill") == b"after kill"
