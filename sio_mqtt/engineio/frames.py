"""A sans-IO WebSocket (RFC 6455) client frame codec: bytes in, events out; no socket, no thread.

The decoder never writes: a server ping is an event it reports (:class:`Ping`), and the owner of
the socket answers it with :func:`encode_frame` (``OP_PONG``). Messages come out whole
(fragments joined), text decoded. An oversize message is refused from its frame header, before
its payload is buffered.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from sio_mqtt.errors import EngineIOParseError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_MASK_POOL_SIZE = 4096
_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_unpack_short = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from


@dataclass(frozen=True, slots=True)
class Ping:
    """The server pinged; answer with a pong frame carrying ``payload``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The server closed the websocket (``code`` None when the frame had no status)."""

    code: int | None
    reason: str = ""


Event = str | bytes | Ping | Pong | Close


class MaskKeys:
    """Masking keys from ``os.urandom``, fetched 4 KiB at a time (one syscall per 1024 frames)."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = _MASK_POOL_SIZE

    def next(self) -> bytes:
        pos = self._pos
        if pos >= _MASK_POOL_SIZE:
            self._pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


def mask_payload(key: bytes, payload: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455 5.3), in C via big ints."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * ((n + 3) >> 2))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = _pack_short(first, 0x80 | 126, n)
    else:
        header = _pack_long(first, 0x80 | 127, n)
    return header + key + mask_payload(key, payload)


def encode_messages(messages: list[str | bytes] | tuple[str | bytes, ...], keys: MaskKeys) -> bytes:
    """Text and binary messages as consecutive frames, ready for one write."""
    if len(messages) == 1:
        m = messages[0]
        if m.__class__ is str:
            return encode_frame(OP_TEXT, m.encode(), keys.next())
        return encode_frame(OP_BINARY, m, keys.next())  # type: ignore[arg-type]
    return b"".join(
        encode_frame(OP_TEXT, m.encode(), keys.next())
        if isinstance(m, str)
        else encode_frame(OP_BINARY, m, keys.next())
        for m in messages
    )


class FrameDecoder:
    """Feed received bytes, then take events with :meth:`next_event` until it returns None.

    Raises EngineIOParseError on a protocol violation (reserved bits, stray continuation,
    unknown opcode, bad UTF-8, a message above ``max_message``).
    """

    __slots__ = ("_buf", "_fragment_opcode", "_fragment_size", "_fragments", "_pos", "max_message")

    def __init__(self, max_message: int = 64 * 1024 * 1024) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._pos = 0
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    def feed(self, data: bytes) -> None:
        buf = self._buf
        pos = self._pos
        if pos and pos == len(buf):
            buf.clear()
            self._pos = 0
        elif pos > 1 << 20:
            del buf[:pos]
            self._pos = 0
        buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned event."""
        return len(self._buf) - self._pos

    def next_event(self) -> Event | None:
        """The next complete message or control event; None when more bytes are needed."""
        buf = self._buf
        while True:
            pos = self._pos
            avail = len(buf) - pos
            if avail < 2:
                return None
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise EngineIOParseError("websocket frame with reserved bits set")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if avail < 4:
                    return None
                length = _unpack_short(buf, pos + 2)[0]
                head = 4
            elif length == 127:
                if avail < 10:
                    return None
                length = _unpack_long(buf, pos + 2)[0]
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            opcode = b0 & 0x0F
            if self._fragment_size + length > self.max_message:
                raise EngineIOParseError(
                    f"websocket message above {self.max_message} bytes refused"
                )
            if avail < head + length:
                return None
            start = pos + head
            payload = bytes(buf[start : start + length])
            if masked:  # servers must not mask; tolerate it anyway
                payload = mask_payload(bytes(buf[start - 4 : start]), payload)
            self._pos = start + length
            fin = b0 & 0x80
            if opcode >= 8:
                return self._control(opcode, payload)
            if opcode == OP_CONTINUATION:
                if not self._fragment_opcode:
                    raise EngineIOParseError("websocket continuation frame without a start")
            elif self._fragment_opcode:
                raise EngineIOParseError("websocket data frame inside a fragmented message")
            elif not fin:
                self._fragment_opcode = opcode
            if not fin or opcode == OP_CONTINUATION:
                self._fragments.append(payload)
                self._fragment_size += length
                if not fin:
                    continue
                opcode = self._fragment_opcode
                payload = b"".join(self._fragments)
                self._fragments = []
                self._fragment_opcode = 0
                self._fragment_size = 0
            if opcode == OP_TEXT:
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise EngineIOParseError("websocket text frame is not UTF-8") from exc
            if opcode == OP_BINARY:
                return payload
            raise EngineIOParseError(f"websocket frame with unknown opcode {opcode}")

    @staticmethod
    def _control(opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload[:125])
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            if len(payload) >= 2:
                return Close(_unpack_short(payload, 0)[0], payload[2:].decode("utf-8", "replace"))
            return Close(None)
        raise EngineIOParseError(f"websocket control frame with unknown opcode {opcode}")
