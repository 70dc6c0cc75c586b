"""Engine.IO v4 codec: spec vectors, round-trip properties and hostile input."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sio_mqtt.engineio.packet import (
    DEFAULT_MAX_PAYLOAD,
    RECORD_SEPARATOR,
    Handshake,
    Packet,
    PacketType,
    batch_payloads,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    message_size,
    parse_handshake,
)
from sio_mqtt.errors import EngineIOParseError, ParseError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

text_types = st.sampled_from(list(PacketType))
polling_text = st.text().filter(lambda s: "\x1e" not in s)
text_packets = st.builds(Packet, text_types, st.text())
polling_text_packets = st.builds(Packet, text_types, polling_text)
binary_packets = st.builds(Packet, st.just(PacketType.MESSAGE), st.binary())
ws_packets = st.one_of(text_packets, binary_packets)
polling_packets = st.one_of(polling_text_packets, binary_packets)


# --------------------------------------------------------------------------------------------
# PacketType / Packet
# --------------------------------------------------------------------------------------------


def test_packet_type_values() -> None:
    assert [(t.name, int(t)) for t in PacketType] == [
        ("OPEN", 0),
        ("CLOSE", 1),
        ("PING", 2),
        ("PONG", 3),
        ("MESSAGE", 4),
        ("UPGRADE", 5),
        ("NOOP", 6),
    ]


def test_packet_defaults() -> None:
    assert Packet(PacketType.PING) == (PacketType.PING, "")
    assert Packet(PacketType.MESSAGE, b"x").data == b"x"


# --------------------------------------------------------------------------------------------
# WebSocket frames
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "frame"),
    [
        (Packet(PacketType.MESSAGE, "hello"), "4hello"),
        (Packet(PacketType.MESSAGE, "€"), "4€"),
        (Packet(PacketType.PING, "probe"), "2probe"),
        (Packet(PacketType.PONG, "probe"), "3probe"),
        (Packet(PacketType.PING), "2"),
        (Packet(PacketType.PONG), "3"),
        (Packet(PacketType.CLOSE), "1"),
        (Packet(PacketType.UPGRADE), "5"),
        (Packet(PacketType.NOOP), "6"),
        (
            Packet(PacketType.OPEN, '{"sid":"abc","upgrades":[],"pingInterval":1,"pingTimeout":1}'),
            '0{"sid":"abc","upgrades":[],"pingInterval":1,"pingTimeout":1}',
        ),
        (Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04"),
        (Packet(PacketType.MESSAGE, b""), b""),
    ],
)
def test_frame_vectors(packet: Packet, frame: str | bytes) -> None:
    assert encode_packet(packet) == frame
    assert decode_packet(frame) == packet


def test_encode_packet_binary_like() -> None:
    assert encode_packet(Packet(PacketType.MESSAGE, bytearray(b"ab"))) == b"ab"  # type: ignore[arg-type]
    assert encode_packet(Packet(PacketType.MESSAGE, memoryview(b"ab"))) == b"ab"  # type: ignore[arg-type]


def test_encode_packet_rejects_bytes_on_non_message() -> None:
    with pytest.raises(ValueError):
        encode_packet(Packet(PacketType.PING, b"x"))
    with pytest.raises(TypeError):
        encode_packet(Packet(PacketType.PING, 3))  # type: ignore[arg-type]


def test_decode_packet_accepts_bytes_like() -> None:
    assert decode_packet(bytearray(b"\x00")) == Packet(PacketType.MESSAGE, b"\x00")  # type: ignore[arg-type]
    assert type(decode_packet(memoryview(b"ab")).data) is bytes  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame", ["", "7", "9", "a123", "b4hello", "-1", " 4", "\u0664hello", "\x00"]
)
def test_decode_packet_hostile(frame: str) -> None:
    with pytest.raises(EngineIOParseError):
        decode_packet(frame)


def test_decode_packet_non_frame() -> None:
    with pytest.raises(EngineIOParseError):
        decode_packet(42)  # type: ignore[arg-type]


@SETTINGS
@given(ws_packets)
def test_frame_round_trip(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@SETTINGS
@given(st.one_of(st.text(), st.binary()))
def test_decode_packet_never_crashes(frame: str | bytes) -> None:
    try:
        packet = decode_packet(frame)
    except EngineIOParseError:
        return
    assert isinstance(packet.type, PacketType)
    assert encode_packet(packet) == frame


# --------------------------------------------------------------------------------------------
# Polling payloads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packets", "body"),
    [
        ([Packet(PacketType.MESSAGE, "hello")], "4hello"),
        (
            [Packet(PacketType.MESSAGE, "hello"), Packet(PacketType.MESSAGE, "€")],
            "4hello\x1e4€",
        ),
        (
            [Packet(PacketType.MESSAGE, "hello"), Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")],
            "4hello\x1ebAQIDBA==",
        ),
        ([Packet(PacketType.NOOP)], "6"),
        ([Packet(PacketType.PING), Packet(PacketType.CLOSE)], "2\x1e1"),
        ([Packet(PacketType.MESSAGE, b"")], "b"),
    ],
)
def test_payload_vectors(packets: list[Packet], body: str) -> None:
    assert encode_payload(packets) == body
    assert decode_payload(body) == packets
    assert decode_payload(body.encode()) == packets


def test_encode_payload_empty() -> None:
    assert encode_payload([]) == ""


def test_encode_payload_refuses_separator_in_text() -> None:
    with pytest.raises(ValueError):
        encode_payload([Packet(PacketType.MESSAGE, "a\x1e1")])
    with pytest.raises(ValueError):
        batch_payloads([Packet(PacketType.MESSAGE, "a\x1e1")], 100)


def test_encode_payload_rejects_bad_data() -> None:
    with pytest.raises(ValueError):
        encode_payload([Packet(PacketType.OPEN, b"x")])
    with pytest.raises(TypeError):
        encode_payload([Packet(PacketType.MESSAGE, None)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        "",
        b"",
        "\x1e",
        "4a\x1e",
        "\x1e4a",
        "4a\x1e\x1e4b",
        "a123",
        "999",
        "4hello\x1ex",
        "b!!!",
        "bAQIDBA",  # missing padding
        "bAQID BA==",  # whitespace is not base64
        "bAQIDBA==\n",
        "b€€€€",
        b"4\xff\xfe",
        b"\xc3",
        bytearray(b"4\x80"),
    ],
)
def test_decode_payload_hostile(body: str | bytes) -> None:
    with pytest.raises(EngineIOParseError):
        decode_payload(body)


def test_decode_payload_max_payload() -> None:
    body = "4" + "x" * 99
    assert decode_payload(body, max_payload=100) == [Packet(PacketType.MESSAGE, "x" * 99)]
    assert decode_payload(body.encode(), max_payload=100)
    with pytest.raises(EngineIOParseError):
        decode_payload(body + "y", max_payload=100)
    with pytest.raises(EngineIOParseError):
        decode_payload((body + "y").encode(), max_payload=100)
    # The limit is in UTF-8 bytes, also for str bodies: 50 "€" are 150 bytes.
    euro = "4" + "€" * 50
    with pytest.raises(EngineIOParseError):
        decode_payload(euro, max_payload=100)
    assert decode_payload(euro, max_payload=151)


def test_decode_payload_far_above_max_payload_is_cheap() -> None:
    huge = b"4" + b"x" * 10_000_000
    with pytest.raises(EngineIOParseError, match="exceeds"):
        decode_payload(huge, max_payload=1_000_000)


class _Text(str):
    pass


def test_str_subclasses_are_plain_text() -> None:
    assert decode_packet(_Text("4hi")) == Packet(PacketType.MESSAGE, "hi")
    assert decode_payload(_Text("4hi\x1e2")) == [
        Packet(PacketType.MESSAGE, "hi"),
        Packet(PacketType.PING, ""),
    ]


def test_decode_payload_rejects_non_body() -> None:
    with pytest.raises(EngineIOParseError):
        decode_payload(None)  # type: ignore[arg-type]


def test_decode_payload_error_does_not_echo_body() -> None:
    secret = "z" * 500
    with pytest.raises(EngineIOParseError) as info:
        decode_payload(secret)
    assert len(str(info.value)) < 100


@SETTINGS
@given(st.lists(polling_packets, min_size=1, max_size=8))
def test_payload_round_trip(packets: list[Packet]) -> None:
    body = encode_payload(packets)
    assert decode_payload(body) == packets
    assert decode_payload(body.encode("utf-8")) == packets


@SETTINGS
@given(st.one_of(st.text(), st.binary()), st.none() | st.integers(0, 200))
def test_decode_payload_never_crashes(body: str | bytes, max_payload: int | None) -> None:
    try:
        packets = decode_payload(body, max_payload)
    except EngineIOParseError:
        return
    assert packets
    for packet in packets:
        assert isinstance(packet.type, PacketType)
        assert isinstance(packet.data, (str, bytes))


@SETTINGS
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["4", "b", "\x1e", "2", "6", "x", "AQID", "==", "€", "", "9"]),
            st.text(max_size=4),
        ),
        max_size=12,
    )
)
def test_decode_payload_structured_fuzz(parts: list[str]) -> None:
    body = "".join(parts)
    with contextlib.suppress(EngineIOParseError):
        decode_payload(body)


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


def _utf8(body: str) -> int:
    return len(body.encode("utf-8"))


def test_batch_payloads_vectors() -> None:
    p = Packet(PacketType.MESSAGE, "abcd")  # "4abcd": 5 bytes
    assert batch_payloads([], 10) == []
    assert batch_payloads([p], 10) == ["4abcd"]
    assert batch_payloads([p, p], 11) == ["4abcd\x1e4abcd"]
    assert batch_payloads([p, p], 10) == ["4abcd", "4abcd"]
    assert batch_payloads([p, p, p], 11) == ["4abcd\x1e4abcd", "4abcd"]


def test_batch_payloads_oversize_packet_goes_alone() -> None:
    small = Packet(PacketType.MESSAGE, "a")
    big = Packet(PacketType.MESSAGE, "b" * 50)
    assert batch_payloads([small, big, small], 10) == ["4a", "4" + "b" * 50, "4a"]


def test_batch_payloads_counts_utf8_and_base64() -> None:
    euro = Packet(PacketType.MESSAGE, "€€€")  # 1 + 9 bytes
    assert batch_payloads([euro, euro], 20) == ["4€€€", "4€€€"]
    assert batch_payloads([euro, euro], 21) == ["4€€€\x1e4€€€"]
    binary = Packet(PacketType.MESSAGE, b"\x00" * 3)  # "bAAAA": 5 bytes
    assert batch_payloads([binary, binary], 11) == ["bAAAA\x1ebAAAA"]
    assert batch_payloads([binary, binary], 10) == ["bAAAA", "bAAAA"]


@SETTINGS
@given(st.lists(polling_packets, max_size=15), st.integers(1, 120))
def test_batch_payloads_property(packets: list[Packet], max_payload: int) -> None:
    bodies = batch_payloads(packets, max_payload)
    decoded: list[Packet] = []
    for body in bodies:
        got = decode_payload(body)
        if _utf8(body) > max_payload:
            assert len(got) == 1
        decoded.extend(got)
    assert decoded == packets
    # Greedy: no two neighbouring bodies could have been merged.
    for first, second in itertools.pairwise(bodies):
        assert _utf8(first) + 1 + _utf8(second) > max_payload


# --------------------------------------------------------------------------------------------
# Handshake
# --------------------------------------------------------------------------------------------

SPEC_HANDSHAKE = (
    '{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
    '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)


def test_parse_handshake_spec_example() -> None:
    assert parse_handshake(SPEC_HANDSHAKE) == Handshake(
        sid="lv_VI97HAXpY6yYWAAAC",
        upgrades=("websocket",),
        ping_interval=25.0,
        ping_timeout=20.0,
        max_payload=1_000_000,
    )


def test_parse_handshake_defaults_and_extras() -> None:
    hs = parse_handshake('{"sid":"a","pingInterval":300,"pingTimeout":200,"extra":[1,{}]}')
    assert hs.upgrades == ()
    assert hs.max_payload == DEFAULT_MAX_PAYLOAD
    assert hs.ping_interval == pytest.approx(0.3)
    assert hs.ping_timeout == pytest.approx(0.2)


def test_parse_handshake_drops_unknown_transports() -> None:
    data = (
        '{"sid":"a","upgrades":["webtransport","websocket","x","websocket"],'
        '"pingInterval":1,"pingTimeout":1}'
    )
    assert parse_handshake(data).upgrades == ("websocket",)
    assert parse_handshake(data, known_transports={"x"}).upgrades == ("x",)
    assert parse_handshake(data, known_transports=()).upgrades == ()


def test_handshake_is_frozen() -> None:
    hs = parse_handshake(SPEC_HANDSHAKE)
    with pytest.raises(AttributeError):
        hs.sid = "b"  # type: ignore[misc]


def _hs(**overrides: Any) -> str:
    obj: dict[str, Any] = {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1000000,
    }
    for key, value in overrides.items():
        if value is _MISSING:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


_MISSING = object()


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        "[]",
        "null",
        '"sid"',
        "42",
        '{"sid":"a","pingInterval":NaN,"pingTimeout":1}',
        '{"sid":"a","pingInterval":Infinity,"pingTimeout":1}',
        "[" * 100_000,
        _hs(sid=_MISSING),
        _hs(sid=""),
        _hs(sid=5),
        _hs(sid=None),
        _hs(sid=["a"]),
        _hs(pingInterval=_MISSING),
        _hs(pingTimeout=_MISSING),
        _hs(pingInterval=0),
        _hs(pingInterval=-1),
        _hs(pingInterval=2.5),
        _hs(pingInterval="25000"),
        _hs(pingInterval=True),
        _hs(pingInterval=10**400),
        _hs(pingTimeout=0),
        _hs(pingTimeout=None),
        _hs(maxPayload=0),
        _hs(maxPayload=-5),
        _hs(maxPayload=1.5),
        _hs(maxPayload=None),
        _hs(maxPayload=False),
        _hs(upgrades="websocket"),
        _hs(upgrades=None),
        _hs(upgrades=[1]),
        _hs(upgrades=[["websocket"]]),
        _hs(upgrades={"websocket": 1}),
        '{"sid":"a","pingInterval":1' + "0" * 5000 + ',"pingTimeout":1}',
    ],
)
def test_parse_handshake_hostile(data: str) -> None:
    with pytest.raises(EngineIOParseError) as info:
        parse_handshake(data)
    assert len(str(info.value)) < 120


def test_parse_handshake_non_str() -> None:
    with pytest.raises(EngineIOParseError):
        parse_handshake(b'{"sid":"a"}')  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
handshake_objects = st.fixed_dictionaries(
    {},
    optional={
        "sid": st.one_of(st.text(max_size=20), json_values),
        "upgrades": st.one_of(
            st.lists(st.sampled_from(["websocket", "polling", "webtransport", "x"])), json_values
        ),
        "pingInterval": st.one_of(st.integers(-5, 2**32), json_values),
        "pingTimeout": st.one_of(st.integers(-5, 2**32), json_values),
        "maxPayload": st.one_of(st.integers(-5, 2**64), json_values),
        "extra": json_values,
    },
)


@SETTINGS
@given(handshake_objects)
def test_parse_handshake_never_crashes_on_objects(obj: dict[str, Any]) -> None:
    try:
        hs = parse_handshake(json.dumps(obj))
    except EngineIOParseError:
        return
    assert isinstance(hs.sid, str) and hs.sid
    assert hs.ping_interval > 0 and hs.ping_timeout > 0 and hs.max_payload > 0
    assert set(hs.upgrades) <= {"websocket", "polling"}
    assert hs.ping_interval == obj["pingInterval"] / 1000


@SETTINGS
@given(st.text())
def test_parse_handshake_never_crashes_on_text(data: str) -> None:
    with contextlib.suppress(EngineIOParseError):
        parse_handshake(data)


def test_parse_errors_are_typed() -> None:
    assert issubclass(EngineIOParseError, ParseError)
    assert issubclass(EngineIOParseError, ValueError)


def test_base64_matches_stdlib() -> None:
    raw = bytes(range(256))
    body = encode_payload([Packet(PacketType.MESSAGE, raw)])
    assert body == "b" + base64.b64encode(raw).decode()


@given(st.one_of(st.text().filter(lambda t: RECORD_SEPARATOR not in t), st.binary()))
def test_message_size_is_the_wire_size(message: str | bytes) -> None:
    # polling: the message's record in a POST body; websocket: the frame's payload
    record = encode_payload([Packet(PacketType.MESSAGE, message)])
    assert message_size(message, polling=True) == len(record.encode("utf-8", "surrogatepass"))
    frame = encode_packet(Packet(PacketType.MESSAGE, message))
    wire = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
    assert message_size(message, polling=False) == len(wire)
