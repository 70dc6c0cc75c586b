"""The client against a deliberately misbehaving server (tests/servers/hostile.py).

Every item of the hostile-input list in docs/protocol-notes.md, over long-polling and over
websocket where it applies: the connection ends with "parse error" (never a crash, a hang or
unbounded memory), the client reconnects and works on the next, well-behaved connection.
A malformed handshake makes ``connect()`` raise ConnectError; an ``upgrades`` list naming
unknown transports is not an error. A hypothesis fuzz test then throws random messages at a
connected client. Throughout, no exception may escape a thread, nothing may be logged at
ERROR by the library (``log.exception`` marks a bug path), and ``disconnect()`` ends every
``sio-mqtt*`` thread.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from servers.hostile import (
    OP_BINARY,
    OP_CONT,
    OP_TEXT,
    HostileCase,
    HostileServer,
    RawBody,
    WsFrame,
)
from support import Recorder, client_threads, wait_until

from sio_mqtt import Client, ConnectError
from sio_mqtt.socketio.client import RECONNECTABLE
from sio_mqtt.socketio.packet import RESERVED_EVENTS

MiB = 1 << 20
OVERSIZE = 20 * MiB  # above the client's limit max(64 * 1000, 16 MiB) for maxPayload 1000
_CHUNK = b"x" * MiB  # shared by the fragments of a 20 MiB message
FAST: dict[str, Any] = {
    "reconnect_delay": 0.01,
    "reconnect_delay_max": 0.05,
    "randomization_factor": 0.0,
    "connect_timeout": 5.0,
}
TRANSPORTS = ("polling", "websocket")
LIFECYCLE = ("connect", "disconnect", "connect_error", "reconnect_attempt", "reconnect")


def _ph(placeholder: Any = True, **num: Any) -> str:
    """A BINARY_EVENT header with one attachment and a (possibly broken) placeholder."""
    obj: dict[str, Any] = {"_placeholder": placeholder, **num}
    return "451-" + json.dumps(["a", obj])


# The hostile-input list of protocol-notes.md, one case per item (several per line).
PARSE_ERROR_CASES: list[HostileCase] = [
    # huge digit runs in the header; attachment counts far above what is sane
    HostileCase("ack-id-digit-run", frames=("42" + "1" * 100_000 + '["a"]',)),
    HostileCase("ack-id-above-2**53", frames=('429007199254740993["a"]',)),
    HostileCase("attachment-count-digit-run", frames=("45" + "1" * 100_000 + '-["a"]',)),
    HostileCase("attachment-count-insane", frames=('45999999-["a",' + '{"_placeholder":true}]',)),
    HostileCase("attachment-count-above-limit", frames=('4565-["a"]',)),
    HostileCase("binary-ack-count-insane", frames=('46999999-0[{"_placeholder":true,"num":0}]',)),
    HostileCase("attachment-count-not-digits", frames=('45x-["a"]',)),
    # placeholders with a bad num / _placeholder not exactly true
    HostileCase("placeholder-num-out-of-range", frames=(_ph(num=1),)),
    HostileCase("placeholder-num-negative", frames=(_ph(num=-1),)),
    HostileCase("placeholder-num-string", frames=(_ph(num="0"),)),
    HostileCase("placeholder-num-float", frames=(_ph(num=0.0),)),
    HostileCase("placeholder-num-bool", frames=(_ph(num=True),)),
    HostileCase("placeholder-num-missing", frames=(_ph(),)),
    HostileCase("placeholder-false", frames=(_ph(False, num=0),)),
    HostileCase("placeholder-string-true", frames=(_ph("true", num=0),)),
    HostileCase("placeholder-one", frames=(_ph(1, num=0),)),
    HostileCase("placeholder-without-count", frames=('450-["a",{"_placeholder":true,"num":0}]',)),
    # event names that are not strings; reserved names
    HostileCase("event-name-object", frames=('42[{"toString":"x"}]',)),
    HostileCase("event-name-true", frames=('42[true,"x"]',)),
    HostileCase("event-name-null", frames=("42[null]",)),
    HostileCase("event-name-number", frames=("42[1]",)),
    HostileCase("event-name-connect", frames=('42["connect"]',)),
    HostileCase("event-name-disconnect", frames=('42["disconnect",1]',)),
    HostileCase("event-name-connect-error", frames=('42["connect_error"]',)),
    HostileCase("event-name-new-listener", frames=('42["newListener"]',)),
    HostileCase("binary-event-name-null", frames=('451-[null,{"_placeholder":true,"num":0}]',)),
    # truncated / invalid JSON
    HostileCase("truncated-json", frames=('42["a"',)),
    HostileCase("truncated-json-object", frames=('42["a",{"k":',)),
    HostileCase("trailing-garbage", frames=('42["a"]x',)),
    HostileCase("json-nan", frames=('42["a",NaN]',)),
    HostileCase("json-deep-nesting", frames=('42["a",' + "[" * 100_000 + "]" * 100_000 + "]",)),
    # wrong payload kinds
    HostileCase("event-object", frames=("42{}",)),
    HostileCase("event-empty-array", frames=("42[]",)),
    HostileCase("event-string", frames=('42"a"',)),
    HostileCase("connect-array", frames=("40[]",)),
    HostileCase("disconnect-with-payload", frames=("41/admin,{}",)),
    HostileCase("disconnect-root-with-payload", frames=('41["x"]',)),
    HostileCase("ack-without-id", frames=("43[]",)),
    HostileCase("ack-object", frames=("430{}",)),
    HostileCase("connect-error-array", frames=("44[]",)),
    HostileCase("connect-with-ack-id", frames=('405{"sid":"y"}',)),
    # bad ack ids
    HostileCase("ack-id-letters", frames=('42abc["a"]',)),
    HostileCase("ack-id-negative", frames=('42-1["a"]',)),
    HostileCase("ack-letters", frames=("43abc[]",)),
    # unknown types
    HostileCase("socketio-type-9", frames=("4999",)),
    HostileCase("socketio-type-letter", frames=("4abc",)),
    HostileCase("engine-type-letter", frames=("a123",)),
    HostileCase("engine-second-open", frames=('0{"sid":"again"}',)),
    HostileCase("engine-unexpected-upgrade", frames=("5",)),
    # empty packets
    HostileCase("socketio-empty", frames=("4",)),
    HostileCase(
        "engine-empty",
        ws_frames=(WsFrame(OP_TEXT, b""),),
        poll_body=RawBody(b"6\x1e\x1e6"),
    ),
    HostileCase("poll-body-empty", poll_body=RawBody(b"")),
    # invalid base64 after "b" (polling only: websocket binary frames are raw)
    HostileCase("base64-invalid-chars", poll_body=RawBody(b"b!!!!")),
    HostileCase("base64-bad-padding", poll_body=RawBody(b"bAQI")),
    HostileCase("base64-after-header", poll_body=RawBody(_ph(num=0).encode() + b"\x1eb@@==")),
    HostileCase("poll-body-not-utf8", poll_body=RawBody(b'42["\xff\xfe"]')),
    HostileCase("ws-text-not-utf8", ws_frames=(WsFrame(OP_TEXT, b'42["\xff"]'),)),
    # websocket framing (the client parses frames itself)
    HostileCase("ws-reserved-bits", ws_frames=(WsFrame(OP_TEXT, b'42["a"]', rsv=0x40),)),
    HostileCase("ws-unknown-opcode", ws_frames=(WsFrame(0x3, b"x"),)),
    HostileCase("ws-unknown-control-opcode", ws_frames=(WsFrame(0xB),)),
    HostileCase("ws-continuation-without-start", ws_frames=(WsFrame(OP_CONT, b"x"),)),
    HostileCase(
        "ws-data-frame-inside-fragmented",
        ws_frames=(WsFrame(OP_TEXT, b"42", fin=False), WsFrame(OP_TEXT, b'["a"]')),
    ),
    HostileCase(
        "ws-fragments-not-utf8",
        ws_frames=(WsFrame(OP_TEXT, b'42["\xe2', fin=False), WsFrame(OP_CONT, b'"]')),
    ),
    # binary without a pending header; text while attachments are expected
    HostileCase("binary-without-header", frames=(b"\x01\x02\x03",)),
    HostileCase("binary-empty-without-header", frames=(b"",)),
    HostileCase("binary-one-too-many", frames=(_ph(num=0), b"\x01", b"\x02")),
    HostileCase("text-while-attachments-pending", frames=(_ph(num=0), '42["b"]')),
    HostileCase("text-after-partial-attachments", frames=('452-["a"]', b"\x01", '42["b"]')),
    # far above maxPayload (the client's limit is max(64 * maxPayload, 16 MiB))
    HostileCase("oversize-message", big_message=OVERSIZE, max_payload=1000),
    HostileCase(
        "oversize-poll-body-unannounced",
        poll_body=RawBody(b"4", big=OVERSIZE, content_length=False),
        max_payload=1000,
    ),
    HostileCase(
        "oversize-poll-body-announced", poll_body=RawBody(b"4", big=OVERSIZE), max_payload=1000
    ),
    HostileCase(
        "oversize-ws-length-announced-only",
        ws_frames=(WsFrame(OP_BINARY, length=2**62),),
        max_payload=1000,
    ),
    HostileCase(
        "oversize-ws-fragments",
        ws_frames=(
            WsFrame(OP_TEXT, b"4" + _CHUNK[1:], fin=False),
            *[WsFrame(OP_CONT, _CHUNK, fin=False)] * (OVERSIZE // MiB),
            WsFrame(OP_CONT, b"x"),
        ),
        max_payload=1000,
    ),
]


HANDSHAKE_CASES: list[HostileCase] = [
    HostileCase("handshake-truncated-json", handshake='0{"sid":'),
    HostileCase("handshake-not-json", handshake="0sid=abc"),
    HostileCase("handshake-array", handshake="0[]"),
    HostileCase("handshake-no-sid", handshake='0{"pingInterval":25000,"pingTimeout":20000}'),
    HostileCase("handshake-sid-empty", handshake_extra={"sid": ""}),
    HostileCase("handshake-sid-number", handshake_extra={"sid": 12}),
    HostileCase("handshake-ping-interval-string", handshake_extra={"pingInterval": "25000"}),
    HostileCase("handshake-ping-timeout-negative", handshake_extra={"pingTimeout": -1}),
    HostileCase("handshake-ping-interval-huge", handshake_extra={"pingInterval": 10**30}),
    HostileCase("handshake-max-payload-zero", handshake_extra={"maxPayload": 0}),
    HostileCase("handshake-upgrades-string", handshake_extra={"upgrades": "websocket"}),
    HostileCase("handshake-upgrades-numbers", handshake_extra={"upgrades": [1]}),
    HostileCase("handshake-nan", handshake='0{"sid":"a","pingInterval":NaN,"pingTimeout":1}'),
    HostileCase("handshake-not-open", handshake='40{"sid":"x"}'),
    HostileCase("handshake-empty", handshake=""),
]


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
# fuzz: random messages at a connected websocket client
# ----------------------------------------------------------------------------------------------

_PREFIXES = [
    "0", "1", "2", "3", "4", "5", "6", "a", "40", "41", "42", "43", "44", "45", "46",
    "451-", "452-", "450-", "461-", "4610-", "421", "4299", "430", "42/x,", "44/x,", "40/",
]  # fmt: skip

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_placeholders = st.fixed_dictionaries(
    {
        "_placeholder": st.sampled_from([True, False, 1, "true", None]),
        "num": st.one_of(st.integers(-2, 3), st.text(max_size=2), st.none(), st.booleans()),
    }
)
_messages = st.one_of(
    st.binary(max_size=32),
    st.text(max_size=32),
    st.builds(str.__add__, st.sampled_from(_PREFIXES), st.text(max_size=16)),
    st.builds(
        lambda prefix, data: prefix + json.dumps(data),
        st.sampled_from(_PREFIXES),
        st.one_of(_json_values, st.lists(st.one_of(_json_values, _placeholders), max_size=4)),
    ),
    st.builds(
        lambda prefix, name, args: prefix + json.dumps([name, *args]),
        st.sampled_from(["42", "421", "451-", "452-"]),
        st.one_of(st.text(max_size=6), st.sampled_from(["connect", "disconnect", "message"])),
        st.lists(st.one_of(_json_values, _placeholders), max_size=3),
    ),
)
# Well-formed traffic the session must survive: pings, noops, events (some asking for an ack),
# acks nobody waits for, packets for namespaces the client never joined, binary events.
_benign_event = st.builds(
    lambda ack, name, args: "42" + ack + json.dumps([name, *args]),
    st.sampled_from(["", "7"]),
    st.text(min_size=1, max_size=6).filter(lambda name: name not in RESERVED_EVENTS),
    st.lists(_json_values, max_size=3),
)
_benign_binary = st.lists(st.binary(max_size=16), min_size=1, max_size=3).map(
    lambda blobs: [
        f"45{len(blobs)}-"
        + json.dumps(["bin", *({"_placeholder": True, "num": i} for i in range(len(blobs)))]),
        *blobs,
    ]
)
_benign = st.one_of(
    st.sampled_from(["2", "3", "6", "43999[]", '40/other,{"sid":"a"}', '42/other,["x"]', "41/x"]),
    _benign_event,
)
_batches = st.lists(
    st.one_of(_messages.map(lambda m: [m]), _benign.map(lambda m: [m]), _benign_binary),
    min_size=1,
    max_size=5,
).map(lambda groups: [m for group in groups for m in group])


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
    @given(_batches)
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
