"""The gateway's small HTTP endpoint: ``/healthz``, ``/readyz`` and ``/metrics``.

Standard library only (``ThreadingHTTPServer``) on its own daemon thread: it must keep answering
while both sides are down, which is exactly when an orchestrator asks. Bound to
``http.host`` (``127.0.0.1`` by default, so metrics are not exposed by accident); port ``0`` picks
a free port, available afterwards as :attr:`HealthServer.port`.

* ``/healthz``: ``200 {"status": "ok"}`` while the process runs (liveness);
* ``/readyz``: ``200`` when MQTT and Socket.IO are both connected, else ``503``; the JSON body
  says which side is down: ``{"ready": false, "mqtt": true, "socketio": false}``, plus
  ``"subscriptions": false`` and ``"refused_subscriptions": [{"filter": ..., "reason": ...}]``
  while the broker refuses a route's filter (``"shared_subscriptions": false`` while shared
  subscriptions are not confirmed);
* ``/metrics``: the gateway's Prometheus registry in the text exposition format.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer"]

log = logging.getLogger("sio_mqtt.gateway.http")

ReadinessFn = Callable[[], Mapping[str, bool]]
DetailsFn = Callable[[], Mapping[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path == "/readyz":
            sides = dict(self.server.readiness())
            ready = all(sides.values())
            details = self.server.details() if self.server.details is not None else {}
            self._send_json(200 if ready else 503, {"ready": ready, **sides, **details})
        elif path == "/metrics":
            body = generate_latest(self.server.registry)
            self._send(200, CONTENT_TYPE_LATEST, body)
        else:
            self._send_json(404, {"error": "not found"})

    def _send_json(self, code: int, data: Any) -> None:
        self._send(code, "application/json", json.dumps(data).encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    readiness: ReadinessFn
    registry: CollectorRegistry
    details: DetailsFn | None


class HealthServer:
    """Serves the three endpoints until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        readiness: ReadinessFn,
        registry: CollectorRegistry,
        details: DetailsFn | None = None,
    ) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.readiness = readiness
        self._server.details = details
        self._server.registry = registry
        self.host = host
        self.port: int = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="sio-mqtt-gateway-http",
            daemon=True,
        )
        self._thread.start()
        log.info("HTTP: /healthz /readyz /metrics on http://%s:%d", self.host, self.port)

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()
