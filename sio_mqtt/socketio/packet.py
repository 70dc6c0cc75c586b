"""Socket.IO v5 packet codec (the default JSON parser), sans-IO.

Wire format of one packet: ``<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]``, followed, for
BINARY_EVENT/BINARY_ACK, by one binary Engine.IO message per attachment.

Encoding is on the emit hot path, so it is a single C-level ``json`` call for the common case
(no bytes in the arguments): bytes make the encoder bail out and only then is the slower
placeholder walk done. Decoding treats the peer as hostile: every malformed packet raises
:class:`~sio_mqtt.errors.SocketIOParseError` with a short reason, and the :class:`Decoder`
resets itself so the caller may go on (or close with "parse error").
"""

from __future__ import annotations

import enum
import json
import json.encoder
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sio_mqtt.errors import SocketIOParseError

__all__ = [
    "MAX_ACK_ID",
    "RESERVED_EVENTS",
    "Decoder",
    "Packet",
    "PacketType",
    "encode",
    "encode_event",
    "has_binary",
    "validate_data",
]


class PacketType(enum.IntEnum):
    """Socket.IO packet types (the first character of each packet)."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


RESERVED_EVENTS: frozenset[str] = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
"""Event names Socket.IO uses itself: a server never emits them, a client must not either."""

MAX_ACK_ID = 2**53
"""Largest ack id accepted (JavaScript's safe integer range); ids count up from 0."""

_MAX_ID_DIGITS = len(str(MAX_ACK_ID))
_MAX_ATTACHMENT_DIGITS = 6  # the count is capped by max_attachments anyway; this bounds int()
_SNIP = 60


@dataclass(slots=True)
class Packet:
    """One Socket.IO packet.

    ``data``: CONNECT a dict or None (auth / reply), CONNECT_ERROR a dict, EVENT a list
    ``[name, *args]``, ACK a list of args, DISCONNECT None. ``id`` is the ack id.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

_BINARY_TYPES = (bytes, bytearray, memoryview)
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _HasBinary(Exception):
    """Raised by the JSON ``default`` hook: the data holds bytes, take the binary path."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _BINARY_TYPES):
        raise _HasBinary
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _make_dumps() -> Callable[[Any], str]:
    """Build the fastest compact, non-ASCII-escaping JSON encoder available.

    ``json.dumps`` with keyword arguments builds a new ``JSONEncoder`` per call; calling the C
    encoder directly halves the cost. Without circular-reference markers (which a C encoder
    shared between calls cannot keep consistent after an exception) a cyclic structure ends
    in ``RecursionError`` instead of ``ValueError``. ``allow_nan`` is off: NaN is not JSON.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is not None:
        try:
            c_encoder = c_make_encoder(
                None,
                _json_default,
                json.encoder.encode_basestring,
                None,
                ":",
                ",",
                False,
                False,
                False,
            )
            c_encoder(["probe", 1, 2.5, None, True, {"k": "é"}], 0)
        except Exception:  # pragma: no cover - an interpreter whose C encoder differs
            pass
        else:
            join = "".join

            def dumps(obj: Any) -> str:
                return join(c_encoder(obj, 0))

            return dumps
    encoder = json.JSONEncoder(  # pragma: no cover - pure-Python json
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )
    return encoder.encode  # pragma: no cover


_dumps = _make_dumps()


def has_binary(obj: Any) -> bool:
    """True when bytes/bytearray/memoryview occur anywhere in nested lists, tuples or dicts."""
    if isinstance(obj, _BINARY_TYPES):
        return True
    if isinstance(obj, (list, tuple)):
        items: Any = obj
    elif isinstance(obj, dict):
        items = obj.values()
    else:
        return False
    scalars = _SCALARS
    for item in items:
        if type(item) in scalars:
            continue
        if has_binary(item):
            return True
    return False


def _deconstruct(obj: Any, buffers: list[bytes]) -> Any:
    """Copy ``obj`` with each bytes value replaced by a placeholder, depth-first."""
    if isinstance(obj, _BINARY_TYPES):
        buffers.append(bytes(obj))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(obj, (list, tuple)):
        return [_deconstruct(item, buffers) for item in obj]
    if isinstance(obj, dict):
        return {key: _deconstruct(value, buffers) for key, value in obj.items()}
    return obj


# ``str()`` of an IntEnum member is its name on Python 3.10, so digits come from this table.
_TYPE_DIGIT: tuple[str, ...] = tuple(str(int(t)) for t in PacketType)


def _header(ptype: PacketType, namespace: str, ack_id: int | None, attachments: int) -> str:
    head = _TYPE_DIGIT[ptype]
    if attachments:
        head += f"{attachments}-"
    if namespace != "/":
        head += namespace + ","
    if ack_id is not None:
        head += str(ack_id)
    return head


def _encode_binary(
    ptype: PacketType, namespace: str, data: Any, ack_id: int | None
) -> list[str | bytes]:
    buffers: list[bytes] = []
    replaced = _deconstruct(data, buffers)
    binary_type = PacketType.BINARY_EVENT if ptype == PacketType.EVENT else PacketType.BINARY_ACK
    out: list[str | bytes] = [
        _header(binary_type, namespace, ack_id, len(buffers)) + _dumps(replaced)
    ]
    out.extend(buffers)
    return out


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet as its text header followed by its binary attachments.

    EVENT/ACK (or their BINARY_ variants) become BINARY_* exactly when the data holds bytes,
    so an ack without binary is always type 3: servers reject a type 6 without attachments.
    """
    ptype = packet.type
    data = packet.data
    if ptype >= PacketType.EVENT and ptype != PacketType.CONNECT_ERROR:
        # EVENT, ACK, BINARY_EVENT, BINARY_ACK: the kind is decided by the data.
        base = (
            PacketType.ACK
            if ptype == PacketType.ACK or ptype == PacketType.BINARY_ACK
            else PacketType.EVENT
        )
        try:
            body = _dumps(data)
        except _HasBinary:
            return _encode_binary(base, packet.namespace, data, packet.id)
        return [_header(base, packet.namespace, packet.id, 0) + body]
    head = _header(ptype, packet.namespace, packet.id, 0)
    if data is None:
        return [head]
    try:
        return [head + _dumps(data)]
    except _HasBinary:
        raise TypeError(f"{PacketType(ptype).name} packets cannot carry binary data") from None


def encode_event(
    namespace: str, event: str, args: Sequence[Any], ack_id: int | None = None
) -> list[str | bytes]:
    """Encode an EVENT (the ``emit()`` fast path); same output as :func:`encode`."""
    data = [event, *args]
    try:
        body = _dumps(data)
    except _HasBinary:
        return _encode_binary(PacketType.EVENT, namespace, data, ack_id)
    if namespace == "/":
        if ack_id is None:
            return ["2" + body]
        return [f"2{ack_id}{body}"]
    if ack_id is None:
        return [f"2{namespace},{body}"]
    return [f"2{namespace},{ack_id}{body}"]


# ---------------------------------------------------------------------------------------------
# Validation shared with the msgpack parser
# ---------------------------------------------------------------------------------------------


def _snip(value: object) -> str:
    """Short repr of peer input for error messages (payloads may hold secrets or be huge)."""
    text = repr(value)
    return text if len(text) <= _SNIP else text[: _SNIP - 3] + "..."


def _fail(reason: str) -> SocketIOParseError:
    return SocketIOParseError(reason)


def validate_data(ptype: PacketType, data: Any, ack_id: int | None) -> Any:
    """Check the payload kind against the packet type; return the (normalised) data.

    Shared by both parsers so JSON and msgpack peers are held to the same rules. A legacy
    CONNECT_ERROR string becomes ``{"message": s}``.
    """
    if ptype == PacketType.EVENT or ptype == PacketType.BINARY_EVENT:
        if type(data) is not list or not data:
            raise _fail(f"EVENT payload must be a non-empty array, got {_kind(data)}")
        name = data[0]
        if type(name) is not str:
            raise _fail(f"event name must be a string, got {_snip(name)}")
        if name in RESERVED_EVENTS:
            raise _fail(f"reserved event name {_snip(name)}")
        return data
    if ptype == PacketType.ACK or ptype == PacketType.BINARY_ACK:
        if ack_id is None:
            raise _fail("ACK without an ack id")
        if type(data) is not list:
            raise _fail(f"ACK payload must be an array, got {_kind(data)}")
        return data
    if ack_id is not None:
        raise _fail(f"{PacketType(ptype).name} packet must not carry an ack id")
    if ptype == PacketType.CONNECT:
        if data is not None and type(data) is not dict:
            raise _fail(f"CONNECT payload must be an object, got {_kind(data)}")
        return data
    if ptype == PacketType.DISCONNECT:
        if data is not None:
            raise _fail(f"DISCONNECT must have no payload, got {_kind(data)}")
        return None
    if ptype == PacketType.CONNECT_ERROR:
        if type(data) is dict:
            return data
        if type(data) is str:
            return {"message": data}
        raise _fail(f"CONNECT_ERROR payload must be an object or a string, got {_kind(data)}")
    raise _fail(f"unknown packet type {_snip(ptype)}")  # pragma: no cover - callers check


def _kind(data: Any) -> str:
    if data is None:
        return "nothing"
    return _KIND_NAMES.get(type(data)) or type(data).__name__


_KIND_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string"}


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    """JSON has no NaN/Infinity; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"invalid JSON constant {name}")


# ``scan_once`` parses one value at an offset: no slicing copy of the packet, no extra frame.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    parse_constant=_reject_constant
).scan_once  # type: ignore[attr-defined]

_TYPE_OF_CHAR: dict[str, PacketType] = {str(int(t)): t for t in PacketType}
_DIGITS = frozenset("0123456789")
_JSON_START = frozenset('[{"')
_EVENT = PacketType.EVENT
_BINARY_EVENT = PacketType.BINARY_EVENT

# A slot where an attachment goes once it arrives: (container, key or index, attachment num).
_Slot = tuple[Any, Any, int]


def _find_placeholders(data: Any, count: int) -> list[_Slot]:
    """Locate every placeholder in ``data`` and check its ``num`` against ``count``.

    Iterative, so hostile nesting cannot exhaust the stack. Any object with a
    ``_placeholder`` key must be a well-formed placeholder: a half-valid one is an attack, not data.
    """
    slots: list[_Slot] = []
    stack: list[Any] = [data]
    pop = stack.pop
    push = stack.append
    while stack:
        container = pop()
        items: Any = enumerate(container) if type(container) is list else iter(container.items())
        for key, value in items:
            tv = type(value)
            if tv is dict:
                if "_placeholder" in value:
                    if value["_placeholder"] is not True:
                        raise _fail("placeholder with _placeholder not true")
                    num = value.get("num")
                    if type(num) is not int:
                        raise _fail(f"placeholder num must be an integer, got {_snip(num)}")
                    if not 0 <= num < count:
                        raise _fail(f"placeholder num {num} out of range 0..{count - 1}")
                    slots.append((container, key, num))
                else:
                    push(value)
            elif tv is list:
                push(value)
    return slots


class _Pending:
    """A binary packet whose header arrived and whose attachments are being collected."""

    __slots__ = ("buffers", "count", "packet", "slots")

    def __init__(self, packet: Packet, count: int, slots: list[_Slot]) -> None:
        self.packet = packet
        self.count = count
        self.slots = slots
        self.buffers: list[bytes] = []


class Decoder:
    """Incremental decoder: feed it each Engine.IO message, get complete packets back.

    Holds state only between a binary packet's header and its last attachment. Every error
    resets it, so after a :class:`SocketIOParseError` it is ready for a fresh packet.
    """

    __slots__ = ("_max_attachments", "_max_packet_size", "_pending")

    def __init__(self, max_attachments: int = 64, max_packet_size: int | None = None) -> None:
        self._max_attachments = max_attachments
        self._max_packet_size = max_packet_size
        self._pending: _Pending | None = None

    @property
    def pending(self) -> bool:
        """True while attachments of a binary packet are still expected."""
        return self._pending is not None

    def reset(self) -> None:
        """Drop any half-received binary packet."""
        self._pending = None

    def feed(self, message: str | bytes) -> Packet | None:
        """Decode one message; None means "attachments announced, feed them next"."""
        if type(message) is str:
            if self._pending is not None:
                self._pending = None
                raise _fail("text packet while binary attachments were still expected")
            return self._decode_text(message)
        if isinstance(message, _BINARY_TYPES):
            return self._add_attachment(bytes(message))
        if isinstance(message, str):  # a str subclass: off the hot path
            return self.feed(str(message))
        self._pending = None
        raise _fail(f"message must be str or bytes, not {type(message).__name__}")

    def _add_attachment(self, buffer: bytes) -> Packet | None:
        pending = self._pending
        if pending is None:
            raise _fail("binary message without a pending binary packet")
        limit = self._max_packet_size
        if limit is not None and len(buffer) > limit:
            self._pending = None
            raise _fail(f"attachment of {len(buffer)} bytes exceeds {limit}")
        buffers = pending.buffers
        buffers.append(buffer)
        if len(buffers) < pending.count:
            return None
        self._pending = None
        for container, key, num in pending.slots:
            container[key] = buffers[num]
        return pending.packet

    def _decode_text(self, text: str) -> Packet | None:
        size = len(text)
        if not size:
            raise _fail("empty packet")
        limit = self._max_packet_size
        if limit is not None and size > limit:
            raise _fail(f"packet of {size} characters exceeds {limit}")
        ptype = _TYPE_OF_CHAR.get(text[0])
        if ptype is None:
            raise _fail(f"unknown packet type {_snip(text[0])}")
        pos = 1
        count = 0
        if ptype >= _BINARY_EVENT:
            dash = text.find("-", 1, 2 + _MAX_ATTACHMENT_DIGITS)
            digits = text[1:dash]
            if dash < 0 or not digits or not (digits.isascii() and digits.isdigit()):
                raise _fail("invalid attachment count")
            count = int(digits)
            if count > self._max_attachments:
                raise _fail(f"{count} attachments exceed the limit of {self._max_attachments}")
            pos = dash + 1
        namespace = "/"
        if pos < size and text[pos] == "/":
            comma = text.find(",", pos)
            if comma < 0:
                namespace = text[pos:]
                pos = size
            else:
                namespace = text[pos:comma]
                pos = comma + 1
        ack_id: int | None = None
        if pos < size and text[pos] in _DIGITS:
            end = pos + 1
            while end < size and text[end] in _DIGITS:
                end += 1
                if end - pos > _MAX_ID_DIGITS:
                    raise _fail("ack id too long")
            ack_id = int(text[pos:end])
            if ack_id > MAX_ACK_ID:
                raise _fail("ack id out of range")
            pos = end
        data: Any = None
        if pos < size:
            if text[pos] not in _JSON_START:
                raise _fail(f"invalid payload start {_snip(text[pos : pos + 10])}")
            try:
                data, end = _scan_once(text, pos)
            except StopIteration:
                raise _fail("invalid JSON payload") from None
            except (ValueError, RecursionError) as exc:
                raise _fail(f"invalid JSON payload: {_snip(str(exc))}") from None
            if end != size:
                raise _fail(f"trailing data after JSON payload at {end}")
        if ptype == _EVENT:
            # Hot path: inline the EVENT checks.
            if type(data) is not list or not data:
                raise _fail(f"EVENT payload must be a non-empty array, got {_kind(data)}")
            name = data[0]
            if type(name) is not str:
                raise _fail(f"event name must be a string, got {_snip(name)}")
            if name in RESERVED_EVENTS:
                raise _fail(f"reserved event name {_snip(name)}")
            return Packet(ptype, namespace, data, ack_id)
        data = validate_data(ptype, data, ack_id)
        packet = Packet(ptype, namespace, data, ack_id)
        if ptype < _BINARY_EVENT:
            return packet
        slots = _find_placeholders(data, count)
        if not count:
            return packet
        self._pending = _Pending(packet, count, slots)
        return None
