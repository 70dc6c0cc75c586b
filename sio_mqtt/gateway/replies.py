"""Request/reply bookkeeping of Socket.IO server ack requests answered over MQTT.

A server event with an ack request that a ``reply: true`` route takes is published with a reply
address ``{base_topic}/reply/<instance>/<correlation>``; the ack waits here until the device's
answer arrives on that address (:meth:`ServerRequests.on_reply`) or the route's ``ack_timeout``
passes. Deadlines are timers of the Socket.IO client's loop (``schedule``), not a thread of the
gateway's own.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sio_mqtt.errors import PayloadTooLargeError
from sio_mqtt.gateway.metrics import SIO_TO_MQTT, GatewayMetrics
from sio_mqtt.gateway.outbox import Outbox, OutMessage
from sio_mqtt.gateway.routes import PayloadError, SocketioToMqttRoute, decode_mqtt_payload

__all__ = ["ServerRequests"]

log = logging.getLogger("sio_mqtt.gateway")

#: ``schedule(delay, fn)``: run ``fn`` after ``delay`` seconds; returns a handle with cancel()
ScheduleFn = Callable[[float, Callable[[], None]], Any]
#: ``report(kind, route, reason, topic=..., event=...)``: the gateway's error report
ReportFn = Callable[..., None]


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _ServerAck:
    """A server ack request waiting for a device's MQTT reply."""

    __slots__ = ("ack", "route", "t0", "timeout", "timer")

    def __init__(
        self, ack: Callable[..., None], route: SocketioToMqttRoute, t0: float, timeout: float
    ) -> None:
        self.ack = ack
        self.route = route
        self.t0 = t0
        self.timeout = timeout
        self.timer: Any = None


class ServerRequests:
    """Server ack requests waiting for a device's reply (thread-safe)."""

    def __init__(
        self,
        reply_prefix: str,
        *,
        v5: bool,
        outbox: Outbox,
        metrics: GatewayMetrics,
        report: ReportFn,
        schedule: ScheduleFn,
    ) -> None:
        self.reply_prefix = reply_prefix
        self._v5 = v5
        self._outbox = outbox
        self._metrics = metrics
        self._report = report
        self._schedule = schedule
        self._corr_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[str, _ServerAck] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def _pop(self, corr: str) -> _ServerAck | None:
        with self._lock:
            pending = self._pending.pop(corr, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        return pending

    def publish(
        self,
        route: SocketioToMqttRoute,
        event: str,
        topic: str,
        args: tuple[Any, ...],
        ack: Callable[..., None],
    ) -> None:
        """Publish a server ack request with a reply address; the ack is answered later (or
        at once with ``error`` when the request cannot be encoded)."""
        corr = format(next(self._corr_ids), "x")
        reply_to = self.reply_prefix + corr
        try:
            payload = route.request_payload(args, reply_to, corr, self._v5)
        except PayloadError as exc:
            self._report("payload", route.name, exc.reason, event=event)
            ack({"status": "error", "error": exc.reason})
            self._metrics.ack(SIO_TO_MQTT, route.name, "error")
            return
        t0 = time.perf_counter()
        pending = _ServerAck(ack, route, t0, route.ack_timeout)
        with self._lock:
            self._pending[corr] = pending
        pending.timer = self._schedule(route.ack_timeout, lambda: self._expired(corr))

        def dropped(reason: str) -> None:
            if self._pop(corr) is not None:
                self._answer(pending, "unavailable", "MQTT is not available")

        # through the outbox (ordered with the other publishes) but never stored: the reply
        # address means nothing to another run
        msg = OutMessage(
            topic,
            payload,
            route.qos,
            False,
            route=route.name,
            event=event,
            durable=False,
            response_topic=reply_to if self._v5 else None,
            correlation=corr.encode() if self._v5 else None,
            on_drop=dropped,
        )
        if self._outbox.add(msg):
            self._metrics.message(SIO_TO_MQTT, route.name)

    def on_reply(self, payload: bytes, properties: Any, topic: str) -> None:
        """A device answered on a reply address (paho thread): ack the server now."""
        # the reply address alone identifies the request; Correlation Data is the fallback for
        # a device that answered on the address of another request
        pending = self._pop(topic[len(self.reply_prefix) :])
        if pending is None and self._v5 and properties is not None:
            corr = _text(getattr(properties, "CorrelationData", None))
            if corr:
                pending = self._pop(corr)
        if pending is None:
            log.info("reply on %r matches no waiting request (late or unknown)", topic)
            self._metrics.drop(SIO_TO_MQTT, "late_reply")
            return
        args = decode_mqtt_payload(payload, "auto", spread=True)
        try:
            pending.ack(*args)
        except PayloadTooLargeError as exc:
            self._report("payload", pending.route.name, f"device reply: {exc}", topic=topic)
            self._answer(pending, "error", f"the device's reply was refused: {exc}")
            return
        self._metrics.ack(SIO_TO_MQTT, pending.route.name, "ok", time.perf_counter() - pending.t0)

    def _expired(self, corr: str) -> None:
        pending = self._pop(corr)
        if pending is not None:
            log.info("route %s: no device reply within %g s", pending.route.name, pending.timeout)
            self._answer(pending, "timeout", f"no reply from MQTT within {pending.timeout:g} s")

    def fail_all(self, status: str, error: str) -> None:
        """Answer every waiting request (the gateway stops)."""
        with self._lock:
            keys = list(self._pending)
        for key in keys:
            pending = self._pop(key)
            if pending is not None:
                self._answer(pending, status, error)

    def _answer(self, pending: _ServerAck, status: str, error: str) -> None:
        self._metrics.ack(SIO_TO_MQTT, pending.route.name, status)
        pending.ack({"status": status, "error": error})
