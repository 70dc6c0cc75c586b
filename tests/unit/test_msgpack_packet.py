"""socket.io-msgpack-parser codec: wire vectors, round trips and hostile input."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sio_mqtt.errors import SocketIOParseError
from sio_mqtt.socketio import msgpack_packet
from sio_mqtt.socketio.msgpack_packet import Decoder, encode, encode_event
from sio_mqtt.socketio.packet import MAX_ACK_ID, RESERVED_EVENTS, Packet, PacketType

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T = PacketType


def pack(obj: Any) -> bytes:
    data = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def norm(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (list, tuple)):
        return [norm(x) for x in obj]
    if isinstance(obj, dict):
        return {k: norm(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------------------------
# Encoding: the JS parser's map layout {type, data, nsp, id}
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "obj"),
    [
        (Packet(T.CONNECT), {"type": 0, "nsp": "/"}),
        (
            Packet(T.CONNECT, "/admin", {"token": "1"}),
            {"type": 0, "data": {"token": "1"}, "nsp": "/admin"},
        ),
        (Packet(T.DISCONNECT, "/admin"), {"type": 1, "nsp": "/admin"}),
        (Packet(T.EVENT, "/", ["hello", 1]), {"type": 2, "data": ["hello", 1], "nsp": "/"}),
        (
            Packet(T.EVENT, "/admin", ["x", b"\x01\x02"], 456),
            {"type": 2, "data": ["x", b"\x01\x02"], "nsp": "/admin", "id": 456},
        ),
        (
            Packet(T.BINARY_EVENT, "/", ["x", b"\x00"]),
            {"type": 2, "data": ["x", b"\x00"], "nsp": "/"},
        ),
        (Packet(T.ACK, "/", [], 0), {"type": 3, "data": [], "nsp": "/", "id": 0}),
        (Packet(T.BINARY_ACK, "/", [b"z"], 9), {"type": 3, "data": [b"z"], "nsp": "/", "id": 9}),
        (
            Packet(T.CONNECT_ERROR, "/", {"message": "Not authorized"}),
            {"type": 4, "data": {"message": "Not authorized"}, "nsp": "/"},
        ),
    ],
)
def test_encode_vectors(packet: Packet, obj: dict[str, Any]) -> None:
    wire = encode(packet)
    assert wire == [pack(obj)]
    assert len(wire) == 1 and type(wire[0]) is bytes
    # key order matches the JS parser (type, data, nsp, id)
    assert list(msgpack.unpackb(wire[0])) == list(obj)


def test_encode_bytes_stay_inline_as_bin() -> None:
    wire = encode(Packet(T.EVENT, "/", ["b", bytearray(b"ab"), memoryview(b"cd"), (1, 2)]))
    assert wire == [pack({"type": 2, "data": ["b", b"ab", b"cd", [1, 2]], "nsp": "/"})]
    assert b"\xc4\x02ab" in wire[0]  # bin 8, not str


def test_encode_event_matches_encode() -> None:
    assert encode_event("/a", "e", [1, b"x"], 3) == encode(Packet(T.EVENT, "/a", ["e", 1, b"x"], 3))
    assert encode_event("/", "e", ()) == encode(Packet(T.EVENT, "/", ["e"]))


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def test_decode_basic() -> None:
    d = Decoder()
    assert d.feed(pack({"type": 2, "data": ["hello", 1], "nsp": "/"})) == Packet(
        T.EVENT, "/", ["hello", 1]
    )
    assert d.feed(pack({"type": 0, "nsp": "/admin", "data": {"sid": "x"}})) == Packet(
        T.CONNECT, "/admin", {"sid": "x"}
    )
    assert d.feed(pack({"type": 0, "nsp": "/"})) == Packet(T.CONNECT)
    assert d.feed(pack({"type": 1, "nsp": "/admin"})) == Packet(T.DISCONNECT, "/admin")
    assert d.feed(pack({"type": 3, "nsp": "/", "id": 4, "data": [b"\x01"]})) == Packet(
        T.ACK, "/", [b"\x01"], 4
    )
    assert d.feed(pack({"type": 4, "nsp": "/", "data": "nope"})) == Packet(
        T.CONNECT_ERROR, "/", {"message": "nope"}
    )
    assert not d.pending
    d.reset()


def test_decode_maps_binary_types() -> None:
    d = Decoder()
    assert d.feed(pack({"type": 5, "nsp": "/", "data": ["e", b"x"]})) == Packet(
        T.EVENT, "/", ["e", b"x"]
    )
    assert d.feed(pack({"type": 6, "nsp": "/", "id": 1, "data": [b"x"]})) == Packet(
        T.ACK, "/", [b"x"], 1
    )


def test_decode_js_undefined_extension() -> None:
    # notepack.io writes `undefined` as fixext 1, type 0, payload 0.
    body = b"\x83\xa4type\x00\xa4data\xd4\x00\x00\xa3nsp\xa1/"
    assert Decoder().feed(body) == Packet(T.CONNECT)


def test_decode_accepts_bytes_like_and_nil_id() -> None:
    d = Decoder()
    raw = pack({"type": 2, "nsp": "/", "data": ["e"], "id": None})
    assert d.feed(bytearray(raw)) == Packet(T.EVENT, "/", ["e"])  # type: ignore[arg-type]
    assert d.feed(memoryview(raw)) == Packet(T.EVENT, "/", ["e"])  # type: ignore[arg-type]


def test_max_packet_size() -> None:
    raw = pack({"type": 2, "nsp": "/", "data": ["e", "x" * 100]})
    assert Decoder(max_packet_size=len(raw)).feed(raw) is not None
    with pytest.raises(SocketIOParseError):
        Decoder(max_packet_size=len(raw) - 1).feed(raw)


def test_module_api_parity() -> None:
    assert callable(msgpack_packet.encode)
    assert Decoder(max_attachments=1, max_packet_size=None).pending is False


HOSTILE: list[Any] = [
    "",
    '2["a"]',
    b"",
    b"\xc1",  # never-used byte
    b"\x92",  # truncated array
    pack({"type": 2, "nsp": "/", "data": ["a"]})[:-1],  # truncated
    pack({"type": 2, "nsp": "/", "data": ["a"]}) + b"\x00",  # extra data
    pack([2, "/", ["a"]]),
    pack("x"),
    pack(None),
    pack({}),
    pack({"nsp": "/", "data": ["a"]}),
    pack({"type": 9, "nsp": "/", "data": ["a"]}),
    pack({"type": -1, "nsp": "/", "data": ["a"]}),
    pack({"type": "2", "nsp": "/", "data": ["a"]}),
    pack({"type": True, "nsp": "/", "data": ["a"]}),
    pack({"type": 2.0, "nsp": "/", "data": ["a"]}),
    pack({"type": 2, "data": ["a"]}),
    pack({"type": 2, "nsp": None, "data": ["a"]}),
    pack({"type": 2, "nsp": 1, "data": ["a"]}),
    pack({"type": 2, "nsp": "admin", "data": ["a"]}),
    pack({"type": 2, "nsp": "", "data": ["a"]}),
    pack({"type": 2, "nsp": b"/", "data": ["a"]}),
    pack({"type": 2, "nsp": "/", "data": ["a"], "id": "1"}),
    pack({"type": 2, "nsp": "/", "data": ["a"], "id": -1}),
    pack({"type": 2, "nsp": "/", "data": ["a"], "id": 1.0}),
    pack({"type": 2, "nsp": "/", "data": ["a"], "id": True}),
    pack({"type": 2, "nsp": "/", "data": ["a"], "id": MAX_ACK_ID + 1}),
    pack({"type": 2, "nsp": "/", "data": ["a"], "id": 2**64 - 1}),
    pack({"type": 2, "nsp": "/"}),
    pack({"type": 2, "nsp": "/", "data": []}),
    pack({"type": 2, "nsp": "/", "data": {}}),
    pack({"type": 2, "nsp": "/", "data": "a"}),
    pack({"type": 2, "nsp": "/", "data": [1]}),
    pack({"type": 2, "nsp": "/", "data": [None]}),
    pack({"type": 2, "nsp": "/", "data": [b"a"]}),
    pack({"type": 2, "nsp": "/", "data": [{"toString": "x"}]}),
    pack({"type": 5, "nsp": "/", "data": [True, "x"]}),
    *[pack({"type": 2, "nsp": "/", "data": [name]}) for name in sorted(RESERVED_EVENTS)],
    pack({"type": 0, "nsp": "/", "data": []}),
    pack({"type": 0, "nsp": "/", "data": "x"}),
    pack({"type": 0, "nsp": "/", "data": {}, "id": 1}),
    pack({"type": 1, "nsp": "/admin", "data": {}}),
    pack({"type": 3, "nsp": "/", "data": []}),
    pack({"type": 3, "nsp": "/", "data": {}, "id": 1}),
    pack({"type": 3, "nsp": "/", "id": 1}),
    pack({"type": 6, "nsp": "/", "data": [b"x"]}),
    pack({"type": 4, "nsp": "/", "data": 5}),
    pack({"type": 4, "nsp": "/", "data": []}),
    pack({"type": 4, "nsp": "/"}),
    b"\x83\xa4type\x02\xa4data\x91\xa2\xff\xfe\xa3nsp\xa1/",  # invalid UTF-8 str
    b"\x83\xa4type\x02\xa4data\x91\xd4\x05\x00\xa3nsp\xa1/",  # unknown extension
    b"\x81\x01\x02",  # int map key
    b"\x91" * 100_000,  # deep nesting
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 G items
    b"\xdf\xff\xff\xff\xff",  # map32 claiming 4 G entries
    b"\xc6\xff\xff\xff\xff",  # bin32 claiming 4 GB
    12,
]


@pytest.mark.parametrize("message", HOSTILE)
def test_hostile(message: Any) -> None:
    d = Decoder()
    with pytest.raises(SocketIOParseError) as info:
        d.feed(message)
    assert len(str(info.value)) < 120
    assert d.feed(pack({"type": 2, "nsp": "/", "data": ["ok"]})) == Packet(T.EVENT, "/", ["ok"])


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.binary(max_size=16),
)
values = st.recursive(
    leaves,
    lambda c: (
        st.lists(c, max_size=4)
        | st.lists(c, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=8), c, max_size=4)
    ),
    max_leaves=20,
)
namespaces = st.one_of(st.just("/"), st.text(max_size=10).map(lambda s: "/" + s))
event_names = st.text(max_size=10).filter(lambda s: s not in RESERVED_EVENTS)


@SETTINGS
@given(
    namespaces, event_names, st.lists(values, max_size=5), st.none() | st.integers(0, MAX_ACK_ID)
)
def test_event_round_trip(namespace: str, event: str, args: list[Any], ack_id: int | None) -> None:
    wire = encode_event(namespace, event, args, ack_id)
    assert len(wire) == 1
    packet = Decoder().feed(wire[0])
    assert packet == Packet(T.EVENT, namespace, norm([event, *args]), ack_id)


@SETTINGS
@given(namespaces, st.lists(values, max_size=5), st.integers(0, MAX_ACK_ID))
def test_ack_round_trip(namespace: str, args: list[Any], ack_id: int) -> None:
    (raw,) = encode(Packet(T.BINARY_ACK, namespace, args, ack_id))
    assert Decoder().feed(raw) == Packet(T.ACK, namespace, norm(args), ack_id)


@SETTINGS
@given(
    namespaces,
    st.one_of(
        st.tuples(st.just(T.CONNECT), st.none() | st.dictionaries(st.text(), values, max_size=3)),
        st.tuples(st.just(T.DISCONNECT), st.none()),
        st.tuples(st.just(T.CONNECT_ERROR), st.dictionaries(st.text(), values, max_size=3)),
    ),
)
def test_control_round_trip(namespace: str, kind_data: tuple[PacketType, Any]) -> None:
    kind, data = kind_data
    (raw,) = encode(Packet(kind, namespace, data))
    assert Decoder().feed(raw) == Packet(kind, namespace, norm(data))


def _check(message: Any) -> None:
    decoder = Decoder()
    try:
        packet = decoder.feed(message)
    except SocketIOParseError:
        pass
    else:
        assert isinstance(packet, Packet)
        assert packet.type in (T.CONNECT, T.DISCONNECT, T.EVENT, T.ACK, T.CONNECT_ERROR)
        assert packet.namespace.startswith("/")
        assert packet.id is None or 0 <= packet.id <= MAX_ACK_ID
    assert decoder.feed(pack({"type": 2, "nsp": "/", "data": ["ok"]})) is not None


@SETTINGS
@given(st.one_of(st.binary(max_size=64), st.text(max_size=8)))
def test_arbitrary_bytes_never_crash(message: bytes | str) -> None:
    _check(message)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(st.integers(-2, 8), values),
            "nsp": st.one_of(st.sampled_from(["/", "/a", "a", ""]), values),
            "data": values,
            "id": st.one_of(st.integers(-2, 2**64 - 1), values),
        },
    )
)
def test_arbitrary_maps_never_crash(obj: dict[str, Any]) -> None:
    _check(pack(obj))


@SETTINGS
@given(event_names, st.lists(values, max_size=3), st.data())
def test_mutated_packets_never_crash(event: str, args: list[Any], data: st.DataObject) -> None:
    (raw,) = encode_event("/", event, args)
    pos = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = raw[:pos] + bytes([byte]) + raw[pos + 1 :]
    _check(mutated)
    _check(raw[:pos])
