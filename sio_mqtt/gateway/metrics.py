"""Prometheus metrics of one gateway, on its own :class:`CollectorRegistry`.

A registry per :class:`~sio_mqtt.gateway.bridge.Gateway` (not the global default) so that several
gateways in one process (tests, embedding) never share or collide on counters.

Names (all prefixed ``sio_mqtt_``):

* ``messages_total{direction, route}``: messages forwarded (``direction`` is ``mqtt_to_socketio``
  or ``socketio_to_mqtt``);
* ``acks_total{direction, route, outcome}``: ack flows finished; ``outcome`` is ``ok``,
  ``timeout``, ``error`` or ``unavailable`` (``mqtt_to_socketio``: an MQTT request answered by the
  Socket.IO server; ``socketio_to_mqtt``: a server ack request answered by a device);
* ``ack_latency_seconds{direction}``: histogram of request -> ack times (sub-millisecond buckets);
* ``queue_depth{queue}``: current depth of the bounded queues (``mqtt_to_socketio`` worker queue,
  ``pending_requests`` = server ack requests waiting for a device);
* ``dropped_total{direction, reason}``: messages dropped (``queue_full``, ``not_connected``,
  ``stopping``, ``too_large``: over the broker's Maximum Packet Size, ``refused_<reason>``: an
  MQTT 5 PUBACK failure such as ``refused_not_authorized``, ...);
* ``connected{side}``: 1 while ``mqtt`` / ``socketio`` is connected;
* ``reconnects_total{side}``: connections re-established after a loss;
* ``errors_total{kind}``: error reports (``refused``, ``payload``, ``template``, ``publish``,
  ``too_large``, ``publish_refused``, ``subscribe``: a refused subscription,
  ``shared_subscriptions``: the broker has none, ...).
* ``retained_ignored_total{route}``: retained messages a ``retained: ignore`` route skipped (not
  an error: replayed by the broker at subscribe time, acknowledged, not emitted).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DIRECTIONS", "GatewayMetrics"]

MQTT_TO_SIO = "mqtt_to_socketio"
SIO_TO_MQTT = "socketio_to_mqtt"
DIRECTIONS = (MQTT_TO_SIO, SIO_TO_MQTT)

_LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class GatewayMetrics:
    """All metrics of one gateway; per-label children are cached so the hot path is one
    dict lookup and one lock-protected add."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "sio_mqtt_messages", "Messages forwarded", ["direction", "route"], registry=r
        )
        self.acks = Counter(
            "sio_mqtt_acks", "Ack flows by outcome", ["direction", "route", "outcome"], registry=r
        )
        self.ack_latency = Histogram(
            "sio_mqtt_ack_latency_seconds",
            "Request -> ack latency",
            ["direction"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "sio_mqtt_queue_depth", "Current depth of the bounded queues", ["queue"], registry=r
        )
        self.dropped = Counter(
            "sio_mqtt_dropped", "Messages dropped", ["direction", "reason"], registry=r
        )
        self.connected = Gauge(
            "sio_mqtt_connected", "1 while the side is connected", ["side"], registry=r
        )
        self.reconnects = Counter(
            "sio_mqtt_reconnects", "Connections re-established after a loss", ["side"], registry=r
        )
        self.errors = Counter("sio_mqtt_errors", "Error reports by kind", ["kind"], registry=r)
        self.retained_ignored_count = Counter(
            "sio_mqtt_retained_ignored",
            "Retained messages skipped by routes with retained: ignore",
            ["route"],
            registry=r,
        )
        for side in ("mqtt", "socketio"):
            self.connected.labels(side).set(0)
            self.reconnects.labels(side)
        self._msg_children: dict[tuple[str, str], Counter] = {}

    def message(self, direction: str, route: str) -> None:
        child = self._msg_children.get((direction, route))
        if child is None:
            child = self.messages.labels(direction, route)
            self._msg_children[(direction, route)] = child
        child.inc()

    def ack(self, direction: str, route: str, outcome: str, latency: float | None = None) -> None:
        self.acks.labels(direction, route, outcome).inc()
        if latency is not None:
            self.ack_latency.labels(direction).observe(latency)

    def drop(self, direction: str, reason: str) -> None:
        self.dropped.labels(direction, reason).inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def retained_ignored(self, route: str) -> None:
        self.retained_ignored_count.labels(route).inc()

    def set_connected(self, side: str, connected: bool) -> None:
        self.connected.labels(side).set(1 if connected else 0)

    def reconnected(self, side: str) -> None:
        self.reconnects.labels(side).inc()

    def track_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Report ``depth()`` as ``queue_depth{queue=name}`` at scrape time (no hot-path cost)."""
        self.queue_depth.labels(name).set_function(depth)
