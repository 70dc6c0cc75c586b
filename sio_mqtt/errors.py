"""Typed exceptions of the client library.

Every error a user can catch derives from :class:`SocketIOError`, so one ``except`` covers the
library. Parse errors carry a short reason; they never echo whole payloads (which may hold secrets).
"""

from __future__ import annotations

from typing import Any


class SocketIOError(Exception):
    """Base class of every error raised by ``sio_mqtt``'s client."""


class ParseError(SocketIOError, ValueError):
    """A packet from the peer broke the protocol; the connection ends with "parse error"."""


class EngineIOParseError(ParseError):
    """An Engine.IO packet, polling payload or handshake could not be decoded."""


class SocketIOParseError(ParseError):
    """A Socket.IO packet (header, JSON, attachments) could not be decoded."""


class ConnectError(SocketIOError):
    """Connecting failed: the transport could not be opened, or the server refused the namespace.

    ``message`` is the server's (or the transport's) explanation and ``data`` the optional extra
    data of a CONNECT_ERROR packet.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"ConnectError({self.message!r}, data={self.data!r})"


class NotConnectedError(SocketIOError):
    """The operation needs a connected socket (for example ``call()`` with buffering disabled)."""


class BufferFullError(SocketIOError):
    """The offline buffer is full: the emit was refused rather than growing memory without bound."""


class PayloadTooLargeError(SocketIOError, ValueError):
    """A message is larger than the server's ``maxPayload``: it was not sent.

    The server would close the whole connection on it (websocket) or refuse the request
    (polling), so the client refuses it upfront and the connection keeps serving.
    ``size`` is the message's encoded size on the wire, ``limit`` the server's maxPayload.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message of {size} bytes exceeds the server's maxPayload of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class AckTimeout(SocketIOError, TimeoutError):
    """No acknowledgement arrived within the timeout."""


class AckCancelled(SocketIOError):
    """The connection was lost before the acknowledgement arrived, so it never will."""


class ReservedEventError(SocketIOError, ValueError):
    """The event name is reserved by Socket.IO and may not be emitted."""
