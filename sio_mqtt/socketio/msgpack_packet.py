"""Socket.IO packet codec speaking the ``socket.io-msgpack-parser`` wire format, sans-IO.

Each packet is one binary Engine.IO message holding a msgpack map
``{"type": int, "data": ..., "nsp": str, "id"?: int}``. Bytes stay inline as msgpack ``bin``,
so there are no attachments and no BINARY_* types on the wire (the JavaScript parser keeps
EVENT/ACK; 5/6 are still accepted and mapped to 2/3). Payloads are held to the same rules as
the JSON parser (:func:`sio_mqtt.socketio.packet.validate_data`).

Needs the optional ``msgpack`` extra; the client imports this module only for
``parser="msgpack"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from sio_mqtt.errors import SocketIOParseError
from sio_mqtt.socketio.packet import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Packet,
    PacketType,
    _snip,
    validate_data,
)

__all__ = ["Decoder", "Packet", "PacketType", "encode", "encode_event"]

_TYPES: dict[int, PacketType] = {
    0: PacketType.CONNECT,
    1: PacketType.DISCONNECT,
    2: PacketType.EVENT,
    3: PacketType.ACK,
    4: PacketType.CONNECT_ERROR,
    5: PacketType.EVENT,
    6: PacketType.ACK,
}
"""Wire type -> decoded type: the JS parser never sends 5/6, but accept and fold them."""

_WIRE_TYPE: tuple[int, ...] = (0, 1, 2, 3, 4, 2, 3)
"""Packet type -> wire type: BINARY_* are written as EVENT/ACK, like the JS parser does."""


def encode(packet: Packet) -> list[bytes]:
    """Encode a packet as exactly one msgpack message (absent data/id are left out, as in JS)."""
    obj: dict[str, Any] = {"type": _WIRE_TYPE[packet.type]}
    if packet.data is not None:
        obj["data"] = packet.data
    obj["nsp"] = packet.namespace
    if packet.id is not None:
        obj["id"] = packet.id
    return [msgpack.packb(obj, use_bin_type=True)]


def encode_event(
    namespace: str, event: str, args: Sequence[Any], ack_id: int | None = None
) -> list[bytes]:
    """Encode an EVENT (the ``emit()`` path); same output as :func:`encode`."""
    obj: dict[str, Any] = {"type": 2, "data": [event, *args], "nsp": namespace}
    if ack_id is not None:
        obj["id"] = ack_id
    return [msgpack.packb(obj, use_bin_type=True)]


def _ext_hook(code: int, data: bytes) -> Any:
    """``notepack.io`` writes JavaScript ``undefined`` as fixext 1 type 0; nothing else is valid."""
    if code == 0 and data == b"\x00":
        return None
    raise ValueError(f"unsupported msgpack extension type {code}")


def _fail(reason: str) -> SocketIOParseError:
    return SocketIOParseError(reason)


class Decoder:
    """Decoder with the same interface as the JSON :class:`~sio_mqtt.socketio.packet.Decoder`.

    Stateless (no attachments), so ``pending`` is always False; ``max_attachments`` is accepted
    for a drop-in signature and ignored.
    """

    __slots__ = ("_max_packet_size",)

    def __init__(self, max_attachments: int = 64, max_packet_size: int | None = None) -> None:
        del max_attachments
        self._max_packet_size = max_packet_size

    @property
    def pending(self) -> bool:
        """Always False: msgpack packets carry their bytes inline."""
        return False

    def reset(self) -> None:
        """Nothing to drop; present for interface parity."""

    def feed(self, message: str | bytes) -> Packet | None:
        """Decode one binary message into a packet (never returns None)."""
        if type(message) is str:
            raise _fail("text message received by the msgpack parser")
        if not isinstance(message, (bytes, bytearray, memoryview)):
            raise _fail(f"message must be bytes, not {type(message).__name__}")
        size = len(message)
        if not size:
            raise _fail("empty packet")
        limit = self._max_packet_size
        if limit is not None and size > limit:
            raise _fail(f"packet of {size} bytes exceeds {limit}")
        try:
            obj = msgpack.unpackb(
                message, raw=False, strict_map_key=True, ext_hook=_ext_hook, use_list=True
            )
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise _fail(f"invalid msgpack: {_snip(str(exc))}") from None
        if type(obj) is not dict:
            raise _fail(f"packet must be a msgpack map, got {type(obj).__name__}")
        wire_type = obj.get("type")
        if type(wire_type) is not int or wire_type not in _TYPES:
            raise _fail(f"unknown packet type {_snip(wire_type)}")
        ptype = _TYPES[wire_type]
        namespace = obj.get("nsp")
        if type(namespace) is not str or not namespace.startswith("/"):
            raise _fail(f"namespace must be a string starting with '/', got {_snip(namespace)}")
        ack_id = obj.get("id")
        if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID):
            raise _fail(f"invalid ack id {_snip(ack_id)}")
        data = obj.get("data")
        if ptype == PacketType.EVENT:
            if type(data) is not list or not data:
                raise _fail("EVENT payload must be a non-empty array")
            name = data[0]
            if type(name) is not str:
                raise _fail(f"event name must be a string, got {_snip(name)}")
            if name in RESERVED_EVENTS:
                raise _fail(f"reserved event name {_snip(name)}")
        else:
            data = validate_data(ptype, data, ack_id)
        return Packet(ptype, namespace, data, ack_id)
