"""Socket.IO v5 JSON codec: spec vectors, round-trip properties and hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sio_mqtt.errors import ParseError, SocketIOParseError
from sio_mqtt.socketio.packet import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    encode,
    encode_event,
    has_binary,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T = PacketType


def ph(num: int) -> dict[str, Any]:
    return {"_placeholder": True, "num": num}


def norm(obj: Any) -> Any:
    """What a value looks like after a round trip: tuples are arrays, buffers are bytes."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (list, tuple)):
        return [norm(x) for x in obj]
    if isinstance(obj, dict):
        return {k: norm(v) for k, v in obj.items()}
    return obj


def decode_all(messages: list[str | bytes], decoder: Decoder | None = None) -> Packet:
    decoder = decoder or Decoder()
    *head, last = messages
    for message in head:
        assert decoder.feed(message) is None
        assert decoder.pending
    packet = decoder.feed(last)
    assert packet is not None
    assert not decoder.pending
    return packet


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------


def test_packet_types() -> None:
    assert [int(t) for t in T] == list(range(7))
    assert T.BINARY_ACK.name == "BINARY_ACK"


def test_reserved_events() -> None:
    expected = {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    }
    assert expected == RESERVED_EVENTS


def test_packet_defaults() -> None:
    p = Packet(T.CONNECT)
    assert (p.namespace, p.data, p.id) == ("/", None, None)


# --------------------------------------------------------------------------------------------
# Spec vectors (socket.io-protocol README)
# --------------------------------------------------------------------------------------------

VECTORS: list[tuple[Packet, list[str | bytes]]] = [
    (Packet(T.CONNECT), ["0"]),
    (Packet(T.CONNECT, "/admin"), ["0/admin,"]),
    (Packet(T.CONNECT, "/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
    (Packet(T.CONNECT, "/", {"sid": "oSO0OpakMV_3jnilAAAA"}), ['0{"sid":"oSO0OpakMV_3jnilAAAA"}']),
    (Packet(T.CONNECT, "/admin", {"sid": "oSO0OpakMV"}), ['0/admin,{"sid":"oSO0OpakMV"}']),
    (
        Packet(T.CONNECT_ERROR, "/", {"message": "Not authorized"}),
        ['4{"message":"Not authorized"}'],
    ),
    (
        Packet(T.CONNECT_ERROR, "/admin", {"message": "x", "data": {"a": 1}}),
        ['4/admin,{"message":"x","data":{"a":1}}'],
    ),
    (Packet(T.DISCONNECT, "/admin"), ["1/admin,"]),
    (Packet(T.DISCONNECT), ["1"]),
    (Packet(T.EVENT, "/", ["hello", 1]), ['2["hello",1]']),
    (Packet(T.EVENT, "/", ["foo"]), ['2["foo"]']),
    (Packet(T.EVENT, "/admin", ["bar"]), ['2/admin,["bar"]']),
    (Packet(T.EVENT, "/", ["echo", 1], 0), ['20["echo",1]']),
    (
        Packet(T.EVENT, "/admin", ["project:delete", 123], 456),
        ['2/admin,456["project:delete",123]'],
    ),
    (Packet(T.EVENT, "/", ["unicode", "é€😀"]), ['2["unicode","é€😀"]']),
    (Packet(T.ACK, "/admin", [], 456), ["3/admin,456[]"]),
    (Packet(T.ACK, "/", ["bar"], 13), ['313["bar"]']),
    (
        Packet(T.BINARY_EVENT, "/", ["hello", b"\x01\x02\x03"]),
        ['51-["hello",{"_placeholder":true,"num":0}]', b"\x01\x02\x03"],
    ),
    (
        Packet(T.BINARY_EVENT, "/admin", ["project:delete", b"\x01\x02\x03"], 456),
        ['51-/admin,456["project:delete",{"_placeholder":true,"num":0}]', b"\x01\x02\x03"],
    ),
    (
        Packet(T.BINARY_ACK, "/admin", [b"\x03\x02\x01"], 456),
        ['61-/admin,456[{"_placeholder":true,"num":0}]', b"\x03\x02\x01"],
    ),
    (
        Packet(T.BINARY_EVENT, "/", ["multi", {"a": b"A", "b": [b"B", {"c": b"C"}]}, b"D"]),
        [
            '54-["multi",{"a":{"_placeholder":true,"num":0},"b":[{"_placeholder":true,"num":1},'
            '{"c":{"_placeholder":true,"num":2}}]},{"_placeholder":true,"num":3}]',
            b"A",
            b"B",
            b"C",
            b"D",
        ],
    ),
]


@pytest.mark.parametrize(("packet", "wire"), VECTORS)
def test_encode_vectors(packet: Packet, wire: list[str | bytes]) -> None:
    assert encode(packet) == wire


@pytest.mark.parametrize(("packet", "wire"), VECTORS)
def test_decode_vectors(packet: Packet, wire: list[str | bytes]) -> None:
    assert decode_all(wire) == packet


@pytest.mark.parametrize(("packet", "wire"), [v for v in VECTORS if v[0].type == T.EVENT])
def test_encode_event_vectors(packet: Packet, wire: list[str | bytes]) -> None:
    name, *args = packet.data
    assert encode_event(packet.namespace, name, args, packet.id) == wire


# --------------------------------------------------------------------------------------------
# Encoding details
# --------------------------------------------------------------------------------------------


def test_event_with_binary_becomes_binary_event() -> None:
    assert encode(Packet(T.EVENT, "/", ["a", b"x"]))[0] == '51-["a",{"_placeholder":true,"num":0}]'
    assert encode_event("/", "a", [b"x"]) == encode(Packet(T.EVENT, "/", ["a", b"x"]))


def test_ack_without_binary_is_type_3() -> None:
    assert encode(Packet(T.BINARY_ACK, "/", [1, "a"], 7)) == ['37[1,"a"]']
    assert encode(Packet(T.BINARY_EVENT, "/", ["a"], None)) == ['2["a"]']
    assert encode(Packet(T.ACK, "/", [b"z"], 7)) == ['61-7[{"_placeholder":true,"num":0}]', b"z"]


def test_tuples_and_buffer_types() -> None:
    wire = encode_event("/", "t", ((1, 2), bytearray(b"ba"), memoryview(b"mv")))
    assert wire == [
        '52-["t",[1,2],{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"ba",
        b"mv",
    ]
    assert all(type(x) is bytes for x in wire[1:])
    assert encode_event("/", "t", ((1, (2,)),)) == ['2["t",[1,[2]]]']


def test_encode_compact_and_non_ascii() -> None:
    assert encode_event("/", "é", [{"k": "ü", "n": [1, 2.5, None, True]}]) == [
        '2["é",{"k":"ü","n":[1,2.5,null,true]}]'
    ]


def test_encode_rejects_nan_and_unserialisable() -> None:
    with pytest.raises(ValueError):
        encode_event("/", "x", [float("nan")])
    with pytest.raises(ValueError):
        encode(Packet(T.ACK, "/", [float("inf")], 1))
    with pytest.raises(TypeError):
        encode_event("/", "x", [object()])
    with pytest.raises(TypeError):
        encode(Packet(T.CONNECT, "/", {"token": b"x"}))


def test_encode_circular_does_not_hang() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises((ValueError, RecursionError)):
        encode_event("/", "x", [loop])


def test_encode_after_binary_failure_still_works() -> None:
    # The shared C encoder must not keep state from an aborted (binary) attempt.
    shared = {"k": 1}
    for _ in range(3):
        assert str(encode_event("/", "x", [shared, b"1"])[0]).startswith("51-")
        assert encode_event("/", "x", [shared, shared]) == ['2["x",{"k":1},{"k":1}]']


def test_encode_does_not_mutate_input() -> None:
    args = [{"a": b"x"}, [b"y"]]
    encode_event("/", "e", args)
    assert args == [{"a": b"x"}, [b"y"]]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, False),
        (1, False),
        ("bytes", False),
        ([], False),
        ({}, False),
        ([1, "a", {"b": [None]}], False),
        (b"", True),
        (bytearray(), True),
        (memoryview(b"x"), True),
        ([1, [2, [3, b"x"]]], True),
        ({"a": {"b": (1, bytearray(b"z"))}}, True),
        ((1, 2, (3, memoryview(b"q"))), True),
        ({b"key": 1}, False),  # keys are not data
    ],
)
def test_has_binary(obj: Any, expected: bool) -> None:
    assert has_binary(obj) is expected


# --------------------------------------------------------------------------------------------
# Decoder behaviour
# --------------------------------------------------------------------------------------------


def test_decode_namespace_without_comma() -> None:
    d = Decoder()
    assert d.feed("0/admin") == Packet(T.CONNECT, "/admin", None)
    assert d.feed("0/random") == Packet(T.CONNECT, "/random", None)
    assert d.feed("1/admin") == Packet(T.DISCONNECT, "/admin")
    assert d.feed("0/") == Packet(T.CONNECT, "/")


def test_decode_legacy_connect_error_string() -> None:
    d = Decoder()
    assert d.feed('4"Not authorized"') == Packet(
        T.CONNECT_ERROR, "/", {"message": "Not authorized"}
    )


def test_decode_ack_ids() -> None:
    d = Decoder()
    assert d.feed('20["echo",1]') == Packet(T.EVENT, "/", ["echo", 1], 0)
    assert d.feed('2007["e"]') == Packet(T.EVENT, "/", ["e"], 7)
    assert d.feed(f'2{MAX_ACK_ID}["e"]') == Packet(T.EVENT, "/", ["e"], MAX_ACK_ID)
    assert d.feed("3/x,5[]") == Packet(T.ACK, "/x", [], 5)


def test_decode_event_names_error_and_message_are_plain() -> None:
    d = Decoder()
    assert d.feed('2["error",1]') == Packet(T.EVENT, "/", ["error", 1])
    assert d.feed('2["message"]') == Packet(T.EVENT, "/", ["message"])


def test_binary_flow_and_pending() -> None:
    d = Decoder()
    assert not d.pending
    assert d.feed('52-["e",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]') is None
    assert d.pending
    assert d.feed(b"first") is None
    assert d.pending
    packet = d.feed(bytearray(b"second"))
    assert packet == Packet(T.BINARY_EVENT, "/", ["e", b"second", b"first"])
    assert type(packet.data[1]) is bytes
    assert not d.pending


def test_binary_duplicate_and_unused_attachments_are_fine() -> None:
    d = Decoder()
    assert d.feed('63-1[{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]') is None
    d.feed(b"a")
    d.feed(b"b")
    assert d.feed(b"c") == Packet(T.BINARY_ACK, "/", [b"a", b"a"], 1)


def test_binary_with_zero_attachments_completes_at_once() -> None:
    d = Decoder()
    assert d.feed('50-["e",1]') == Packet(T.BINARY_EVENT, "/", ["e", 1])
    assert not d.pending


def test_placeholder_like_data_in_plain_event_is_data() -> None:
    d = Decoder()
    packet = d.feed('2["e",{"_placeholder":true,"num":9}]')
    assert packet == Packet(T.EVENT, "/", ["e", {"_placeholder": True, "num": 9}])


def test_text_while_pending_errors_then_resets() -> None:
    d = Decoder()
    assert d.feed('51-["e",{"_placeholder":true,"num":0}]') is None
    with pytest.raises(SocketIOParseError):
        d.feed('2["x"]')
    assert not d.pending
    assert d.feed('2["x"]') == Packet(T.EVENT, "/", ["x"])


def test_binary_without_pending_header() -> None:
    d = Decoder()
    with pytest.raises(SocketIOParseError):
        d.feed(b"orphan")
    assert d.feed('2["x"]') == Packet(T.EVENT, "/", ["x"])


def test_reset_drops_pending() -> None:
    d = Decoder()
    d.feed('51-["e",{"_placeholder":true,"num":0}]')
    d.reset()
    assert not d.pending
    with pytest.raises(SocketIOParseError):
        d.feed(b"late")


def test_max_attachments() -> None:
    header = '53-["e",{"_placeholder":true,"num":0}]'
    with pytest.raises(SocketIOParseError):
        Decoder(max_attachments=2).feed(header)
    assert Decoder(max_attachments=3).feed(header) is None


def test_max_packet_size() -> None:
    d = Decoder(max_packet_size=20)
    assert d.feed('2["' + "x" * 15 + '"]') is not None  # 20 characters
    with pytest.raises(SocketIOParseError):
        d.feed('2["' + "x" * 16 + '"]')
    assert d.feed('51-["e",1]') is None
    with pytest.raises(SocketIOParseError):
        d.feed(b"y" * 21)
    assert not d.pending


class _Text(str):
    pass


def test_feed_accepts_str_subclass() -> None:
    assert Decoder().feed(_Text('2["x"]')) == Packet(T.EVENT, "/", ["x"])


def test_feed_rejects_other_types() -> None:
    d = Decoder()
    with pytest.raises(SocketIOParseError):
        d.feed(12)  # type: ignore[arg-type]


def test_error_messages_are_short() -> None:
    d = Decoder()
    with pytest.raises(SocketIOParseError) as info:
        d.feed('2[{"secret":"' + "s" * 1000 + '"}]')
    assert len(str(info.value)) < 120


# --------------------------------------------------------------------------------------------
# Hostile input (protocol notes), each must be a SocketIOParseError
# --------------------------------------------------------------------------------------------

HOSTILE: list[str] = [
    # empty / unknown types
    "",
    "9",
    "7",
    "999",
    "abc",
    "a123",
    "-1",
    ' 2["a"]',
    '\u0662["a"]',
    # huge digit runs
    "2" + "1" * 17 + '["a"]',
    "2" + "9" * 10_000 + '["a"]',
    f'2{MAX_ACK_ID + 1}["a"]',
    "5" + "1" * 10_000 + '-["a"]',
    '5999999-["a"]',
    '565-["a"]',
    '5-["a"]',
    '5x-["a"]',
    '51["a",{"_placeholder":true,"num":0}]',
    '5\u0661-["a"]',
    # placeholders
    '51-["a",{"_placeholder":true,"num":1}]',
    '51-["a",{"_placeholder":true,"num":-1}]',
    '51-["a",{"_placeholder":true,"num":"0"}]',
    '51-["a",{"_placeholder":true,"num":0.0}]',
    '51-["a",{"_placeholder":true,"num":true}]',
    '51-["a",{"_placeholder":true,"num":null}]',
    '51-["a",{"_placeholder":true}]',
    '51-["a",{"_placeholder":1,"num":0}]',
    '51-["a",{"_placeholder":"true","num":0}]',
    '51-["a",{"_placeholder":false,"num":0}]',
    '51-["a",{"_placeholder":null,"num":0}]',
    '51-["a",[[{"x":{"_placeholder":true,"num":5}}]]]',
    '50-["a",{"_placeholder":true,"num":0}]',
    '61-3[{"_placeholder":true,"num":99999999999999999999}]',
    # event names
    '2[{"toString":"x"}]',
    '2[true,"x"]',
    "2[null]",
    "2[1]",
    '2[["a"]]',
    "2[]",
    '2["connect"]',
    '2["connect_error"]',
    '2["disconnect"]',
    '2["disconnecting"]',
    '2["newListener"]',
    '2["removeListener"]',
    '2/admin,["connect"]',
    '51-["disconnect",{"_placeholder":true,"num":0}]',
    '51-[{"_placeholder":true,"num":0}]',
    # truncated / invalid JSON
    '2["a"',
    "2[",
    '2["a",]',
    "2['a']",
    '2["a"]]',
    '2["a"] ',
    '2["a"]x',
    '2["a",NaN]',
    '2["a",Infinity]',
    '2["a",-Infinity]',
    '2["a",1' + "0" * 5000 + "]",
    '2["\x01"]',
    "2" + "[" * 100_000,
    '2["a",' + '{"a":' * 100_000,
    # wrong payload kinds
    "2{}",
    '2"a"',
    "2",
    "2/admin,",
    "0[]",
    '0"x"',
    "0/admin,[]",
    "1/admin,{}",
    "1[]",
    '1"x"',
    "3[]",
    "3/admin,[]",
    "35{}",
    '35"a"',
    "35",
    "4",
    "4[]",
    "4/admin,",
    "01{}",
    "11",
    '42{"message":"x"}',
    '61-[{"_placeholder":true,"num":0}]',
    "51-{}",
    # bad ack ids / namespaces
    '2abc["a"]',
    '2/admin,abc["a"]',
    '2-1["a"]',
    '2 1["a"]',
    '21a["a"]',
    'admin,["a"]',
    '2admin,["a"]',
    "0admin,{}",
    '2/admin["a"]',
]


@pytest.mark.parametrize("message", HOSTILE)
def test_hostile_text(message: str) -> None:
    d = Decoder()
    with pytest.raises(SocketIOParseError) as info:
        d.feed(message)
    assert len(str(info.value)) < 120
    assert not d.pending
    assert d.feed('2["ok"]') == Packet(T.EVENT, "/", ["ok"])


def test_hostile_payloads_are_cheap() -> None:
    # A 10 MB digit run must be rejected after a bounded scan, not parsed into an int.
    d = Decoder()
    with pytest.raises(SocketIOParseError):
        d.feed("2" + "7" * 10_000_000)
    with pytest.raises(SocketIOParseError):
        d.feed("5" + "7" * 10_000_000 + "-")


def test_parse_error_hierarchy() -> None:
    assert issubclass(SocketIOParseError, ParseError)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.binary(max_size=16),
    st.binary(max_size=4).map(bytearray),
)
keys = st.text(max_size=8).filter(lambda k: k != "_placeholder")
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)
namespaces = st.one_of(
    st.just("/"),
    st.text(max_size=10).filter(lambda s: "," not in s).map(lambda s: "/" + s),
)
event_names = st.text(max_size=10).filter(lambda s: s not in RESERVED_EVENTS)
ack_ids = st.none() | st.integers(0, MAX_ACK_ID)


@SETTINGS
@given(namespaces, event_names, st.lists(values, max_size=5), ack_ids)
def test_event_round_trip(namespace: str, event: str, args: list[Any], ack_id: int | None) -> None:
    wire = encode_event(namespace, event, args, ack_id)
    assert wire == encode(Packet(T.EVENT, namespace, [event, *args], ack_id))
    binary = has_binary(args)
    assert (len(wire) > 1) == binary
    packet = decode_all(wire)
    assert packet.type == (T.BINARY_EVENT if binary else T.EVENT)
    assert packet.namespace == namespace
    assert packet.id == ack_id
    assert packet.data == norm([event, *args])


@SETTINGS
@given(namespaces, st.lists(values, max_size=5), st.integers(0, MAX_ACK_ID), st.booleans())
def test_ack_round_trip(namespace: str, args: list[Any], ack_id: int, as_binary: bool) -> None:
    requested = T.BINARY_ACK if as_binary else T.ACK
    wire = encode(Packet(requested, namespace, args, ack_id))
    packet = decode_all(wire)
    assert packet.type == (T.BINARY_ACK if has_binary(args) else T.ACK)
    assert wire[0][0] == ("6" if has_binary(args) else "3")
    assert (packet.namespace, packet.id, packet.data) == (namespace, ack_id, norm(args))


json_only = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=15,
)


@SETTINGS
@given(
    namespaces,
    st.one_of(
        st.tuples(st.just(T.CONNECT), st.none() | st.dictionaries(keys, json_only, max_size=4)),
        st.tuples(st.just(T.DISCONNECT), st.none()),
        st.tuples(st.just(T.CONNECT_ERROR), st.dictionaries(keys, json_only, max_size=4)),
    ),
)
def test_control_round_trip(namespace: str, kind_data: tuple[PacketType, Any]) -> None:
    kind, data = kind_data
    packet = Packet(kind, namespace, data)
    assert decode_all(encode(packet)) == packet


def _check_feed(decoder: Decoder, message: str | bytes) -> None:
    try:
        packet = decoder.feed(message)
    except SocketIOParseError:
        assert not decoder.pending
        return
    if packet is not None:
        assert isinstance(packet, Packet)
        assert packet.type in T
        assert packet.namespace.startswith("/")
        assert packet.id is None or 0 <= packet.id <= MAX_ACK_ID
        if packet.type in (T.EVENT, T.BINARY_EVENT):
            assert isinstance(packet.data[0], str)
            assert packet.data[0] not in RESERVED_EVENTS
        elif packet.type in (T.ACK, T.BINARY_ACK):
            assert isinstance(packet.data, list) and packet.id is not None
        elif packet.type == T.CONNECT:
            assert packet.data is None or isinstance(packet.data, dict)
        elif packet.type == T.CONNECT_ERROR:
            assert isinstance(packet.data, dict)
        else:
            assert packet.data is None


def _assert_usable(decoder: Decoder) -> None:
    decoder.reset()
    assert decoder.feed('2/x,3["ok",1]') == Packet(T.EVENT, "/x", ["ok", 1], 3)


@SETTINGS
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=8)), max_size=6))
def test_arbitrary_messages_never_crash(messages: list[str | bytes]) -> None:
    decoder = Decoder(max_attachments=4)
    for message in messages:
        _check_feed(decoder, message)
    _assert_usable(decoder)


fragments = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "9",
        "-",
        "/",
        "/admin",
        ",",
        "[",
        "]",
        "{",
        "}",
        '"',
        ":",
        '"a"',
        '"connect"',
        "true",
        "null",
        "1",
        "123456789",
        "-1",
        "1e400",
        '{"_placeholder":true,"num":0}',
        '{"_placeholder":true,"num":1}',
        '"_placeholder"',
        '"num"',
        "NaN",
        "\\",
        "\\u00",
        "é",
    ]
)


@SETTINGS
@given(
    st.lists(
        st.one_of(st.lists(fragments, max_size=12).map("".join), st.binary(max_size=3)),
        min_size=1,
        max_size=5,
    )
)
def test_structured_fuzz_never_crashes(messages: list[str | bytes]) -> None:
    decoder = Decoder(max_attachments=3)
    for message in messages:
        _check_feed(decoder, message)
    _assert_usable(decoder)


@SETTINGS
@given(
    namespaces,
    event_names,
    st.lists(values, max_size=3),
    ack_ids,
    st.data(),
)
def test_mutated_packets_never_crash(
    namespace: str, event: str, args: list[Any], ack_id: int | None, data: st.DataObject
) -> None:
    wire = encode_event(namespace, event, args, ack_id)
    header = wire[0]
    assert isinstance(header, str)
    pos = data.draw(st.integers(0, len(header)))
    action = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
    char = data.draw(st.sampled_from(list('0123456789-/,[]{}":ae\\')))
    if action == "insert":
        header = header[:pos] + char + header[pos:]
    elif action == "delete":
        header = header[:pos] + header[pos + 1 :]
    elif action == "replace":
        header = header[:pos] + char + header[pos + 1 :]
    else:
        header = header[:pos]
    decoder = Decoder()
    for message in [header, *wire[1:]]:
        _check_feed(decoder, message)
    _assert_usable(decoder)


@SETTINGS
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=12,
    ),
    st.sampled_from(list("0123456")),
    st.sampled_from(["", "/a,", "1-", "7"]),
)
def test_arbitrary_json_payloads_never_crash(payload: Any, digit: str, middle: str) -> None:
    decoder = Decoder()
    try:
        body = json.dumps(payload)
    except ValueError:
        return
    _check_feed(decoder, digit + middle + body)
    for i in range(3):
        _check_feed(decoder, bytes([i]))
    _assert_usable(decoder)
