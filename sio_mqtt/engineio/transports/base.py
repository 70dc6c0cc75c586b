"""What both transports share: options, errors, URL and cookie helpers."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from requests.cookies import RequestsCookieJar

_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")
_QUERY_VALUE = re.compile(r"([?&;][^=&\s'\"]+=)[^&\s'\")]*")
_KEEP = ("EIO=", "transport=", "sid=", "t=")


def redact(text: str) -> str:
    """``text`` with URL credentials and query values masked: error messages (of requests,
    websocket-client, ours) quote URLs, and a URL may carry a password or a token."""
    text = _USERINFO.sub("***@", text)

    def mask(match: re.Match[str]) -> str:
        key = match.group(1)
        return match.group(0) if key[1:] in _KEEP else key + "***"

    return _QUERY_VALUE.sub(mask, text)


class TransportError(Exception):
    """The transport failed (socket error, HTTP error status): reason "transport error"."""

    reason = "transport error"


class TransportClosed(TransportError):
    """The peer closed the transport in an orderly way: reason "transport close"."""

    reason = "transport close"


@dataclass
class TransportOptions:
    """Settings every request of one client uses (HTTP polling and the websocket handshake)."""

    url: str  # http(s)://host[:port]
    path: str = "/socket.io/"
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    proxy: str | None = None
    connect_timeout: float = 20.0
    cookies: RequestsCookieJar = field(default_factory=RequestsCookieJar)

    def endpoint(self, scheme_kind: str, **params: str) -> str:
        """The Engine.IO URL for ``scheme_kind`` "http" or "ws" with the query ``params``."""
        parts = urllib.parse.urlsplit(self.url)
        scheme = parts.scheme.lower()
        secure = scheme in ("https", "wss")
        if scheme_kind == "ws":
            scheme = "wss" if secure else "ws"
        else:
            scheme = "https" if secure else "http"
        path = self.path if self.path.startswith("/") else "/" + self.path
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.update(self.query)
        query["EIO"] = "4"
        query.update(params)
        return urllib.parse.urlunsplit(
            (scheme, parts.netloc, path, urllib.parse.urlencode(query), "")
        )

    def cookie_header(self) -> str:
        """The jar as one Cookie header value (we only talk to one origin)."""
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies if c.value is not None)

    def store_set_cookie(self, values: list[str]) -> None:
        """Keep cookies from a websocket handshake (sticky sessions) in the shared jar."""
        host = urllib.parse.urlsplit(self.url).hostname or ""
        for value in values:
            parsed: SimpleCookie = SimpleCookie()
            try:
                parsed.load(value)
            except Exception:  # a malformed cookie is not worth a connection
                continue
            for name, morsel in parsed.items():
                self.cookies.set(name, morsel.value, domain=host, path=morsel["path"] or "/")


def cache_buster() -> str:
    """The customary ``t`` parameter that defeats caches on polling GETs."""
    return format(time.monotonic_ns() & 0xFFFFFFFFFF, "x")
