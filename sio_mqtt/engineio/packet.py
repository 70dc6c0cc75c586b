"""Engine.IO v4 packet codec: WebSocket frames, long-polling payloads and the handshake.

Pure functions (sans-IO): the transports own the sockets, this module only turns frames and
HTTP bodies into :class:`Packet` values and back. Everything coming from the peer is treated as
hostile: any malformed input raises :class:`~sio_mqtt.errors.EngineIOParseError` with a short
reason that never echoes more than a few dozen characters of the input.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sio_mqtt.errors import EngineIOParseError, PayloadTooLargeError

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "RECORD_SEPARATOR",
    "Handshake",
    "Packet",
    "PacketType",
    "batch_payloads",
    "check_message_sizes",
    "decode_packet",
    "decode_payload",
    "encode_packet",
    "encode_payload",
    "message_size",
    "parse_handshake",
]

RECORD_SEPARATOR = "\x1e"
"""Joins packets inside one long-polling HTTP body (it never occurs in JSON-escaped text)."""

DEFAULT_MAX_PAYLOAD = 1_000_000
"""The reference server's default ``maxPayload``, used when the handshake omits it."""

_MAX_MS = 2**31 - 1
"""Upper bound of a timer in ms: what JavaScript timers accept, far above any sane interval."""

_SNIP = 60


class PacketType(enum.IntEnum):
    """Engine.IO packet types (the digit that starts each text packet)."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class Packet(NamedTuple):
    """One Engine.IO packet; ``data`` is ``bytes`` only for a binary MESSAGE."""

    type: PacketType
    data: str | bytes = ""


# Precomputed lookups keep the per-frame work to a dict/tuple index.
_DIGIT: tuple[str, ...] = tuple(str(int(t)) for t in PacketType)
_TYPE_OF_CHAR: dict[str, PacketType] = {str(int(t)): t for t in PacketType}
_MESSAGE = PacketType.MESSAGE
_BINARY_TYPES = (bytes, bytearray, memoryview)


def _snip(value: object) -> str:
    """Short repr of peer input for error messages (payloads may hold secrets or be huge)."""
    text = repr(value)
    return text if len(text) <= _SNIP else text[: _SNIP - 3] + "..."


def _utf8_len(text: str) -> int:
    """UTF-8 size of ``text``; ``isascii`` is O(1) in CPython, so ASCII costs no encode."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def encode_packet(packet: Packet) -> str | bytes:
    """Encode one packet as a WebSocket frame (binary messages go raw, without a type byte)."""
    ptype, data = packet
    if type(data) is str:
        return _DIGIT[ptype] + data
    if isinstance(data, _BINARY_TYPES):
        if ptype != _MESSAGE:
            raise ValueError(f"only MESSAGE packets may carry bytes, not {PacketType(ptype).name}")
        return bytes(data)
    raise TypeError(f"packet data must be str or bytes, not {type(data).__name__}")


def decode_packet(frame: str | bytes) -> Packet:
    """Decode one WebSocket frame; a binary frame is a binary MESSAGE (possibly empty)."""
    if type(frame) is str:
        if not frame:
            raise EngineIOParseError("empty packet")
        ptype = _TYPE_OF_CHAR.get(frame[0])
        if ptype is None:
            raise EngineIOParseError(f"unknown packet type {_snip(frame[0])}")
        return Packet(ptype, frame[1:])
    if isinstance(frame, _BINARY_TYPES):
        return Packet(_MESSAGE, bytes(frame))
    if isinstance(frame, str):  # a str subclass: off the hot path
        return decode_packet(str(frame))
    raise EngineIOParseError(f"frame must be str or bytes, not {type(frame).__name__}")


def _encode_for_polling(packet: Packet) -> str:
    """One packet as it appears in a polling body: binary becomes ``b`` + base64."""
    ptype, data = packet
    if type(data) is str:
        if RECORD_SEPARATOR in data:
            # A raw separator would split the packet on the other side: refuse rather than
            # let data inject packets (JSON escapes it, so only raw strings can contain one).
            raise ValueError("text packet contains the record separator \\x1e")
        return _DIGIT[ptype] + data
    if isinstance(data, _BINARY_TYPES):
        if ptype != _MESSAGE:
            raise ValueError(f"only MESSAGE packets may carry bytes, not {PacketType(ptype).name}")
        return "b" + base64.b64encode(data).decode("ascii")
    raise TypeError(f"packet data must be str or bytes, not {type(data).__name__}")


def encode_payload(packets: Sequence[Packet]) -> str:
    """Encode packets as one long-polling body, joined with the record separator."""
    return RECORD_SEPARATOR.join([_encode_for_polling(p) for p in packets])


def decode_payload(body: str | bytes, max_payload: int | None = None) -> list[Packet]:
    """Decode a long-polling body; refuses bodies over ``max_payload`` bytes (UTF-8 size)."""
    if isinstance(body, str):
        body = str(body)  # no copy for an exact str; a subclass becomes a plain one
        if max_payload is not None and (len(body) > max_payload or _utf8_len(body) > max_payload):
            raise EngineIOParseError(f"payload exceeds {max_payload} bytes")
    else:
        if not isinstance(body, _BINARY_TYPES):
            raise EngineIOParseError(f"body must be str or bytes, not {type(body).__name__}")
        if max_payload is not None and len(body) > max_payload:
            raise EngineIOParseError(f"payload of {len(body)} bytes exceeds {max_payload}")
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EngineIOParseError(f"payload is not UTF-8 (byte {exc.start})") from None
    if not body:
        raise EngineIOParseError("empty payload")
    packets: list[Packet] = []
    append = packets.append
    type_of = _TYPE_OF_CHAR.get
    for part in body.split(RECORD_SEPARATOR):
        if not part:
            raise EngineIOParseError("empty packet in payload")
        head = part[0]
        if head == "b":
            try:
                raw = base64.b64decode(part[1:], validate=True)
            except (binascii.Error, ValueError):
                raise EngineIOParseError("invalid base64 in binary packet") from None
            append(Packet(_MESSAGE, raw))
            continue
        ptype = type_of(head)
        if ptype is None:
            raise EngineIOParseError(f"unknown packet type {_snip(head)} in payload")
        append(Packet(ptype, part[1:]))
    return packets


def message_size(message: str | bytes, polling: bool) -> int:
    """Wire size of one Engine.IO MESSAGE, as the server checks it against ``maxPayload``.

    Text carries the type byte on both transports; binary goes raw on a websocket and as
    ``b`` + base64 in a polling body.
    """
    if message.__class__ is str:
        return 1 + _utf8_len(message)
    if polling:
        return 1 + 4 * ((len(message) + 2) // 3)
    return len(message)


def check_message_sizes(messages: Sequence[str | bytes], limit: int, polling: bool) -> None:
    """Raise PayloadTooLargeError for the first message whose wire size exceeds ``limit``."""
    for m in messages:
        if 4 * len(m) + 1 > limit:  # cheap bound first: most messages are far below it
            size = message_size(m, polling)
            if size > limit:
                raise PayloadTooLargeError(size, limit)


def batch_payloads(packets: Sequence[Packet], max_payload: int) -> list[str]:
    """Split packets into polling bodies of at most ``max_payload`` bytes, keeping order.

    The server refuses (HTTP 413) bodies above its ``maxPayload``; a single packet that is
    larger on its own still gets a body of its own, as the reference client does.
    """
    bodies: list[str] = []
    current: list[str] = []
    size = 0
    for packet in packets:
        text = _encode_for_polling(packet)
        length = _utf8_len(text)
        if current and size + 1 + length > max_payload:
            bodies.append(RECORD_SEPARATOR.join(current))
            current = []
            size = 0
        if current:
            size += 1 + length
        else:
            size = length
        current.append(text)
    if current:
        bodies.append(RECORD_SEPARATOR.join(current))
    return bodies


@dataclass(frozen=True, slots=True)
class Handshake:
    """The validated OPEN packet: intervals in seconds, ``max_payload`` in bytes."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: float
    ping_timeout: float
    max_payload: int


def _reject_constant(name: str) -> Any:
    """JSON has no NaN/Infinity; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"invalid JSON constant {name}")


def _positive_int(obj: dict[str, Any], key: str, upper: int | None) -> int:
    value = obj[key]
    if type(value) is not int:
        raise EngineIOParseError(f"handshake {key} must be an integer, got {_snip(value)}")
    if value <= 0:
        raise EngineIOParseError(f"handshake {key} must be positive, got {value}")
    if upper is not None and value > upper:
        raise EngineIOParseError(f"handshake {key} out of range: {_snip(value)}")
    return value


def parse_handshake(
    data: str, known_transports: Collection[str] = ("polling", "websocket")
) -> Handshake:
    """Validate the OPEN packet's JSON; unknown upgrade transports are dropped, not fatal."""
    if type(data) is not str:
        raise EngineIOParseError(f"handshake must be text, not {type(data).__name__}")
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise EngineIOParseError(f"handshake is not valid JSON: {_snip(data)}") from None
    if type(obj) is not dict:
        raise EngineIOParseError(f"handshake must be a JSON object, got {type(obj).__name__}")
    for key in ("sid", "pingInterval", "pingTimeout"):
        if key not in obj:
            raise EngineIOParseError(f"handshake lacks {key}")
    sid = obj["sid"]
    if type(sid) is not str or not sid:
        raise EngineIOParseError(f"handshake sid must be a non-empty string, got {_snip(sid)}")
    ping_interval = _positive_int(obj, "pingInterval", _MAX_MS)
    ping_timeout = _positive_int(obj, "pingTimeout", _MAX_MS)
    max_payload = (
        _positive_int(obj, "maxPayload", None) if "maxPayload" in obj else DEFAULT_MAX_PAYLOAD
    )
    raw_upgrades = obj.get("upgrades", [])
    if type(raw_upgrades) is not list:
        raise EngineIOParseError(f"handshake upgrades must be a list, got {_snip(raw_upgrades)}")
    for name in raw_upgrades:
        if type(name) is not str:
            raise EngineIOParseError(f"handshake upgrades must hold strings, got {_snip(name)}")
    upgrades = tuple(dict.fromkeys(n for n in raw_upgrades if n in known_transports))
    return Handshake(
        sid=sid,
        upgrades=upgrades,
        ping_interval=ping_interval / 1000,
        ping_timeout=ping_timeout / 1000,
        max_payload=max_payload,
    )
