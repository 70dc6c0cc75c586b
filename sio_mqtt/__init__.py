"""sio_mqtt: a Socket.IO v5 client (Engine.IO v4) and an MQTT <-> Socket.IO gateway."""

from __future__ import annotations

from sio_mqtt.errors import (
    AckCancelled,
    AckTimeout,
    BufferFullError,
    ConnectError,
    NotConnectedError,
    ParseError,
    PayloadTooLargeError,
    ReservedEventError,
    SocketIOError,
)

__version__ = "0.1.0"

__all__ = [
    "AckCancelled",
    "AckTimeout",
    "BufferFullError",
    "Client",
    "ClientBuilder",
    "ConnectError",
    "DispatchPool",
    "IOLoop",
    "NotConnectedError",
    "ParseError",
    "PayloadTooLargeError",
    "ReservedEventError",
    "Socket",
    "SocketIOError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # Lazy so that `import sio_mqtt` (e.g. for the CLI's --version) stays cheap.
    if name in ("Client", "Socket"):
        from sio_mqtt.socketio import client

        return getattr(client, name)
    if name == "IOLoop":
        from sio_mqtt.engineio.loop import IOLoop

        return IOLoop
    if name == "DispatchPool":
        from sio_mqtt.socketio.dispatcher import DispatchPool

        return DispatchPool
    if name == "ClientBuilder":
        from sio_mqtt.socketio.builder import ClientBuilder

        return ClientBuilder
    raise AttributeError(name)
