"""``FastClient`` (sio_mqtt/gateway/paho_fast.py) against stock paho on fake sockets: the same byte
streams, split at every position, must give the same callbacks and the same bytes written."""

from __future__ import annotations

import itertools
import socket
import struct
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion, _ConnectionState
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from servers.mqtt_wire import publish_packet, varint

from sio_mqtt.gateway import paho_fast
from sio_mqtt.gateway.paho_fast import FAST_OK, FAST_PROBLEMS, FastClient, _decode_publish

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


def test_installed_paho_is_supported() -> None:
    assert FAST_OK, FAST_PROBLEMS


# -- fakes and packet builders ------------------------------------------------------------------
class FakeSock:
    """A non-blocking socket: ``arrive()`` makes bytes readable; ``send`` accepts up to
    ``budget`` bytes (None: all), else raises BlockingIOError."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.sent = bytearray()
        self.budget: int | None = None
        self.closed = False
        self.eof = False
        self.recv_calls = 0

    def arrive(self, data: bytes) -> None:
        self.inbox += data

    def recv(self, n: int) -> bytes:
        self.recv_calls += 1
        if not self.inbox:
            if self.eof:
                return b""
            raise BlockingIOError
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data

    def send(self, buf: bytes | bytearray) -> int:
        n = len(buf) if self.budget is None else min(len(buf), self.budget)
        if n == 0 and len(buf):
            raise BlockingIOError
        if self.budget is not None:
            self.budget -= n
        self.sent += buf[:n]
        return n

    def close(self) -> None:
        self.closed = True

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass


def pubrel(mid: int) -> bytes:
    return b"\x62\x02" + struct.pack("!H", mid)


def v5_props(response_topic: str | None, corr: bytes | None, user: list[tuple[str, str]]) -> bytes:
    p = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        p.ResponseTopic = response_topic
    if corr is not None:
        p.CorrelationData = corr
    if user:
        p.UserProperty = user
    return bytes(p.pack())  # type: ignore[no-untyped-call]


class Harness:
    """A connected client (stock or fast) on a FakeSock, recording everything it reports."""

    def __init__(self, cls: type[mqtt.Client], v5: bool, manual_ack: bool = False) -> None:
        self.client = cls(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="t",
            protocol=V5 if v5 else V311,
            manual_ack=manual_ack,
        )
        self.sock = FakeSock()
        self.events: list[tuple[Any, ...]] = []
        c: Any = self.client
        c._sock = self.sock
        c._state = _ConnectionState.MQTT_CS_CONNECTED
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        self.events.append(
            (
                "msg",
                msg._topic,
                msg.payload,
                type(msg.payload),
                msg.qos,
                msg.mid,
                msg.retain,
                msg.dup,
                None if props is None else (type(props), str(props), props.json()),
            )
        )

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.events.append(("disconnect", str(rc)))

    def feed(self, chunk: bytes, max_reads: int = 1) -> None:
        """``chunk`` arrives; select() reports the socket readable: loop_read (paho needs one
        call per packet, FastClient must need only one)."""
        self.sock.arrive(chunk)
        for _ in range(max_reads):
            if self.client.socket() is None:
                return
            self.client.loop_read()
            if not self.sock.inbox:
                return


def run_both(
    stream: bytes, cuts: list[int], v5: bool, manual_ack: bool = False
) -> tuple[Harness, Harness]:
    stock, fast = Harness(mqtt.Client, v5, manual_ack), Harness(FastClient, v5, manual_ack)
    stock.feed(stream, max_reads=len(stream) + 1)
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            fast.feed(stream[a:b])
    return stock, fast


# -- strategies -----------------------------------------------------------------------------
texts = st.text(st.characters(min_codepoint=32, max_codepoint=0xD7FF), max_size=10)
topics = st.binary(min_size=1, max_size=20).filter(lambda t: b"\x00" not in t) | st.sampled_from(
    [b"a/b", "t/\u00e9".encode(), b"\xff\xfe"]
)
payloads = st.binary(max_size=300) | st.just(b"x" * 3000)


@st.composite
def packet_streams(draw: st.DrawFn, v5: bool) -> tuple[bytes, int]:
    n = draw(st.integers(1, 8))
    out = []
    mid = 0
    count = 0
    for _ in range(n):
        kind = draw(st.sampled_from(["pub", "pub", "pub", "ping", "puback", "qos2"]))
        mid = mid % 65535 + 1
        if kind == "pub":
            props = b"\x00"
            if v5 and draw(st.booleans()):
                props = v5_props(
                    draw(st.none() | texts),
                    draw(st.none() | st.binary(max_size=10)),
                    draw(st.lists(st.tuples(texts, texts), max_size=2)),
                )
            out.append(
                publish_packet(
                    draw(topics),
                    draw(payloads),
                    draw(st.integers(0, 1)),
                    mid,
                    v5,
                    props,
                    retain=draw(st.booleans()),
                    dup=draw(st.booleans()),
                )
            )
            count += 1
        elif kind == "qos2":
            out.append(publish_packet(draw(topics), draw(payloads), 2, mid, v5))
            out.append(pubrel(mid))
            count += 1
        elif kind == "ping":
            out.append(b"\xd0\x00")
        else:
            out.append(b"\x40\x02" + struct.pack("!H", mid))  # PUBACK for an unknown mid
    return b"".join(out), count


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the read path ----------------------------------------------------------------------------
@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
@pytest.mark.parametrize("manual_ack", [False, True], ids=["auto", "manual"])
@SETTINGS
@given(data=st.data())
def test_random_splits_same_as_stock(v5: bool, manual_ack: bool, data: st.DataObject) -> None:
    stream, count = data.draw(packet_streams(v5))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    stock, fast = run_both(stream, cuts, v5, manual_ack)
    assert fast.events == stock.events
    assert sum(1 for e in fast.events if e[0] == "msg") == count
    assert bytes(fast.sock.sent) == bytes(stock.sock.sent)
    assert fast.client._fast_buf == b""


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_every_split_position(v5: bool) -> None:
    """Two cuts at every pair of positions of a short stream (qos 0/1/2, ping, props)."""
    stream = b"".join(
        [
            publish_packet(
                b"a/b", b"hello", 1, 7, v5, v5_props("r/t", b"\x01\x02", []) if v5 else b""
            ),
            b"\xd0\x00",
            publish_packet(b"c", b"", 0, 0, v5),
            publish_packet(b"q2", b"two", 2, 9, v5),
            pubrel(9),
            publish_packet(b"big", b"z" * 200, 1, 10, v5),  # 2-byte remaining length
        ]
    )
    expected = None
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1, 3):
            stock, fast = run_both(stream, [i, j], v5)
            if expected is None:
                expected = stock.events
                assert len(expected) == 4
            assert fast.events == expected, (i, j)
            assert bytes(fast.sock.sent) == bytes(stock.sock.sent), (i, j)


def test_byte_by_byte_and_one_recv_per_read() -> None:
    stream = b"".join(publish_packet(b"t", b"%d" % k, 1, k + 1, False) for k in range(50))
    stock, fast = run_both(stream, list(range(len(stream))), False)
    assert fast.events == stock.events and len(stock.events) == 50
    # everything at once: one loop_read, one recv (+ none wasted), all 50 messages
    h = Harness(FastClient, False)
    h.feed(stream)
    assert len(h.events) == 50
    assert h.sock.recv_calls == 1
    assert h.sock.sent == b"".join(b"\x40\x02" + struct.pack("!H", k + 1) for k in range(50))


def test_large_packet_in_many_chunks() -> None:
    payload = bytes(range(256)) * 8000  # ~2 MB
    stream = publish_packet(b"big", payload, 1, 3, True) + publish_packet(
        b"after", b"x", 0, 0, True
    )
    h = Harness(FastClient, True)
    for k in range(0, len(stream), 70001):
        h.feed(stream[k : k + 70001])
    assert [e[1:3] for e in h.events] == [(b"big", payload), (b"after", b"x")]
    assert h.events[0][3] is bytes


@pytest.mark.parametrize(
    "bad",
    [
        b"\x30\x80\x80\x80\x80\x01",  # 5 length bytes
        b"\x00\x00",  # command 0
        b"\x30\x01\x00",  # publish too short
        b"\x32\x04\x00\x05ab",  # topic longer than the packet
        b"\x32\x03\x00\x01a",  # qos 1 without a packet id
        b"\x36\x05\x00\x01a\x00\x01",  # qos 3
        b"\x30\x02\x00\x00",  # empty topic (v3)
    ],
)
@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_malformed_same_as_stock(bad: bytes, v5: bool) -> None:
    good = publish_packet(b"ok", b"1", 1, 1, v5)
    stream = good + bad + good
    for cuts in ([], [len(good)], [len(good) + 1], list(range(len(stream)))):
        stock, fast = run_both(stream, cuts, v5)
        assert fast.events == stock.events, cuts
        assert ("disconnect", "Protocol error") in fast.events
        assert fast.client.socket() is None
        assert bytes(fast.sock.sent) == bytes(stock.sock.sent)


@SETTINGS
@given(
    header=st.integers(0x30, 0x3F),
    body=st.binary(max_size=40),
    v5=st.booleans(),
)
def test_decode_publish_same_as_paho(header: int, body: bytes, v5: bool) -> None:
    proto = V5 if v5 else V311
    try:
        want: Any = _packet.decode_publish(header, bytearray(body), proto)
    except MalformedPacket:
        want = MalformedPacket
    try:
        topic, mid, props, payload = _decode_publish(header, body, 0, len(body), v5)
        got: Any = (topic, mid, None if props is None else props.json(), payload)
    except MalformedPacket:
        got = MalformedPacket
    if want is MalformedPacket:
        assert got is MalformedPacket
    else:
        wp = None if want.properties is None else want.properties.json()
        assert got == (want.topic, want.mid, wp, want.payload)


# PUBLISH properties: well-formed ones (the fast decoder) and broken ones (paho's decoder decides)
def _prop_utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


@st.composite
def publish_property_lists(draw: st.DrawFn) -> bytes:
    """Raw PUBLISH properties: well formed (two thirds), else possibly duplicated, out of range,
    cut short, with a wrong length, a forbidden character or identifier."""
    valid = draw(st.integers(0, 2)) > 0
    fine = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"))
    strings = st.text(max_size=8) | st.sampled_from(
        ["a\x00b", "\ufeff", "\u00e9t\u00e9", "x" * 200]
    )
    if valid:
        strings = fine | st.just("x" * 200)
    idents = [1, 2, 3, 8, 9, 11, 35, 38, 38, 8, 9] + ([] if valid else [17, 0, 200])
    parts = []
    seen: set[int] = set()
    for _ in range(draw(st.integers(0, 6))):
        ident = draw(st.sampled_from(idents))
        if valid and ident not in (11, 38):
            if ident in seen:
                continue
            seen.add(ident)
        if ident in (3, 8):
            value = _prop_utf8(draw(strings))
        elif ident == 9:
            blob = draw(st.binary(max_size=12))
            value = struct.pack("!H", len(blob)) + blob
        elif ident == 38:
            value = _prop_utf8(draw(strings)) + _prop_utf8(draw(strings))
        elif ident == 1:
            value = bytes([draw(st.sampled_from([0, 1] if valid else [0, 1, 2]))])
        elif ident == 2:
            value = struct.pack("!L", draw(st.integers(0, 2**32 - 1)))
        elif ident == 35:
            value = struct.pack("!H", draw(st.sampled_from([1, 65535] if valid else [0, 1])))
        elif ident == 11:
            ids = [1, 127, 128, 16384, 268435455] + ([] if valid else [0])
            value = varint(draw(st.sampled_from(ids)))
        else:
            value = draw(st.binary(max_size=4))
        if not valid and draw(st.integers(0, 4)) == 0:  # cut short / garbled
            value = value[: draw(st.integers(0, len(value)))]
        parts.append(bytes([ident]) + value)
    body = b"".join(parts)
    if valid:
        return varint(len(body)) + body
    length = len(body) + draw(st.sampled_from([0, 0, -1, 1, 3]))
    head = varint(max(length, 0))
    if draw(st.integers(0, 9)) == 0:
        head = b"\x80\x80\x80\x80\x01"  # a 5-byte length
    return head + body


@SETTINGS
@given(props=publish_property_lists(), payload=st.binary(max_size=6), qos=st.integers(0, 1))
def test_publish_properties_same_as_paho(props: bytes, payload: bytes, qos: int) -> None:
    header = 0x30 | (qos << 1)
    body = b"\x00\x03a/b" + (b"\x00\x07" if qos else b"") + props + payload
    try:
        want: Any = _packet.decode_publish(header, bytearray(body), V5)
    except MalformedPacket:
        want = MalformedPacket
    except _packet.DECODE_ERRORS:  # paho's decoder lets these out; the client maps them
        want = MalformedPacket
    try:
        topic, mid, got_props, got_payload = _decode_publish(header, body, 0, len(body), True)
    except MalformedPacket:
        assert want is MalformedPacket
        return
    assert want is not MalformedPacket
    assert (topic, mid, got_payload) == (want.topic, want.mid, want.payload)
    assert isinstance(got_props, Properties)
    assert vars(got_props) == vars(want.properties)
    assert str(got_props) == str(want.properties)


def test_common_publish_properties_skip_paho_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Response Topic, Correlation Data, User Properties & co. never reach ``Properties.unpack``
    (about 50 us per request on a slow machine)."""

    def unpack(self: Any, buffer: Any) -> Any:
        raise AssertionError("paho's decoder used")

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = "reply/\u00e9"
    props.CorrelationData = b"\x00\x01"
    props.UserProperty = [("a", "1"), ("a", "2")]
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 60
    props.ContentType = "application/json"
    props.TopicAlias = 3
    props.SubscriptionIdentifier = 200
    raw = bytes(props.pack())  # type: ignore[no-untyped-call]
    body = b"\x00\x01t\x00\x09" + raw + b"payload"
    monkeypatch.setattr(Properties, "unpack", unpack)
    topic, mid, got, payload = _decode_publish(0x32, body, 0, len(body), True)
    assert (topic, mid, payload) == (b"t", 9, b"payload")
    assert vars(got) == vars(props)


def test_publish_properties_object_is_a_real_properties() -> None:
    h = Harness(FastClient, True)
    got: list[mqtt.MQTTMessage] = []
    h.client.on_message = lambda c, u, m: got.append(m)
    h.feed(
        publish_packet(b"t", b"p", 1, 1, True)
        + publish_packet(b"t", b"p", 1, 2, True, v5_props("r", b"c", []))
    )
    empty, full = got[0].properties, got[1].properties
    assert isinstance(empty, Properties) and empty.isEmpty()  # type: ignore[no-untyped-call]
    assert getattr(empty, "ResponseTopic", None) is None
    assert full.ResponseTopic == "r" and full.CorrelationData == b"c"  # type: ignore[union-attr]
    empty.ResponseTopic = "x"  # does not leak into the shared template
    assert getattr(full, "ContentType", None) is None
    h.feed(publish_packet(b"t", b"p", 1, 3, True))
    assert getattr(got[2].properties, "ResponseTopic", None) is None


def test_filtered_callbacks_and_exceptions() -> None:
    for cls in (mqtt.Client, FastClient):
        h = Harness(cls, False)
        seen: list[str] = []
        h.client.message_callback_add("a/#", lambda c, u, m, seen=seen: seen.append("a:" + m.topic))
        h.client.on_message = lambda c, u, m, seen=seen: seen.append("any:" + m.topic)
        h.feed(
            publish_packet(b"a/1", b"", 0, 0, False) + publish_packet(b"b/1", b"", 0, 0, False), 10
        )
        assert seen == ["a:a/1", "any:b/1"], cls
    h = Harness(FastClient, False)

    def boom(c: Any, u: Any, m: Any) -> None:
        raise ValueError("boom")

    h.client.on_message = boom
    with pytest.raises(ValueError):
        h.feed(publish_packet(b"x", b"", 1, 1, False) + publish_packet(b"y", b"", 1, 2, False))
    # the raising message is consumed (no ack: paho acks after on_message), the next one waits
    # in the buffer and is handled by the next loop iteration without waiting for select()
    h.client.on_message = h._on_message
    h.client.suppress_exceptions = True
    c: Any = h.client
    c._sockpairR, c._sockpairW = socket.socketpair()
    try:
        select_called = []
        orig = paho_fast._mc.select.select

        def no_wait(r: Any, w: Any, x: Any, timeout: float) -> Any:
            select_called.append(timeout)
            return [], [], []

        paho_fast._mc.select.select = no_wait
        try:
            h.client._loop(5.0)
        finally:
            paho_fast._mc.select.select = orig
    finally:
        c._sockpairR.close()
        c._sockpairW.close()
        c._sockpairR = c._sockpairW = None
    assert [e[1] for e in h.events] == [b"y"]
    assert bytes(h.sock.sent) == b"\x40\x02\x00\x02"


def test_eof_and_socket_errors_disconnect() -> None:
    h = Harness(FastClient, False)
    h.sock.eof = True
    assert h.client.loop_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST
    assert h.events == [("disconnect", "Unspecified error")]
    assert h.client.socket() is None and h.sock.closed

    h = Harness(FastClient, False)

    def reset(n: int) -> bytes:
        raise ConnectionResetError("reset")

    h.sock.recv = reset  # type: ignore[method-assign]
    assert h.client.loop_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST
    assert h.client.socket() is None


def test_buffer_dropped_with_its_socket() -> None:
    h = Harness(FastClient, False)
    h.feed(publish_packet(b"t", b"abc", 0, 0, False)[:4])  # incomplete
    assert h.client._fast_buf
    c: Any = h.client
    c._sock_close()
    assert h.client._fast_buf == b""
    new = FakeSock()
    c._sock = new
    new.arrive(publish_packet(b"n", b"1", 0, 0, False))
    h.client.loop_read()
    assert [e[1] for e in h.events] == [b"n"]


def test_stock_reader_sees_the_buffer_first() -> None:
    """If paho's byte-wise reader ever runs, it continues where the buffer is."""
    h = Harness(FastClient, False)
    pkt = publish_packet(b"t", b"abc", 0, 0, False)
    h.feed(pkt[:5])
    h.sock.arrive(pkt[5:])
    c: Any = h.client
    assert c._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [e[1:3] for e in h.events] == [(b"t", b"abc")]


# -- the write path ---------------------------------------------------------------------------
@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=30),
    qos0=st.lists(st.booleans(), min_size=30, max_size=30),
    budgets=st.lists(st.integers(0, 5000), min_size=1, max_size=20),
)
def test_partial_writes_same_bytes(sizes: list[int], qos0: list[bool], budgets: list[int]) -> None:
    """Queued publishes (QoS 0 and 1) and acks written through sends that accept any number of
    bytes: the same byte stream and the same on_publish calls as stock paho."""
    results = []
    for cls in (mqtt.Client, FastClient):
        h = Harness(cls, False)
        h.sock.budget = 0
        published: list[int] = []
        h.client.on_publish = lambda c, u, mid, rc, p, out=published: out.append(mid)
        c: Any = h.client
        c._thread = object()  # as under loop_start: queueing does not write
        for k, size in enumerate(sizes):
            h.client.publish(f"t/{k}", b"p" * size, qos=0 if qos0[k] else 1)
            c._send_puback(k + 1)
        for budget in [*budgets, None]:
            h.sock.budget = budget
            h.client.loop_write()
        assert not c._out_packet
        results.append((bytes(h.sock.sent), published))
    assert results[0] == results[1]


def record_sends(h: Harness) -> list[bytes]:
    """The bytes of each ``send`` call on the harness's socket, from now on."""
    sends: list[bytes] = []
    orig = h.sock.send

    def send(buf: bytes | bytearray) -> int:
        sends.append(bytes(buf))
        return orig(buf)

    h.sock.send = send  # type: ignore[method-assign]
    return sends


def test_acks_in_one_send() -> None:
    h = Harness(FastClient, False)
    sends = record_sends(h)
    c: Any = h.client
    c._thread = object()
    for mid in range(1, 101):
        h.client.ack(mid, 1)  # manual_ack is off: ack() does nothing
    c._manual_ack = True
    for mid in range(1, 101):
        h.client.ack(mid, 1)
    h.client.loop_write()
    assert len(sends) == 1 and len(sends[0]) == 400


# -- writing_now: the calling thread writes -------------------------------------------------------
class NowHarness:
    """A FastClient as under loop_start (``_thread``, the network thread, is another thread:
    queueing alone never writes) on one end of a real socketpair, with its wake-up socketpair;
    ``peer`` reads what it wrote."""

    def __init__(self, v5: bool = False) -> None:
        self.client = FastClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="t",
            protocol=V5 if v5 else V311,
            manual_ack=True,
        )
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.peer.settimeout(5)
        c: Any = self.client
        c._sock = self.sock
        c._state = _ConnectionState.MQTT_CS_CONNECTED
        c._thread = threading.Thread(target=lambda: None)  # never started
        c._sockpairR, c._sockpairW = socket.socketpair()
        self.c = c

    def wakeups(self) -> int:
        return _pending(self.c._sockpairR)

    def written(self) -> bytes:
        self.peer.setblocking(False)
        out = bytearray()
        try:
            while True:
                out += self.peer.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        finally:
            self.peer.settimeout(5)

    def close(self) -> None:
        for s in (self.sock, self.peer, self.c._sockpairR, self.c._sockpairW):
            s.close()
        self.c._sock = self.c._sockpairR = self.c._sockpairW = None


def stock_bytes(actions: list[tuple[str, int]]) -> bytes:
    """What stock paho writes for ``actions`` (("pub", qos) / ("ack", mid)) once flushed."""
    h = Harness(mqtt.Client, False, manual_ack=True)
    c: Any = h.client
    c._thread = object()
    for k, (kind, arg) in enumerate(actions):
        if kind == "pub":
            h.client.publish(f"t/{k}", b"p%d" % k, qos=arg)
        else:
            h.client.ack(arg, 1)
    h.client.loop_write()
    return bytes(h.sock.sent)


def test_writing_now_writes_at_once() -> None:
    h = NowHarness()
    try:
        before = h.c._last_msg_out
        with h.client.writing_now():
            info = h.client.publish("t/0", b"p0", qos=1)
            h.client.ack(7, 1)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert not h.c._out_packet and h.wakeups() == 0  # no work left for the network thread
        assert h.written() == stock_bytes([("pub", 1), ("ack", 7)])
        assert h.c._last_msg_out >= before
        # paho's bookkeeping as if its thread had written it: in flight, waiting for PUBACK
        assert h.c._inflight_messages == 1
        assert h.c._out_messages[info.mid].state == mqtt.mqtt_ms_wait_for_puback
        # outside the block: queued for the network thread, as before
        h.client.ack(8, 1)
        assert len(h.c._out_packet) == 1 and h.wakeups() == 1 and h.written() == b""
    finally:
        h.close()


def test_writing_now_keeps_order_and_side_effects() -> None:
    """Behind queued packets, for a QoS 0 PUBLISH (paho calls on_publish once it is written),
    while another thread writes, on the network thread itself, and over TLS/websockets: queued
    as usual; the bytes are those of stock paho, in order."""
    h = NowHarness()
    published: list[int] = []
    h.client.on_publish = lambda c, u, mid, rc, p: published.append(mid)
    try:
        h.client.ack(1, 1)  # queued
        with h.client.writing_now():
            h.client.ack(2, 1)  # behind it: queued too
            h.client.publish("t/2", b"p2", qos=0)  # on_publish after the write: queued
        assert len(h.c._out_packet) == 3 and published == []
        h.client.loop_write()
        assert len(published) == 1
        lock = h.c._fast_write_lock
        holder = threading.Thread(target=lock.acquire)
        holder.start()
        holder.join()
        try:
            with h.client.writing_now():
                h.client.ack(4, 1)  # the lock is held by another thread: queued
        finally:
            h.c._fast_write_lock = threading.RLock()  # (the holder thread is gone)
        assert len(h.c._out_packet) == 1
        h.client.loop_write()
        h.client.ack(5, 1)
        h.client.loop_write()
        for attr, value in (("_ssl", True), ("_transport", "websockets")):
            setattr(h.c, attr, value)
            with h.client.writing_now():
                h.client.ack(6, 1)
            setattr(h.c, attr, "tcp" if attr == "_transport" else False)
            assert len(h.c._out_packet) == 1, attr
            h.client.loop_write()
        want = stock_bytes(
            [("ack", 1), ("ack", 2), ("pub", 0), ("ack", 4), ("ack", 5), ("ack", 6), ("ack", 6)]
        )
        # the QoS 0 publish is the third action in both, so its topic and payload match
        assert h.written() == want
    finally:
        h.close()


def test_writing_now_on_the_network_thread() -> None:
    """From the network thread itself (on_message, on_publish): written at once when nothing
    is queued, else behind the queue -- even inside its own write (an on_publish callback for a
    QoS 0 PUBLISH): the stream is stock paho's."""
    for queued_behind in (False, True):
        results = []
        for cls in (mqtt.Client, FastClient):
            h = Harness(cls, False, manual_ack=True)
            c: Any = h.client
            c._thread = threading.current_thread()  # this test is the network thread
            c._fast_loop_ident = threading.get_ident()

            def on_publish(client: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
                if isinstance(client, FastClient):
                    with client.writing_now():
                        client.ack(6, 1)
                else:
                    client.ack(6, 1)

            h.client.on_publish = on_publish
            h.client.publish("t/0", b"p0", qos=0)
            if queued_behind:
                h.client.ack(7, 1)
            h.client.loop_write()
            assert not c._out_packet or cls is mqtt.Client
            h.client.loop_write()
            results.append(bytes(h.sock.sent))
            if cls is FastClient:
                with h.client.writing_now():
                    h.client.ack(8, 1)  # nothing queued: written at once
                assert not c._out_packet
                assert bytes(h.sock.sent).endswith(b"\x40\x02\x00\x08")
        assert results[0] == results[1], queued_behind


def test_writing_now_without_loop_start_or_with_a_broken_socket() -> None:
    h = Harness(FastClient, False, manual_ack=True)
    c: Any = h.client
    sends = record_sends(h)
    # no loop_start: paho's own rule (the queueing thread writes with loop_write()) applies
    assert c._thread is None
    with h.client.writing_now():
        h.client.ack(1, 1)
    assert sends == [b"\x40\x02\x00\x01"] and not c._out_packet
    assert not c._fast_write_lock._is_owned()

    c._thread = object()

    def broken(buf: bytes | bytearray) -> int:
        raise BrokenPipeError("gone")

    h.sock.send = broken  # type: ignore[method-assign]
    with h.client.writing_now():
        h.client.ack(2, 1)  # queued: the network thread finds the error and reconnects
    assert [p["mid"] for p in c._out_packet] == [2]
    c._out_packet.clear()

    def closed_meanwhile(buf: bytes | bytearray) -> int:
        c._sock = None  # as paho's _sock_close() on the network thread
        raise OSError(9, "Bad file descriptor")

    h.sock.send = closed_meanwhile  # type: ignore[method-assign]
    with h.client.writing_now():
        info = h.client.publish("t", b"p", qos=1)
    # dropped, not queued for the next connection; the message waits in paho's store, which
    # re-sends it after reconnecting
    assert not c._out_packet
    assert info.mid in c._out_messages


def test_writing_now_partial_and_blocked_sends() -> None:
    """A send that takes part of the packet: the rest is queued first and the loop is woken; a
    send that takes nothing: queued whole. The stream is stock paho's either way."""
    for budget, queued in ((3, 2), (0, 2)):
        h = Harness(FastClient, False, manual_ack=True)
        c: Any = h.client
        c._thread = object()
        c._sockpairR, c._sockpairW = socket.socketpair()
        try:
            h.sock.budget = budget
            with h.client.writing_now():
                h.client.publish("t/0", b"p0", qos=1)
                h.client.ack(9, 1)  # behind the rest: queued
            assert len(c._out_packet) == queued and _pending(c._sockpairR) == 1
            assert c._out_packet[0]["pos"] == budget
            h.sock.budget = None
            h.client.loop_write()
            assert not c._out_packet
            assert bytes(h.sock.sent) == stock_bytes([("pub", 1), ("ack", 9)]), budget
        finally:
            c._sockpairR.close()
            c._sockpairW.close()
            c._sockpairR = c._sockpairW = None


def test_writing_now_partial_stream_same_as_stock() -> None:
    h = Harness(FastClient, False, manual_ack=True)
    c: Any = h.client
    c._thread = object()
    actions = [("pub", 1), ("ack", 3), ("pub", 0), ("ack", 4), ("pub", 1), ("ack", 5)]
    for budget in (None, 0, 1, 5, 11):
        h.sock.sent.clear()
        c._out_packet.clear()
        c._out_messages.clear()
        c._inflight_messages = 0
        c._last_mid = 0
        h.sock.budget = budget
        with h.client.writing_now():
            for k, (kind, arg) in enumerate(actions):
                if kind == "pub":
                    h.client.publish(f"t/{k}", b"p%d" % k, qos=arg)
                else:
                    h.client.ack(arg, 1)
        h.sock.budget = None
        h.client.loop_write()
        assert bytes(h.sock.sent) == stock_bytes(actions), budget


def test_writing_now_under_threads_keeps_packets_whole_and_ordered() -> None:
    """Threads writing themselves, threads queueing, and the network thread writing the queue,
    all at once: every packet arrives whole, each thread's in its order."""
    h = NowHarness()
    c = h.c
    c._keepalive = 0
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            h.client._loop(5.0)

    t = threading.Thread(target=loop, daemon=True)
    c._thread = t  # the network thread: it takes the write lock
    t.start()
    per = 400
    n_threads = 4

    def worker(base: int, now: bool) -> None:
        for k in range(per):
            if now:
                with h.client.writing_now():
                    h.client.ack(base + k, 1)
            else:
                h.client.ack(base + k, 1)
            if k % 40 == 0:
                threading.Event().wait(0.001)

    received = bytearray()
    try:
        workers = [
            threading.Thread(target=worker, args=(1 + i * per, i % 2 == 0))
            for i in range(n_threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        h.peer.settimeout(2.0)  # << the 5 s select timeout: no lost wake-up
        while len(received) < n_threads * per * 4:
            received += h.peer.recv(65536)
    finally:
        stop.set()
        c._sockpairW.send(b"x")
        t.join(10)
        h.close()
    assert len(received) == n_threads * per * 4
    mids = [struct.unpack("!H", received[i + 2 : i + 4])[0] for i in range(0, len(received), 4)]
    assert all(received[i : i + 2] == b"\x40\x02" for i in range(0, len(received), 4))
    assert sorted(mids) == list(range(1, n_threads * per + 1))
    for i in range(n_threads):
        mine = [m for m in mids if 1 + i * per <= m <= (i + 1) * per]
        assert mine == sorted(mine)


# -- wake-ups ---------------------------------------------------------------------------------
def _pending(sock: socket.socket) -> int:
    sock.setblocking(False)
    try:
        return len(sock.recv(1000))
    except BlockingIOError:
        return 0


def test_wakeup_bytes() -> None:
    stock, fast = Harness(mqtt.Client, False), Harness(FastClient, False)
    for h in (stock, fast):
        c: Any = h.client
        c._thread = object()
        c._sockpairR, c._sockpairW = socket.socketpair()
    try:
        for h in (stock, fast):
            for mid in range(1, 6):
                h.client._send_puback(mid)  # type: ignore[attr-defined]
        assert _pending(stock.client._sockpairR) == 5  # type: ignore[attr-defined]
        assert _pending(fast.client._sockpairR) == 1  # coalesced  # type: ignore[attr-defined]
        # the loop clears the flag when it starts an iteration: the next packet wakes it again
        fc: Any = fast.client
        fc._fast_wake_pending = False
        fc._send_puback(6)
        assert _pending(fc._sockpairR) == 1
        # queued by the thread running the loop: no byte at all
        fc._fast_wake_pending = False
        fc._fast_loop_ident = threading.get_ident()
        fc._send_puback(7)
        assert _pending(fc._sockpairR) == 0
        assert len(fc._out_packet) == 7
    finally:
        for h in (stock, fast):
            c = h.client
            c._sockpairR.close()
            c._sockpairW.close()
            c._sockpairR = c._sockpairW = None


def test_no_lost_wakeup_under_threads() -> None:
    """Many threads queue packets while a loop runs with a long select timeout: every packet is
    written promptly (a lost wake-up would leave one waiting for the 5 s timeout)."""
    a, b = socket.socketpair()
    client = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
    c: Any = client
    c._sock = a
    a.setblocking(False)
    c._state = _ConnectionState.MQTT_CS_CONNECTED
    c._sockpairR, c._sockpairW = socket.socketpair()
    c._thread = threading.current_thread()  # queueing never writes by itself
    c._keepalive = 0
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            client._loop(5.0)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    n_threads, per = 4, 500
    total = n_threads * per * 4
    received = bytearray()

    def acker(base: int) -> None:
        for k in range(per):
            client.ack(base + k, 1)
            if k % 50 == 0:
                threading.Event().wait(0.001)

    try:
        workers = [threading.Thread(target=acker, args=(i * per + 1,)) for i in range(n_threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        b.settimeout(2.0)  # << the 5 s select timeout
        while len(received) < total:
            received += b.recv(65536)
        assert len(received) == total
    finally:
        stop.set()
        c._sockpairW.send(b"x")
        t.join(10)
        c._sockpairR.close()
        c._sockpairW.close()
        c._sockpairR = c._sockpairW = None
        c._sock = None
        a.close()
        b.close()


# -- fall-backs -------------------------------------------------------------------------------
def test_websockets_transport_uses_paho_io() -> None:
    client = FastClient(mqtt.CallbackAPIVersion.VERSION2, transport="websockets")
    assert client._fast and not client._fast_io()


def test_disabled_when_paho_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paho_fast, "FAST_OK", False)
    h = Harness(FastClient, False)
    assert not h.client._fast  # type: ignore[attr-defined]
    stream = publish_packet(b"t", b"1", 1, 1, False) + publish_packet(b"t", b"2", 1, 2, False)
    h.feed(stream)
    assert len(h.events) == 1  # paho's own loop_read: one packet per call
    h.feed(b"")
    assert len(h.events) == 2


def test_check_paho_reports_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert paho_fast._check_paho() == []
    monkeypatch.delattr(mqtt.Client, "_packet_handle")
    assert paho_fast._check_paho() == ["Client._packet_handle is missing"]
    monkeypatch.undo()

    def _packet_queue(self: Any, command: int, packet: bytes) -> None: ...

    monkeypatch.setattr(mqtt.Client, "_packet_queue", _packet_queue)
    assert any("_packet_queue" in p for p in paho_fast._check_paho())


_PUBACKS = [
    b"\x40\x02{mid}",  # success, nothing else (what mosquitto sends)
    b"\x40\x03{mid}\x00",  # success spelled out (MQTT 5)
    b"\x40\x04{mid}\x00\x00",  # ... with an empty property block
    b"\x40\x03{mid}\x10",  # "no matching subscribers": paho's decoder
    b"\x40\x08{mid}\x00\x04\x1f\x00\x01x",  # success with a reason string: paho's decoder
    b"\x40\x02\xff\xff",  # an unknown mid
    b"\x40\x01\x00",  # too short: malformed
]


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
@pytest.mark.parametrize("template", _PUBACKS)
def test_puback_fast_path_same_as_stock(v5: bool, template: bytes) -> None:
    harnesses = Harness(mqtt.Client, v5), Harness(FastClient, v5)
    for h in harnesses:

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, props: Any, h: Any = h) -> None:
            h.events.append(("published", mid, str(rc), int(rc.value), props.json()))

        h.client.on_publish = on_publish
        infos = [h.client.publish("t", b"x", qos=1) for _ in range(2)]
        mid = struct.pack("!H", infos[0].mid)
        h.feed(template.replace(b"{mid}", mid), max_reads=4)
        h.events.append(("state", infos[0].is_published(), infos[1].is_published()))
        h.events.append(("inflight", h.client._inflight_messages))  # type: ignore[attr-defined]
    stock, fast = harnesses
    assert fast.events == stock.events
    if template == _PUBACKS[0] or (v5 and template in _PUBACKS[1:3]):
        assert fast.events[0] == ("published", infos[0].mid, "Success", 0, {})
