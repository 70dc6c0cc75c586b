"""ClientBuilder: the fluent way to configure a client, for people coming from rust-socketio."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sio_mqtt.socketio.client import Client
from sio_mqtt.socketio.socket import AuthSource

_TRANSPORT_TYPES: dict[str, tuple[tuple[str, ...], bool]] = {
    "any": (("polling", "websocket"), True),
    "websocket_upgrade": (("polling", "websocket"), True),
    "websocket": (("websocket",), False),
    "polling": (("polling",), False),
}


class ClientBuilder:
    """``ClientBuilder(url).namespace("/admin").on("evt", fn).connect()`` -> a connected Client."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._options: dict[str, Any] = {}
        self._headers: dict[str, str] = {}
        self._handlers: list[tuple[str, Callable[..., Any], bool]] = []
        self._any_handlers: list[tuple[Callable[..., Any], bool]] = []

    def namespace(self, namespace: str) -> ClientBuilder:
        self._options["namespace"] = namespace
        return self

    def on(
        self, event: str, handler: Callable[..., Any], *, with_ack: bool = False
    ) -> ClientBuilder:
        self._handlers.append((event, handler, with_ack))
        return self

    def on_any(self, handler: Callable[..., Any], *, with_ack: bool = False) -> ClientBuilder:
        self._any_handlers.append((handler, with_ack))
        return self

    def auth(self, auth: AuthSource) -> ClientBuilder:
        self._options["auth"] = auth
        return self

    def opening_header(self, key: str, value: str) -> ClientBuilder:
        self._headers[key] = value
        return self

    def transport_type(self, kind: str) -> ClientBuilder:
        try:
            transports, upgrade = _TRANSPORT_TYPES[kind.lower()]
        except KeyError:
            raise ValueError(
                f"transport_type must be one of {sorted(_TRANSPORT_TYPES)}, got {kind!r}"
            ) from None
        self._options["transports"] = transports
        self._options["upgrade"] = upgrade
        return self

    def reconnect(self, enabled: bool) -> ClientBuilder:
        self._options["reconnect"] = enabled
        return self

    def reconnect_delay(self, min_s: float, max_s: float) -> ClientBuilder:
        self._options["reconnect_delay"] = min_s
        self._options["reconnect_delay_max"] = max_s
        return self

    def max_reconnect_attempts(self, attempts: int | None) -> ClientBuilder:
        self._options["max_reconnect_attempts"] = attempts
        return self

    def option(self, **options: Any) -> ClientBuilder:
        """Any other ``Client`` keyword (path, verify, proxy, parser, connect_timeout...)."""
        self._options.update(options)
        return self

    def headers(self, headers: Mapping[str, str]) -> ClientBuilder:
        self._headers.update(headers)
        return self

    def build(self) -> Client:
        """The configured client, not yet connected."""
        client = Client(self._url, headers=dict(self._headers), **self._options)
        for event, handler, with_ack in self._handlers:
            client.on(event, handler, with_ack=with_ack)
        for handler, with_ack in self._any_handlers:
            client.on_any(handler, with_ack=with_ack)
        return client

    def connect(self) -> Client:
        """Build and connect; raises ConnectError like ``Client.connect``."""
        client = self.build()
        client.connect()
        return client
