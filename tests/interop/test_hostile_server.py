"""The client against a deliberately misbehaving server (tests/servers/hostile.py).

Every item of the hostile-input list in docs/protocol-notes.md (servers/hostile_cases.py), over
long-polling and over websocket where it applies: the connection ends with "parse error" (never
a crash, a hang or unbounded memory), the client reconnects and works on the next, well-behaved
connection. A malformed handshake makes ``connect()`` raise ConnectError; an ``upgrades`` list
naming unknown transports is not an error. A hypothesis fuzz test then throws random messages
at a connected client. Throughout, no exception may escape a thread, nothing may be logged at
ERROR by the library (``log.exception`` marks a bug path), and ``disconnect()`` ends every
``sio-mqtt*`` thread.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from servers.fuzz_strategies import batches
from servers.hostile import HostileCase, HostileServer
from servers.hostile_cases import HANDSHAKE_CASES, PARSE_ERROR_CASES
from support import Recorder, client_threads, wait_until

from sio_mqtt import Client, ConnectError
from sio_mqtt.socketio.client import RECONNECTABLE

FAST: dict[str, Any] = {
    "reconnect_delay": 0.01,
    "reconnect_delay_max": 0.05,
    "randomization_factor": 0.0,
    "connect_timeout": 5.0,
}
TRANSPORTS = ("polling", "websocket")
LIFECYCLE = ("connect", "disconnect", "connect_error", "reconnect_attempt", "reconnect")


def _params(cases: list[HostileCase]) -> list[Any]:
    return [
        pytest.param(case, transport, id=f"{transport}-{case.name}")
        for case in cases
        for transport in TRANSPORTS
        if case.applies_to(transport)
    ]


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------


class Events(Recorder):
    """A Recorder that can also wait for any condition over what it recorded."""

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; seen {self.order[-20:]}")
                self._cond.wait(left)

    def count(self, name: str) -> int:
        return len(self.get(name))


class Harness:
    """Servers and clients of one test, and the checks every test ends with."""

    def __init__(self) -> None:
        self.servers: list[HostileServer] = []
        self.clients: list[Client] = []
        self.thread_errors: list[str] = []

    def server(self, cases: list[HostileCase | None], **options: Any) -> HostileServer:
        server = HostileServer(cases, **options).start()
        self.servers.append(server)
        return server

    def client(self, server: HostileServer, transports: tuple[str, ...], **options: Any) -> Client:
        client = Client(server.url, transports=transports, **{**FAST, **options})
        self.clients.append(client)
        return client

    def recorder(self, client: Client) -> Events:
        rec = Events()
        for name in LIFECYCLE:
            client.on(name, rec.handler(name))
        return rec


@pytest.fixture
def harness(caplog: pytest.LogCaptureFixture) -> Iterator[Harness]:
    """Records exceptions escaping any thread; at teardown disconnects every client and checks
    that no thread raised, the library logged nothing at ERROR and no client thread is left."""
    h = Harness()
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        h.thread_errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    caplog.set_level(logging.INFO, logger="sio_mqtt")
    try:
        yield h
        for client in h.clients:
            client.disconnect()
        wait_until(lambda: not client_threads(), 10, "sio-mqtt threads to end")
    finally:
        threading.excepthook = previous
        for server in h.servers:
            server.stop()
    assert h.thread_errors == []
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("sio_mqtt") and r.levelno >= logging.ERROR
    ]
    assert errors == []
    for server in h.servers:
        assert server.errors == []


def _assert_works(client: Client, server: HostileServer, index: int, token: str) -> None:
    """An event with an ack round-trips on the server's ``index``-th connection."""
    assert client.call("echo", token, {"n": 1}, timeout=5) == (token, {"n": 1})
    conn = server.connection(index)
    sent = conn.socketio_packets()
    assert sent[0] == "0"
    assert any(p.startswith("2") and token in p for p in sent if isinstance(p, str)), sent


# ----------------------------------------------------------------------------------------------
# hostile payloads after a good CONNECT
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "transport"), _params(PARSE_ERROR_CASES))
def test_hostile_payload_ends_in_parse_error_then_reconnects(
    harness: Harness, case: HostileCase, transport: str
) -> None:
    server = harness.server([case])
    client = harness.client(server, (transport,))
    rec = harness.recorder(client)
    client.connect()
    first = server.connection(0)
    assert first.case is case
    assert first.transport == transport

    assert rec.wait("disconnect")[0] == ("parse error",)
    assert rec.wait("reconnect")[0] == (1,)
    rec.wait("connect", 2)
    assert client.connected
    assert client.transport == transport
    _assert_works(client, server, 1, "after-" + case.name)
    assert server.connection(1).case is None
    assert first.socketio_packets() == ["0"]  # the client sent nothing else on the bad one
    assert rec.get("connect_error") == []

    client.disconnect()
    wait_until(lambda: not client_threads(), 10, "sio-mqtt threads to end")
    assert len(server.connections) == 2


INSTEAD_OF_REPLY = ["event-name-null", "truncated-json", "binary-without-header", "engine-empty"]


@pytest.mark.parametrize(
    ("case", "transport"),
    [
        pytest.param(
            HostileCase(
                case.name,
                frames=case.frames,
                poll_body=case.poll_body,
                ws_frames=case.ws_frames,
                instead_of_connect_reply=True,
            ),
            transport,
            id=f"{transport}-{case.name}",
        )
        for case in PARSE_ERROR_CASES
        if case.name in INSTEAD_OF_REPLY
        for transport in TRANSPORTS
        if case.applies_to(transport)
    ],
)
def test_hostile_payload_instead_of_connect_reply_connect_still_succeeds(
    harness: Harness, case: HostileCase, transport: str
) -> None:
    """The parse error hits while the namespace is CONNECTING: ``connect()`` keeps waiting
    through the reconnect and returns once the next connection accepts the namespace."""
    server = harness.server([case])
    client = harness.client(server, (transport,))
    rec = harness.recorder(client)
    client.connect()
    assert client.connected
    assert rec.wait("reconnect")[0] == (1,)
    assert rec.get("disconnect") == []  # never was connected on the bad connection
    assert rec.get("connect_error") == []
    _assert_works(client, server, 1, "ok")
    assert server.connection(0).socketio_packets() == ["0"]


def test_every_case_on_a_row_of_connections(harness: Harness) -> None:
    """One client through many bad connections in a row (backoff grows but stays bounded)."""
    cases: list[HostileCase | None] = [
        c for c in PARSE_ERROR_CASES if c.applies_to("websocket") and not c.big_message
    ]
    server = harness.server(cases)
    client = harness.client(server, ("websocket",), reconnect_delay=0.001, reconnect_delay_max=0.01)
    rec = harness.recorder(client)
    client.connect()
    rec.wait("connect", len(cases) + 1, timeout=60)
    reasons = {args[0] for args in rec.wait("disconnect", len(cases))}
    assert reasons == {"parse error"}
    _assert_works(client, server, len(cases), "survivor")


# ----------------------------------------------------------------------------------------------
# hostile handshakes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "transport"), _params(HANDSHAKE_CASES))
def test_malformed_handshake_raises_connect_error(
    harness: Harness, case: HostileCase, transport: str
) -> None:
    server = harness.server([case])
    client = harness.client(server, (transport,))
    rec = harness.recorder(client)
    with pytest.raises(ConnectError, match="cannot connect"):
        client.connect()
    assert not client.connected
    wait_until(lambda: not client_threads(), 10, "sio-mqtt threads to end after the refusal")
    assert rec.get("reconnect_attempt") == []  # a failed first connect is not retried
    # the same client connects once the server behaves (connection #1)
    client.connect()
    _assert_works(client, server, 1, "second-try")


def test_unknown_upgrades_are_ignored_and_websocket_still_used(harness: Harness) -> None:
    case = HostileCase(
        "upgrades-unknown", handshake_extra={"upgrades": ["webtransport", "websocket", "quic"]}
    )
    server = harness.server([case])
    client = harness.client(server, ("polling", "websocket"))
    rec = harness.recorder(client)
    client.connect()
    conn = server.connection(0)
    assert conn.upgraded.wait(10)
    wait_until(lambda: client.transport == "websocket", 10, "the client to use the websocket")
    _assert_works(client, server, 0, "upgraded")
    assert rec.get("disconnect") == []
    assert len(server.connections) == 1


def test_only_unknown_upgrades_means_staying_on_polling(harness: Harness) -> None:
    case = HostileCase("upgrades-only-unknown", handshake_extra={"upgrades": ["webtransport"]})
    server = harness.server([case])
    client = harness.client(server, ("polling", "websocket"))
    rec = harness.recorder(client)
    client.connect()
    _assert_works(client, server, 0, "polling")
    assert client.transport == "polling"
    assert not server.connection(0).upgraded.is_set()
    assert rec.get("disconnect") == []


def test_unknown_upgrades_on_a_direct_websocket_are_ignored(harness: Harness) -> None:
    case = HostileCase(
        "upgrades-ws-unknown", handshake_extra={"upgrades": ["webtransport", "polling2"]}
    )
    server = harness.server([case])
    client = harness.client(server, ("websocket",))
    rec = harness.recorder(client)
    client.connect()
    _assert_works(client, server, 0, "direct")
    assert rec.get("disconnect") == []


# ----------------------------------------------------------------------------------------------
# fuzz: random messages at a connected websocket client (strategies: servers/fuzz_strategies.py;
# volume over both transports: test_garbage_fuzz.py)
# ----------------------------------------------------------------------------------------------


def test_fuzz_random_messages_leave_the_client_sane(harness: Harness) -> None:
    server = harness.server([])
    client = harness.client(
        server, ("websocket",), reconnect_delay=0.001, reconnect_delay_max=0.005
    )
    rec = harness.recorder(client)
    client.on("sentinel", rec.handler("sentinel"))
    client.on("bin", rec.handler("bin"))
    client.connect()
    counter = itertools.count()
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.monotonic()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(batches)
    def run(messages: list[str | bytes]) -> None:
        n = next(counter)
        engine = client.manager.engine
        assert engine is not None and client.connected
        conn = server.by_sid(engine.sid)
        assert conn is not None
        disconnects = rec.count("disconnect")
        refusals = rec.count("connect_error")
        connects = rec.count("connect")
        conn.send([*messages, f'42["sentinel",{n}]'])
        rec.wait_for(
            lambda: (
                (n,) in rec.get("sentinel")
                or rec.count("disconnect") > disconnects
                or rec.count("connect_error") > refusals
            ),
            what=f"example {n}: the sentinel or a disconnect",
        )
        if rec.count("connect_error") > refusals:
            ended = "connect_error"  # a well-formed refusal of "/": the client gave up
        elif rec.count("disconnect") > disconnects:
            ended = rec.get("disconnect")[disconnects][0]
        else:
            ended = ""
        outcome = ended or "still connected"
        outcomes[outcome] += 1
        event(f"ended: {outcome}")
        if ended in RECONNECTABLE:
            rec.wait_for(lambda: rec.count("connect") > connects, what="the reconnect")
        elif ended:
            # "io server disconnect" or a CONNECT_ERROR: no automatic reconnect, by design
            assert ended in ("io server disconnect", "connect_error"), ended
            wait_until(lambda: not client_threads(), 10, "the client to wind down")
            client.connect()
        assert client.connected
        # The ack callback runs on the dispatcher after every lifecycle event submitted before
        # it, so the counts the next example starts from are complete (a barrier).
        future = client.emit_with_ack("echo", n, timeout=5, callback=rec.handler("echoed"))
        assert future.result(10) == n
        rec.wait_for(lambda: (n,) in rec.get("echoed"), what=f"the echo of example {n}")

    run()
    assert time.monotonic() - started < 120  # generous: a hang would show up as a timeout
    # both kinds of example happened: harmless input kept the session, hostile input ended it
    assert outcomes["still connected"] > 0
    assert outcomes["parse error"] > 0
    # well-formed binary events between the hostile ones arrived with their bytes
    assert any(isinstance(arg, bytes) for args in rec.get("bin") for arg in args)
