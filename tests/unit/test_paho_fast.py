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


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: bytes,
    payload: bytes,
    qos: int,
    mid: int,
    v5: bool,
    props: bytes = b"\x00",
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += props
    body += payload
    return bytes([0x30 | (dup << 3) | (qos << 1) | retain]) + varint(len(body)) + body


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
                publish(
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
            out.append(publish(draw(topics), draw(payloads), 2, mid, v5))
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
            publish(b"a/b", b"hello", 1, 7, v5, v5_props("r/t", b"\x01\x02", []) if v5 else b""),
            b"\xd0\x00",
            publish(b"c", b"", 0, 0, v5),
            publish(b"q2", b"two", 2, 9, v5),
            pubrel(9),
            publish(b"big", b"z" * 200, 1, 10, v5),  # 2-byte remaining length
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
    stream = b"".join(publish(b"t", b"%d" % k, 1, k + 1, False) for k in range(50))
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
    stream = publish(b"big", payload, 1, 3, True) + publish(b"after", b"x", 0, 0, True)
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
    good = publish(b"ok", b"1", 1, 1, v5)
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


def test_publish_properties_object_is_a_real_properties() -> None:
    h = Harness(FastClient, True)
    got: list[mqtt.MQTTMessage] = []
    h.client.on_message = lambda c, u, m: got.append(m)
    h.feed(
        publish(b"t", b"p", 1, 1, True) + publish(b"t", b"p", 1, 2, True, v5_props("r", b"c", []))
    )
    empty, full = got[0].properties, got[1].properties
    assert isinstance(empty, Properties) and empty.isEmpty()  # type: ignore[no-untyped-call]
    assert getattr(empty, "ResponseTopic", None) is None
    assert full.ResponseTopic == "r" and full.CorrelationData == b"c"  # type: ignore[union-attr]
    empty.ResponseTopic = "x"  # does not leak into the shared template
    assert getattr(full, "ContentType", None) is None
    h.feed(publish(b"t", b"p", 1, 3, True))
    assert getattr(got[2].properties, "ResponseTopic", None) is None


def test_filtered_callbacks_and_exceptions() -> None:
    for cls in (mqtt.Client, FastClient):
        h = Harness(cls, False)
        seen: list[str] = []
        h.client.message_callback_add("a/#", lambda c, u, m, seen=seen: seen.append("a:" + m.topic))
        h.client.on_message = lambda c, u, m, seen=seen: seen.append("any:" + m.topic)
        h.feed(publish(b"a/1", b"", 0, 0, False) + publish(b"b/1", b"", 0, 0, False), 10)
        assert seen == ["a:a/1", "any:b/1"], cls
    h = Harness(FastClient, False)

    def boom(c: Any, u: Any, m: Any) -> None:
        raise ValueError("boom")

    h.client.on_message = boom
    with pytest.raises(ValueError):
        h.feed(publish(b"x", b"", 1, 1, False) + publish(b"y", b"", 1, 2, False))
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
    h.feed(publish(b"t", b"abc", 0, 0, False)[:4])  # incomplete
    assert h.client._fast_buf
    c: Any = h.client
    c._sock_close()
    assert h.client._fast_buf == b""
    new = FakeSock()
    c._sock = new
    new.arrive(publish(b"n", b"1", 0, 0, False))
    h.client.loop_read()
    assert [e[1] for e in h.events] == [b"n"]


def test_stock_reader_sees_the_buffer_first() -> None:
    """If paho's byte-wise reader ever runs, it continues where the buffer is."""
    h = Harness(FastClient, False)
    pkt = publish(b"t", b"abc", 0, 0, False)
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


def test_acks_in_one_send() -> None:
    h = Harness(FastClient, False)
    sends: list[bytes] = []
    orig = h.sock.send

    def send(buf: bytes | bytearray) -> int:
        sends.append(bytes(buf))
        return orig(buf)

    h.sock.send = send  # type: ignore[method-assign]
    c: Any = h.client
    c._thread = object()
    for mid in range(1, 101):
        h.client.ack(mid, 1)  # manual_ack is off: ack() does nothing
    c._manual_ack = True
    for mid in range(1, 101):
        h.client.ack(mid, 1)
    h.client.loop_write()
    assert len(sends) == 1 and len(sends[0]) == 400


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
    stream = publish(b"t", b"1", 1, 1, False) + publish(b"t", b"2", 1, 2, False)
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
