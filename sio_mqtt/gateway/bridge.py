"""The gateway runtime: the two directions, the ack/reply flows, availability and shutdown.

Threads (no thread per message):

* paho's network thread receives MQTT messages, matches routes, decodes payloads and puts work
  on one bounded queue; it also answers server ack requests when a device's reply arrives;
* ONE worker thread takes the queue in order and calls ``emit`` / ``emit_with_ack``; it never
  waits for an ack: the ack future's callback publishes the reply, so many requests are in flight;
* the Socket.IO client's dispatcher runs :meth:`Gateway._sio_event` (Socket.IO -> MQTT) and
  publishes through paho directly (paho's publish is thread-safe and never blocks);
* server ack requests waiting for a device's reply time out on the Socket.IO client's loop
  timers (:mod:`sio_mqtt.gateway.replies`);
* a connector thread (re)connects Socket.IO namespaces the client will not reconnect by itself
  (the server unreachable at start, a server-side disconnect, a refused namespace).

Conventions (also in the README):

**MQTT request -> Socket.IO ack -> MQTT reply.** A route with ``ack: true`` emits with an ack and
publishes the outcome, never retained, with the route's QoS, to: the request's MQTT v5 Response
Topic (the reply copies the Correlation Data and carries ``status`` as a user property), else the
route's ``reply_topic``; with neither, no reply is sent. The payload is JSON:
``{"status": "ok", "args": [...]}`` (the ack's arguments), ``{"status": "timeout", "error": ...}``,
``{"status": "error", "error": ...}`` (the connection was lost while waiting, the payload did not
fit, the event was refused) or ``{"status": "unavailable", "error": ...}`` (Socket.IO was not
connected and the request could not be held: a full queue or offline buffer, or shutdown).

**Socket.IO server ack request -> MQTT device -> ack.** When the server emits an event asking for
an ack and a ``socketio_to_mqtt`` route with ``reply: true`` matches (the first such route), the
event is published (never retained) as a request with a reply address
``{base_topic}/reply/<instance>/<correlation>`` where ``<instance>`` is random per process and
``<correlation>`` unique per request:

* MQTT 5: the payload is the normal payload; the PUBLISH has Response Topic = the reply address and
  Correlation Data = ``<correlation>`` (UTF-8).
* MQTT 3.1.1 (no properties): the payload is the envelope
  ``{"reply_to": "<reply address>", "correlation": "<correlation>", "args": [<event arguments>]}``
  (bytes as ``{"_binary_b64": ...}``).
* ``reply_envelope: always`` on the route uses the envelope with MQTT 5 too (the properties are
  still set): for MQTT 3.1.1 devices, which never see properties, behind an MQTT 5 gateway.

The device publishes its answer to the reply address (copying the Correlation Data is optional:
the address alone identifies the request). The answer's payload becomes the ack's arguments: a
JSON array is spread, any other JSON value/text/bytes is one argument, an empty payload none. With
no answer within the route's ``ack_timeout`` the ack is ``{"status": "timeout", "error": ...}``;
if the request could not be published it is ``{"status": "unavailable", "error": ...}``. Events
with an ack request that no replying route matches are acked at once with no arguments, after
being published.

**Retained messages** (``mqtt_to_socketio[].retained``): a message the broker delivers with the
retain flag set was replayed from its store because the gateway subscribed (at every start and
reconnect; live messages arrive with the flag cleared, MQTT 3.1.1 and 5 alike). ``ignore`` (the
default) acknowledges it without emitting it (``sio_mqtt_retained_ignored_total{route}``, a DEBUG
log line); ``deliver`` emits it like any other.

**Error reports** go to ``{base_topic}/errors`` (QoS 0, not retained) as
``{"route": ..., "topic" | "event": ..., "reason": ...}`` and to the log at WARNING; they never
include payloads or secrets. What the broker refuses is reported the same way: a message over its
Maximum Packet Size (dropped alone, never sent), a refused subscription (also on ``/readyz``), a
refused MQTT 5 publish (PUBACK >= 0x80; see :mod:`sio_mqtt.gateway.mqtt`); ``mqtt.shared_group``
on a broker without shared subscriptions stops the gateway (:attr:`Gateway.fatal`).

**Delivery guarantees** (details and the tests proving them: README.md, "Delivery guarantees"):

* MQTT -> Socket.IO: incoming QoS 1/2 messages are acknowledged to the broker (paho manual acks)
  only once handed on: plain routes when ``emit()`` wrote the event with the namespace connected,
  ``ack: true`` routes when the server's ack arrived (or retries were exhausted: ``timeout``
  reply, then the ack). While Socket.IO is down the worker holds the head message (nothing is
  acked), the bounded queue fills, then paho's ``on_message`` blocks (and MQTT 5's Receive
  Maximum = ``queues.mqtt_to_socketio`` already stops the broker sending): back-pressure.
* Socket.IO -> MQTT: every publish goes through the outbox (:mod:`sio_mqtt.gateway.outbox`),
  durable with ``outbox.enabled``; the Socket.IO recovery ``pid``/``offset`` is saved with it.
* Message ids: MQTT 5 publishes carry the user property ``sio-mqtt-id``; ``message_id: true``
  on an ``mqtt_to_socketio`` route appends ``{"sio-mqtt-id": "<id>"}`` as the last argument.

**Availability**: ``{base_topic}/status`` is ``online``/``offline`` (retained; ``offline`` is also
the Last Will); ``{base_topic}/socketio/state`` is ``connected`` (every namespace connected) or
``disconnected`` (retained).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

import paho.mqtt.client as paho
from prometheus_client import Counter

from sio_mqtt.errors import (
    AckCancelled,
    AckTimeout,
    BufferFullError,
    ConnectError,
    PayloadTooLargeError,
    SocketIOError,
)
from sio_mqtt.gateway.availability import Availability
from sio_mqtt.gateway.config import GatewayConfig, SocketioConfig, _load_auth_file, all_namespaces
from sio_mqtt.gateway.devices import DeviceSessions
from sio_mqtt.gateway.http import HealthServer
from sio_mqtt.gateway.inbound import (
    MESSAGE_ID,
    Emit,
    Inbound,
    Request,
    RequestQueue,
    plan_message,
    publisher_message_id,
    reply_address,
)
from sio_mqtt.gateway.metrics import MQTT_TO_SIO, SIO_TO_MQTT, GatewayMetrics
from sio_mqtt.gateway.mqtt import MqttConnection, PublishResult, reply_properties
from sio_mqtt.gateway.outbound import AskDevice, Publish, plan_event
from sio_mqtt.gateway.outbox import Outbox, OutMessage
from sio_mqtt.gateway.replies import ServerRequests
from sio_mqtt.gateway.routes import (
    MqttToSocketioRoute,
    PayloadError,
    RouteRefused,
    RouteTable,
    SocketioToMqttRoute,
    encode_mqtt_payload,
)
from sio_mqtt.gateway.sessions import session_client
from sio_mqtt.socketio.backoff import backoff_delay
from sio_mqtt.socketio.socket import Socket

__all__ = ["Gateway"]

log = logging.getLogger("sio_mqtt.gateway")

_SERVER_DISCONNECT = "io server disconnect"
#: error kinds that can come in floods (one per dropped message): logged and published at most
#: once per second per (kind, route); the counters still count every one
_RATE_LIMITED = frozenset(
    {"publish", "queue_full", "buffer_full", "outbox_full", "too_large", "publish_refused"}
)
#: paho queue room kept for replies, status and error reports beyond the outbox's window
_PAHO_RESERVE = 1000


# ------------------------------------------------------------------------------------------------
# small building blocks
# ------------------------------------------------------------------------------------------------


def _ack_args(value: Any) -> list[Any]:
    """The client's ack value (None, one value, a tuple of several) as an argument list."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return list(value)
    return [value]


def _auth_source(scfg: SocketioConfig) -> Callable[[], dict[str, Any]] | dict[str, Any] | None:
    """The client's ``auth``: without ``auth_file`` the fixed payload; with one, a callable the
    client calls for every CONNECT (first connect and each reconnect) that reads the file again,
    so a rotated token is used without a restart. Keys written in ``socketio.auth`` (or the
    environment) still win over the file's. If the file cannot be read or parsed, the last good
    payload is used and a warning (path and reason only, never contents) is logged."""
    payload = scfg.auth_payload()
    if scfg.auth_file is None:
        return payload or None
    path = scfg.auth_file
    at_load = _load_auth_file(path)  # what load_config merged (explicit keys won)
    explicit = {k: v for k, v in payload.items() if k not in at_load or at_load[k] != v}
    last = [payload]

    def auth() -> dict[str, Any]:
        try:
            last[0] = {**_load_auth_file(path), **explicit}
        except ValueError as exc:
            log.warning("Socket.IO: %s; using the previous auth payload", exc)
        return last[0]

    return auth


# ------------------------------------------------------------------------------------------------
# the gateway
# ------------------------------------------------------------------------------------------------


class Gateway:
    """An MQTT <-> Socket.IO gateway built from a :class:`GatewayConfig`.

    >>> gw = Gateway(load_config("config/gateway.yaml"))   # doctest: +SKIP
    >>> gw.start()                                         # never raises for a peer that is down
    >>> gw.run_forever()                                   # until request_stop() (e.g. a signal)

    :attr:`ready` is true while both sides are connected; :attr:`http_port` is the bound port of
    the health/metrics endpoint (when enabled).
    """

    def __init__(self, config: GatewayConfig, *, metrics: GatewayMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.routes = RouteTable.from_config(config)
        self.namespaces = all_namespaces(config)
        mcfg = config.mqtt
        base = mcfg.base_topic
        self.errors_topic = f"{base}/errors"
        self.state_topic = f"{base}/socketio/state"
        self._instance = uuid.uuid4().hex[:12]
        self._reply_prefix = f"{base}/reply/{self._instance}/"

        window = config.queues.socketio_to_mqtt
        self.outbox = Outbox(
            config.outbox,
            self._outbox_publish,
            self._outbox_dropped,
            window=window,
            on_recovery_saved=self._recovery_saved,
            retry_delay=mcfg.quota_retry_delay,
            retries=mcfg.quota_retries,
        )
        self.mqtt = MqttConnection(
            mcfg,
            on_message=self._on_mqtt_message,
            on_state=self._on_mqtt_state,
            max_queued=window + _PAHO_RESERVE,
            reconnect_min_delay=config.socketio.reconnect.delay,
            reconnect_max_delay=config.socketio.reconnect.delay_max,
            receive_maximum=config.queues.mqtt_to_socketio,
            on_published=self.outbox.acked,
            on_ready=self.outbox.set_ready,
            on_refused=self.outbox.refused,
            on_subscribed=self._on_subscribed,
            on_shared_unavailable=self._on_shared_unavailable,
        )
        self.availability = Availability(self.mqtt, self.state_topic, mcfg.shared_group)
        #: why the gateway stopped by itself (a broker it cannot work with), else None
        self.fatal: str | None = None
        self._v5 = self.mqtt.v5
        #: the broker keeps our session (and unacknowledged messages) across a disconnect
        self._session_persists = not mcfg.clean_start and (
            mcfg.protocol != 5 or mcfg.session_expiry > 0
        )
        self._msg_id_routes = frozenset(
            rc.name or f"mqtt_to_socketio[{i}]"
            for i, rc in enumerate(config.mqtt_to_socketio)
            if rc.message_id
        )
        self._msg_ids = itertools.count(1)
        self._token_lock = threading.Lock()
        # signalled when messages are acknowledged: caps the messages taken from the broker and
        # not acknowledged yet (some brokers ignore our Receive Maximum, e.g. mosquitto 2.0.11)
        self._unacked_cond = threading.Condition(self._token_lock)
        self._max_unacked = config.queues.mqtt_to_socketio
        #: incoming QoS 1/2 messages received and not acknowledged yet
        self._unacked = 0
        subs = list(self.routes.subscriptions)
        if any(r.reply for r in self.routes.outbound):
            subs.append((self._reply_prefix + "+", 1))
        #: every device its own Socket.IO session (``devices.enabled``), else None
        self.devices: DeviceSessions | None = None
        if config.devices.enabled:
            self.devices = DeviceSessions(
                config,
                self.metrics.registry,
                on_event=self._device_event,
                on_change=self._device_changed,
                report=self._device_report,
            )
            # this replica's own subscription (not shared): it sees every device's presence
            # and keeps only its partition's
            presence = self.devices.presence.subscription
            if presence not in {f for f, _ in subs}:
                subs.append((presence, 1))
        self.mqtt.subscribe(subs)

        # auth_file is read again on every (re)connect
        self.client = session_client(
            config.socketio, self.namespaces[0], _auth_source(config.socketio)
        )
        self._sockets: dict[str, Socket] = {}
        for ns in self.namespaces:
            sock: Socket = self.client if ns == self.namespaces[0] else self.client.socket(ns)
            self._sockets[ns] = sock
            self._bind_socket(ns, sock)

        self._queue = RequestQueue(config.queues.mqtt_to_socketio)
        #: the worker waits here while the namespace of the next message is not connected
        self._sio_cond = threading.Condition(threading.Lock())
        #: plain emits that went to the client's offline buffer (the connection dropped during
        #: emit): handed on when the namespace connects again (the buffer is flushed first)
        self._unconfirmed: dict[str, list[Request]] = {}
        self._held_at_stop: list[Request] = []
        self._recovery_candidate: dict[str, tuple[str, str | None]] | None = None
        self._recovery_last: dict[str, tuple[str, str | None]] | None = None
        self._probe_pending = False
        self._recovery_saves = Counter(
            "sio_mqtt_recovery_saves",
            "Socket.IO recovery states (pid/offset) committed to the outbox database",
            registry=self.metrics.registry,
        )
        self._inflight: set[Future[Any]] = set()
        #: server ack requests waiting for a device's reply (deadlines: the client's loop timers)
        self._server_requests = ServerRequests(
            self._reply_prefix,
            v5=self._v5,
            outbox=self.outbox,
            metrics=self.metrics,
            report=self._report,
            schedule=self.client.manager.call_later,
        )
        self._sio_connected: set[str] = set()
        self._sio_ever_ready = False
        self._sio_lock = threading.Lock()
        self._report_times: dict[tuple[str, str | None], tuple[float, int]] = {}
        self._needs_connect: set[str] = set(self.namespaces)
        self._connector_wake = threading.Event()
        self._stopping = False
        self._started = False
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._connector: threading.Thread | None = None
        self._recovery_timer: Any = None
        self.http: HealthServer | None = None

        self.metrics.track_queue(MQTT_TO_SIO, lambda: len(self._queue))
        self.metrics.track_queue("pending_requests", lambda: len(self._server_requests))
        self.metrics.track_queue(
            "socketio_offline_buffer", lambda: sum(s.buffered for s in self._sockets.values())
        )
        self.metrics.track_queue(SIO_TO_MQTT, lambda: len(self.outbox))
        self.metrics.track_queue("outbox_stored", lambda: self.outbox.stored)
        self.metrics.track_queue("mqtt_unacked", lambda: self._unacked)

    # -- public state -------------------------------------------------------------------------
    @property
    def socketio_connected(self) -> bool:
        return len(self._sio_connected) == len(self.namespaces)

    @property
    def ready(self) -> bool:
        """Both sides connected (what ``/readyz`` reports)."""
        return all(self.readiness().values())

    def readiness(self) -> dict[str, bool]:
        """What ``/readyz`` reports (see :mod:`sio_mqtt.gateway.availability`)."""
        return self.availability.readiness(self.socketio_connected)

    def readiness_details(self) -> dict[str, Any]:
        """Extra ``/readyz`` fields: the refused subscription filters and why."""
        return self.availability.details()

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http is not None else None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start both sides in the background; a peer that is down is retried, never fatal.

        Raises only for local problems (e.g. the HTTP port is taken: ``OSError``).
        """
        if self._started:
            return
        self._started = True
        hcfg = self.config.http
        if hcfg.enabled:
            self.http = HealthServer(
                hcfg.host,
                hcfg.port,
                self.readiness,
                self.metrics.registry,
                details=self.readiness_details,
                devices=self.devices.snapshot if self.devices is not None else None,
            )
            self.http.start()
        saved = self.outbox.open()
        if self.config.outbox.enabled and self.config.outbox.recovery:
            for ns, (pid, offset) in saved.items():
                sock = self._sockets.get(ns)
                if sock is not None:
                    log.info("Socket.IO: asking to recover namespace %s (session %s)", ns, pid)
                    sock.restore_recovery_state(pid, offset)
            self._recovery_last = {ns: st for ns, st in saved.items() if ns in self._sockets}
        if self.config.outbox.enabled and self.config.outbox.recovery:
            self._schedule_recovery()
        self._worker = threading.Thread(target=self._work, name="sio-mqtt-gw-worker", daemon=True)
        self._worker.start()
        if self.devices is not None:
            self.devices.start()
        self.mqtt.start()
        self._connector = threading.Thread(
            target=self._connect_loop, name="sio-mqtt-gw-connector", daemon=True
        )
        self._connector.start()

    def request_stop(self) -> None:
        """Ask :meth:`run_forever` to stop (safe from a signal handler: only sets an event)."""
        self._stop_requested.set()

    def run_forever(self, stop_timeout: float = 10.0) -> None:
        """:meth:`start`, wait for :meth:`request_stop`, then :meth:`stop`."""
        self.start()
        while not self._stop_requested.wait(0.5):
            pass
        self.stop(stop_timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the gateway has stopped; False on timeout."""
        return self._stopped.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: take no new input, deliver what is queued (bounded by ``timeout``),
        answer what still waits with ``unavailable``, publish ``offline`` and disconnect."""
        with self._stop_lock:
            if self._stopped.is_set() or not self._started:
                self._stopped.set()
                return
            self._stopping = True
        log.info("stopping: flushing queued messages (up to %.1f s)", timeout)
        deadline = time.monotonic() + timeout
        self._stop_requested.set()
        self._connector_wake.set()

        def left(share: float = 1.0) -> float:
            return max(0.0, (deadline - time.monotonic()) * share)

        # 1. MQTT -> Socket.IO: the worker empties its queue, then in-flight acks complete.
        #    What was never handed on stays unacknowledged: with a persistent session the broker
        #    redelivers it to the next run; without one it is answered ``unavailable``.
        self._queue.close()
        with self._sio_cond:
            self._sio_cond.notify_all()
        if self._worker is not None:
            self._worker.join(left(0.4))
        for req in self._held_at_stop + self._queue.drain():
            self.metrics.drop(MQTT_TO_SIO, "stopping")
            if not self._session_persists:
                self._finish_request(req, "unavailable", error="the gateway is shutting down")
        inflight = list(self._inflight)
        if inflight:
            wait_futures(inflight, timeout=left(0.5))
        # 2. server ack requests still waiting for a device
        self._server_requests.fail_all("unavailable", "the gateway is shutting down")
        if self._recovery_timer is not None:
            self._recovery_timer.cancel()
        # 3. Socket.IO
        if self.devices is not None:
            self.devices.stop(left(0.3))
        self.availability.publish_state(False)
        try:
            self.client.disconnect()
        except SocketIOError as exc:
            log.info("Socket.IO disconnect: %s", exc)
        if self._connector is not None:
            self._connector.join(left(0.5))
        # 4. MQTT: the outbox (what is not acknowledged stays stored for the next run), queued
        #    publishes, then "offline"
        if not self.outbox.drain(left(0.5)):
            log.warning(
                "stopping: %d message(s) not acknowledged by the broker%s",
                len(self.outbox),
                " (kept in the outbox for the next run)" if self.config.outbox.enabled else "",
            )
        self.outbox.close()
        self.mqtt.flush(left(0.5))
        self.mqtt.stop(max(left(), 0.5))
        self.metrics.set_connected("mqtt", False)
        self.metrics.set_connected("socketio", False)
        if self.http is not None:
            self.http.stop()
        log.info("stopped")
        self._stopped.set()

    # -- error reports --------------------------------------------------------------------------
    def _report(
        self,
        kind: str,
        route: str | None,
        reason: str,
        *,
        topic: str | None = None,
        event: str | None = None,
        device: str | None = None,
    ) -> None:
        """Count, log at WARNING and publish an error report (never with payloads/secrets)."""
        self.metrics.error(kind)
        if kind in _RATE_LIMITED:
            now = time.monotonic()
            key = (kind, route)
            last, suppressed = self._report_times.get(key, (0.0, 0))
            if now - last < 1.0:
                self._report_times[key] = (last, suppressed + 1)
                return
            self._report_times[key] = (now, 0)
            if suppressed:
                reason += f" ({suppressed} similar reports suppressed)"
        body: dict[str, Any] = {"route": route}
        if topic is not None:
            body["topic"] = topic
        if event is not None:
            body["event"] = event
        if device is not None:
            body["device"] = device
        body["reason"] = reason
        log.warning(
            "%s error: route %s, %s %r: %s",
            kind,
            route,
            "topic" if topic is not None else "event",
            topic if topic is not None else event,
            reason,
        )
        self.mqtt.publish(self.errors_topic, json.dumps(body, ensure_ascii=False), qos=0)

    # -- MQTT side (paho network thread) ---------------------------------------------------------
    def _routes_of(self, flt: str) -> list[str]:
        """The ``mqtt_to_socketio`` routes subscribing with filter ``flt``."""
        group = self.config.mqtt.shared_group
        prefix = f"$share/{group}/" if group else ""
        names = [r.name for r in self.routes.inbound if prefix + r.pattern.subscription == flt]
        if flt.startswith(self._reply_prefix):
            names.append("(device replies)")
        return names

    def _on_subscribed(self, refused: dict[str, str], regained: list[str]) -> None:
        """SUBACK results that changed: refused filters are reported (and keep ``/readyz`` at
        503); filters granted again are logged."""
        for flt, reason in refused.items():
            routes: list[str | None] = [*self._routes_of(flt)]
            for name in routes or [None]:
                self._report(
                    "subscribe",
                    name,
                    f"the broker refused the subscription to {flt!r}: {reason}; "
                    "this route receives nothing",
                    topic=flt,
                )
        for flt in regained:
            log.info("MQTT: subscription to %r granted again", flt)

    def _on_shared_unavailable(self, reason: str) -> None:
        """``mqtt.shared_group`` on a broker without shared subscriptions: every replica would
        receive nothing (or everything). Refuse to run (exit code 2)."""
        self.fatal = (
            f"mqtt.shared_group is {self.config.mqtt.shared_group!r} but the broker at "
            f"{self.config.mqtt.host}:{self.config.mqtt.port} does not support shared "
            f"subscriptions: {reason}. Use a broker that does (mosquitto 2, EMQX, HiveMQ, "
            "VerneMQ), or remove mqtt.shared_group and run a single gateway instance"
        )
        self.metrics.error("shared_subscriptions")
        log.error("%s; stopping", self.fatal)
        self.request_stop()

    def _on_mqtt_state(self, connected: bool) -> None:
        self.outbox.set_connected(connected)
        self.metrics.set_connected("mqtt", connected)
        if connected:
            if self.mqtt.connects > 1:
                self.metrics.reconnected("mqtt")
            self.availability.publish_state(self.socketio_connected)

    def _on_mqtt_message(self, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        qos = msg.qos
        if topic.startswith(self._reply_prefix):
            self._server_requests.on_reply(
                bytes(msg.payload), msg.properties if self._v5 else None, topic
            )
            if qos:
                self.mqtt.ack(msg.mid, qos, self.mqtt.connects)
            return
        devices = self.devices
        if devices is not None:
            devices.on_presence(topic, msg.payload)
            device = devices.device_of(topic)
            if device is not None:
                if not devices.owns(device):
                    # another replica's device: its copy of this message is handled there
                    if qos:
                        self.mqtt.ack(msg.mid, qos, self.mqtt.connects)
                    return
                devices.traffic(device)
        matches = self.routes.inbound_for(topic)
        if msg.retain and matches:
            matches = self._skip_retained(matches, topic)
        if not matches:
            if qos:
                self.mqtt.ack(msg.mid, qos, self.mqtt.connects)
            return
        payload = msg.payload
        props = msg.properties if self._v5 else None
        if self._stopping:
            # not handed on: left unacknowledged (redelivered when the session persists)
            for route, captures in matches:
                self.metrics.drop(MQTT_TO_SIO, "stopping")
                if self._session_persists:
                    continue
                try:
                    name: str | None = route.event_for(captures)
                except RouteRefused:
                    name = None
                self._reply_now(
                    route, captures, name, props, "unavailable", "the gateway is shutting down"
                )
            return
        t0 = time.perf_counter()
        reqs: list[Request] = []
        for step in plan_message(
            matches, bytes(payload), props, self._message_id, self._msg_id_routes
        ):
            route = step.route
            if not isinstance(step, Emit):
                self._report(step.kind, route.name, step.reason, topic=topic)
                self._reply_refusal(route, step.reply_topic, step.correlation, step.reason)
                continue
            dev = step.device
            if dev is not None:
                if devices is None or not devices.owns(dev):
                    continue  # another replica's device
                refusal = devices.plan_message(dev).refusal
                if refusal is not None:
                    self._report("device", route.name, refusal, topic=topic, device=dev)
                    self._reply_refusal(route, step.reply_topic, step.correlation, refusal)
                    continue
            req = Request(route, step.event, step.args, step.reply_topic, step.correlation, t0)
            req.device = dev
            reqs.append(req)
        if not reqs:  # refused / invalid: answered and reported, nothing to hand on
            if qos:
                self.mqtt.ack(msg.mid, qos, self.mqtt.connects)
            return
        if qos:
            token = Inbound(msg.mid, qos, self.mqtt.connects)
            token.pending = len(reqs)
            with self._unacked_cond:
                # back-pressure: paho's thread waits here, so it stops reading from the broker
                while self._unacked >= self._max_unacked and not self._stopping:
                    self._unacked_cond.wait(0.5)
                self._unacked += 1
            for req in reqs:
                req.token = token
        if len(reqs) == 1 and self._queue.consumer_idle():
            req = reqs[0]
            if (
                self._sockets[req.route.namespace].connected
                if req.device is None
                else devices is not None and devices.socket(req.device) is not None
            ):
                # nothing queued ahead and the namespace is up: emit right here, which saves
                # a thread hand-off (about a third of the gateway's request latency)
                try:
                    self._emit(req, inline=True)
                except Exception:
                    log.exception("emit failed for route %s", req.route.name)
                    self._handed_on(req)
                return
        put = self._queue.put
        for req in reqs:
            # waits while the queue is full: paho stops reading (back-pressure to the broker)
            if not put(req):
                self.metrics.drop(MQTT_TO_SIO, "stopping")
                if not self._session_persists:
                    self._finish_request(req, "unavailable", error="the gateway is shutting down")

    def _skip_retained(
        self, matches: list[tuple[MqttToSocketioRoute, dict[str, str]]], topic: str
    ) -> list[tuple[MqttToSocketioRoute, dict[str, str]]]:
        """The routes that emit a message the broker flags retained (replayed from its store
        because we subscribed); the others skip it on purpose (``retained: ignore``): counted
        and logged at DEBUG, not an error. With no route left it is acknowledged unemitted."""
        kept = []
        for route, captures in matches:
            if route.takes(retained=True):
                kept.append((route, captures))
            else:
                self.metrics.retained_ignored(route.name)
                log.debug(
                    "route %s: retained message on %r ignored (retained: ignore)", route.name, topic
                )
        return kept

    def _message_id(self, props: Any) -> str:
        """The publisher's ``sio-mqtt-id`` user property (MQTT 5), else a new unique id."""
        return publisher_message_id(props) or f"{self._instance}-{next(self._msg_ids)}"

    def _handed_on(self, req: Request, now: bool = False) -> None:
        """``req`` reached its final state: acknowledge its MQTT message once all its requests
        did (any thread; ``now``: written by this thread, see ``MqttConnection.ack``)."""
        token = req.token
        if token is None:
            return
        req.token = None
        with self._unacked_cond:
            token.pending -= 1
            if token.pending:
                return
            self._unacked -= 1
            if self._unacked < self._max_unacked:
                self._unacked_cond.notify()
        self.mqtt.ack(token.mid, token.qos, token.gen, now=now)

    def _reply_now(
        self,
        route: MqttToSocketioRoute,
        captures: Mapping[str, str],
        event: str | None,
        props: Any,
        status: str,
        error: str,
    ) -> None:
        if not route.ack:
            return
        topic, correlation = reply_address(route, captures, event, props)
        if topic is not None:
            self._publish_reply(topic, correlation, route.qos, status, None, error)
        self.metrics.ack(MQTT_TO_SIO, route.name, status)

    def _reply_refusal(
        self, route: MqttToSocketioRoute, topic: str | None, correlation: bytes | None, error: str
    ) -> None:
        """An ``error`` reply for a refused message of an ``ack: true`` route (counted)."""
        if not route.ack:
            return
        if topic is not None:
            self._publish_reply(topic, correlation, route.qos, "error", None, error)
        self.metrics.ack(MQTT_TO_SIO, route.name, "error")

    # -- MQTT -> Socket.IO worker ----------------------------------------------------------------
    def _work(self) -> None:
        take_all = self._queue.take_all
        emit_one = self._emit
        while True:
            batch = take_all()
            if batch is None:
                return
            for i, req in enumerate(batch):
                if self._queue.has_retries():
                    # requests lost with the connection go out again first: the rest of this
                    # batch came after them, so it waits behind them (order per namespace)
                    self._queue.push_front(batch[i:])
                    break
                try:
                    emit_one(req)
                except Exception:  # never let one message end the worker
                    log.exception("emit failed for route %s", req.route.name)
                    self._handed_on(req)

    def _hold(self, sock: Socket, req: Request) -> bool:
        """Wait until ``sock`` is connected (the request stays unacknowledged meanwhile, the
        queue behind it fills: back-pressure); False when the gateway stops first."""
        if sock.connected:
            return True
        with self._sio_cond:
            while not sock.connected:
                if self._stopping:
                    self._held_at_stop.append(req)
                    return False
                self._sio_cond.wait(0.5)
        return True

    def _emit(self, req: Request, inline: bool = False) -> None:
        """Hand ``req`` to the client. ``inline``: called on paho's thread with nothing queued,
        which must never wait for a connection (the worker does that, in order)."""
        route = req.route
        if req.device is not None:
            found = self._device_socket(req, inline)
            if found is None:
                return
            sock = found
        else:
            sock = self._sockets[route.namespace]
        if inline:
            if not sock.connected or self._queue.has_retries():
                self._queue.put(req)
                return
        elif req.device is None and not self._hold(sock, req):
            return
        if self._queue.has_retries():
            # the connection was lost while this request waited: the requests lost with it
            # came before it and go out first (requeue keeps arrival order)
            self._queue.requeue(req)
            return
        if not route.ack:
            try:
                sock.emit(req.event, *req.args)
            except BufferFullError:  # the connection dropped just now and the buffer is full
                self._queue.requeue(req)
                return
            except PayloadTooLargeError as exc:
                self._refuse_too_large(req, exc)
                return
            self.metrics.message(MQTT_TO_SIO, route.name)
            if sock.connected and not sock.buffered:
                self._handed_on(req)  # written to the transport (directly or by the flush)
                return
            with self._sio_cond:  # in the offline buffer: handed on when it is flushed
                self._unconfirmed.setdefault(route.namespace, []).append(req)
                if not (sock.connected and not sock.buffered):
                    return
                confirmed = self._unconfirmed.pop(route.namespace, [])
            for r in confirmed:
                self._handed_on(r)
            return
        try:
            future = sock.emit_with_ack(req.event, *req.args, timeout=route.ack_timeout)
        except BufferFullError:
            self._queue.requeue(req)
            return
        except PayloadTooLargeError as exc:
            self._refuse_too_large(req, exc)
            return
        self.metrics.message(MQTT_TO_SIO, route.name)
        self._inflight.add(future)
        future.add_done_callback(lambda fut: self._ack_done(req, fut))

    def _device_socket(self, req: Request, inline: bool) -> Socket | None:
        """The connected socket of ``req``'s device; the worker waits for a session being
        opened (in order, up to ``socketio.connect_timeout``). None: queued (inline), held at
        stop, or refused (reported, answered, acknowledged)."""
        devices = self.devices
        device = req.device
        assert devices is not None and device is not None
        sock = devices.socket(device)
        if sock is not None:
            return sock
        if inline:
            self._queue.put(req)
            return None
        deadline = time.monotonic() + self.config.socketio.connect_timeout
        with self._sio_cond:
            while True:
                sock = devices.socket(device)
                if sock is not None:
                    return sock
                if self._stopping:
                    self._held_at_stop.append(req)
                    return None
                if not devices.waitable(device) or time.monotonic() >= deadline:
                    break
                self._sio_cond.wait(0.2)
        state = devices.state(device)
        reason = f"no session (device {device}: {state.value if state else 'unknown'})"
        self._report("device", req.route.name, reason, event=req.event, device=device)
        self._finish_request(req, "unavailable", error=reason)
        self._handed_on(req)
        return None

    def _device_changed(self) -> None:
        """A device session connected or went away: wake the worker waiting for one."""
        with self._sio_cond:
            self._sio_cond.notify_all()

    def _device_report(self, device: str, kind: str, reason: str) -> None:
        self._report(kind, None, f"device {device}: {reason}", device=device)

    def _device_event(
        self, device: str, event: str, ack: Callable[..., None] | None, args: tuple[Any, ...]
    ) -> None:
        """The server sent ``event`` to ``device``'s socket (that client's dispatcher)."""
        assert self.devices is not None
        ns = self.devices.namespace
        routes = self.routes.outbound_for(ns, event, "device")
        if not routes:
            if ack is not None:
                ack()
            return
        self._sio_event(ns, event, ack, args, routes, device=device)

    def _refuse_too_large(self, req: Request, exc: PayloadTooLargeError) -> None:
        """The server would drop the whole connection over this message: refuse it alone
        (error report and reply), acknowledge it to the broker, keep serving the rest."""
        self._report("payload", req.route.name, str(exc), event=req.event)
        self._finish_request(req, "error", error=str(exc))
        self._handed_on(req)

    def _ack_done(self, req: Request, fut: Future[Any]) -> None:
        """Runs on the thread that completed the future (reader, scheduler): publish the reply,
        or emit again (through the worker: this thread must not wait for a connection)."""
        self._inflight.discard(fut)
        exc = fut.exception()
        if exc is None:
            self._finish_request(req, "ok", args=_ack_args(fut.result()))
        elif isinstance(exc, AckTimeout):
            if req.attempts < req.route.retries and not self._stopping:
                req.attempts += 1  # at-least-once: again, with a new ack id
                if self._queue.requeue(req):
                    return
            self._finish_request(req, "timeout", error=f"no ack within {req.route.ack_timeout:g} s")
        elif isinstance(exc, AckCancelled):
            # the connection was lost before the ack: emit again once reconnected, as a retry
            # (a message that makes the server drop the connection must not loop forever)
            if self._stopping:
                self._finish_request(req, "unavailable", error="the gateway is shutting down")
            elif req.attempts < req.route.retries and self._queue.requeue(req):
                req.attempts += 1
                return
            else:
                self._finish_request(req, "error", error=str(exc) or type(exc).__name__)
        else:
            self._finish_request(req, "error", error=str(exc) or type(exc).__name__)
        self._handed_on(req, now=True)  # right after the reply, from the same thread

    def _finish_request(
        self,
        req: Request,
        status: str,
        *,
        args: list[Any] | None = None,
        error: str | None = None,
    ) -> None:
        if not req.route.ack:
            return
        self.metrics.ack(MQTT_TO_SIO, req.route.name, status, time.perf_counter() - req.t0)
        if req.reply_topic is not None:
            self._publish_reply(
                req.reply_topic, req.correlation, req.route.qos, status, args, error
            )

    def _publish_reply(
        self,
        topic: str,
        correlation: bytes | None,
        qos: int,
        status: str,
        args: list[Any] | None,
        error: str | None,
    ) -> None:
        body: dict[str, Any] = {"status": status}
        if status == "ok":
            body["args"] = args if args is not None else []
        if error is not None:
            body["error"] = error
        try:
            payload = encode_mqtt_payload([body])
        except PayloadError as exc:
            payload = json.dumps({"status": "error", "error": exc.reason}).encode()
            status = "error"
        props = None
        if self._v5:
            props = reply_properties(None, correlation, (("status", status),))
        # now: written by this thread (the reader, for an ack), not handed to paho's thread
        result = self.mqtt.publish(topic, payload, qos=qos, retain=False, props=props, now=True)
        if result is PublishResult.TOO_LARGE:
            # the server's ack is too large for the broker: say so to the device instead
            self._report(
                "too_large",
                None,
                f"reply larger than the broker's Maximum Packet Size "
                f"({self.mqtt.max_packet_size} bytes); an error reply was sent instead",
                topic=topic,
            )
            body = {"status": "error", "error": "the reply is larger than the broker accepts"}
            if self._v5:
                props = reply_properties(None, correlation, (("status", "error"),))
            result = self.mqtt.publish(
                topic, json.dumps(body).encode(), qos=qos, retain=False, props=props, now=True
            )
        if result is not PublishResult.OK:
            self.metrics.drop(MQTT_TO_SIO, f"reply_{result.value}")

    # -- Socket.IO -> MQTT (client dispatcher thread) -------------------------------------------
    def _bind_socket(self, ns: str, sock: Socket) -> None:
        outbound_for = self.routes.outbound_for

        def on_event(event: str, ack: Callable[..., None] | None, *args: Any) -> None:
            routes = outbound_for(ns, event)
            if not routes:
                if ack is not None:
                    ack()
                return
            self._sio_event(ns, event, ack, args, routes)

        sock.on_any(on_event, with_ack=True)
        sock.on("connect", lambda: self._sio_state(ns, True))
        sock.on("disconnect", lambda reason: self._sio_disconnected(ns, reason))
        sock.on("connect_error", lambda err: self._sio_refused(ns, err))
        sock.on("reconnect_failed", lambda: self._sio_gave_up(ns))

    def _sio_event(
        self,
        ns: str,
        event: str,
        ack: Callable[..., None] | None,
        args: tuple[Any, ...],
        routes: tuple[SocketioToMqttRoute, ...],
        device: str | None = None,
    ) -> None:
        if self._stopping:
            self.metrics.drop(SIO_TO_MQTT, "stopping")
            if ack is not None:
                ack({"status": "unavailable", "error": "the gateway is shutting down"})
            return
        payload: bytes | None = None
        waiting = False
        add = self.outbox.add
        for step in plan_event(routes, ns, event, args, ack is not None, device):
            route = step.route
            if isinstance(step, AskDevice):
                assert ack is not None
                self._server_requests.publish(route, event, step.topic, args, ack)
                waiting = True
                continue
            if not isinstance(step, Publish):
                self._report("template", route.name, step.reason, event=event)
                continue
            if payload is None:
                try:
                    payload = encode_mqtt_payload(args)
                except PayloadError as exc:
                    self._report("payload", route.name, exc.reason, event=event)
                    break
            # kept (in order, bounded, durable when enabled) until the broker acknowledges it;
            # a drop is counted and reported by _outbox_dropped
            if add(
                OutMessage(
                    step.topic, payload, route.qos, route.retain, route=route.name, event=event
                )
            ):
                self.metrics.message(SIO_TO_MQTT, route.name)
        if ack is not None and not waiting:
            ack()

    # -- the outbox's callbacks ----------------------------------------------------------------
    def _outbox_publish(self, msg: OutMessage) -> int | str | None:
        """Hand ``msg`` to paho (outbox lock held; never blocks)."""
        props = None
        if self._v5:
            props = reply_properties(
                msg.response_topic, msg.correlation, ((MESSAGE_ID, msg.msg_id),)
            )
        return self.mqtt.publish_mid(msg.topic, msg.payload, msg.qos, msg.retain, props)

    def _outbox_dropped(self, msg: OutMessage, reason: str) -> None:
        """Every drop: counted exactly, reported (rate-limited per route)."""
        self.metrics.drop(SIO_TO_MQTT, reason)
        if reason == "outbox_full":
            self._report(
                "outbox_full",
                msg.route,
                f"the outbox is full ({self.outbox.max_messages} messages, MQTT "
                f"{'connected' if self.mqtt.connected else 'down'}); "
                f"message dropped ({self.outbox.policy})",
                event=msg.event,
            )
        elif reason == "too_large":
            self._report(
                "too_large",
                msg.route,
                f"the message is larger than the broker accepts (Maximum Packet Size "
                f"{self.mqtt.max_packet_size} bytes, topic {msg.topic!r}); dropped",
                event=msg.event,
            )
        elif reason.startswith("refused_"):
            self._report(
                "publish_refused",
                msg.route,
                f"the broker refused the publish on {msg.topic!r} "
                f"({reason.removeprefix('refused_').replace('_', ' ')}); dropped",
                event=msg.event,
            )
        elif reason != "stopping":
            self._report(
                "publish", msg.route, f"MQTT publish failed ({reason}); dropped", event=msg.event
            )

    def _recovery_saved(self) -> None:
        self._recovery_saves.inc()

    def _schedule_recovery(self) -> None:
        self._recovery_timer = self.client.manager.call_later(
            self.config.outbox.recovery_interval, self._recovery_tick
        )

    def _recovery_tick(self) -> None:
        """A loop timer, every ``outbox.recovery_interval``: probe the recovery state through
        the dispatcher (see :meth:`_recovery_probe`)."""
        if self._stopping:
            return
        if not self._probe_pending:
            self._probe_pending = True
            self.client.manager.dispatcher.submit(self._recovery_probe, urgent=True)
        self._schedule_recovery()

    def _recovery_probe(self) -> None:
        """Dispatcher thread. The reader updates a namespace's recovery offset *before* it
        queues the event for the dispatcher, so an offset read now may belong to an event not
        handled yet. It is saved only at the next probe (one interval later, queued behind every
        event received before it): by then that event is in the outbox, and the offset is
        committed in the same or a later transaction than the event."""
        self._probe_pending = False
        states: dict[str, tuple[str, str | None]] = {}
        for ns, sock in self._sockets.items():
            state = sock.recovery_state
            if state is not None:
                states[ns] = state
        confirmed = self._recovery_candidate
        self._recovery_candidate = states
        if confirmed and confirmed != self._recovery_last:
            self._recovery_last = confirmed
            self.outbox.save_recovery(confirmed)

    # -- Socket.IO connection state (client dispatcher thread) ------------------------------------
    def _sio_state(self, ns: str, connected: bool) -> None:
        with self._sio_lock:
            before = self.socketio_connected
            if connected:
                self._sio_connected.add(ns)
                self._needs_connect.discard(ns)
            else:
                self._sio_connected.discard(ns)
            after = self.socketio_connected
            if after and not before:
                if self._sio_ever_ready:
                    self.metrics.reconnected("socketio")
                self._sio_ever_ready = True
        if connected:
            with self._sio_cond:
                confirmed = self._unconfirmed.pop(ns, [])
                self._sio_cond.notify_all()
            for req in confirmed:  # the client flushed its offline buffer before "connect"
                self._handed_on(req)
        log.info("Socket.IO: namespace %s %s", ns, "connected" if connected else "disconnected")
        if after != before:
            self.metrics.set_connected("socketio", after)
            if not self._stopping:
                self.availability.publish_state(after)

    def _sio_disconnected(self, ns: str, reason: str) -> None:
        self._sio_state(ns, False)
        if self._stopping:
            return
        log.warning("Socket.IO: namespace %s disconnected (%s)", ns, reason)
        if reason == _SERVER_DISCONNECT:  # the client does not reconnect after this by itself
            self._schedule_connect(ns)

    def _sio_refused(self, ns: str, err: Any) -> None:
        if self._stopping or self._sockets[ns].active:
            return  # a failed attempt the client retries itself (reconnection policy)
        message = getattr(err, "message", None) or str(err)
        log.warning("Socket.IO: namespace %s refused: %s", ns, message)
        self._schedule_connect(ns)

    def _sio_gave_up(self, ns: str) -> None:
        if not self._stopping:
            self._schedule_connect(ns)

    def _schedule_connect(self, ns: str) -> None:
        with self._sio_lock:
            if ns in self._needs_connect:
                return  # the connector has it (waking it would cut its back-off short)
            self._needs_connect.add(ns)
        self._connector_wake.set()

    def _connect_loop(self) -> None:
        """Connect the namespaces nobody else will (re)connect, with back-off, until stopped."""
        rc = self.config.socketio.reconnect
        attempt = 0
        while not self._stopping:
            with self._sio_lock:
                todo = [ns for ns in self.namespaces if ns in self._needs_connect]
            failed = False
            for ns in todo:
                if self._stopping:
                    return
                sock = self._sockets[ns]
                if sock.connected:
                    with self._sio_lock:
                        self._needs_connect.discard(ns)
                    continue
                try:
                    sock.connect()
                except ConnectError as exc:
                    failed = True
                    log.warning("Socket.IO: cannot connect namespace %s: %s", ns, exc.message)
                    continue
                with self._sio_lock:
                    self._needs_connect.discard(ns)
            if self._stopping:
                return
            if failed:
                delay = max(  # the floor keeps a zero-delay config from spinning
                    backoff_delay(attempt, rc.delay, rc.delay_max, rc.randomization_factor), 0.05
                )
                attempt += 1
                self._connector_wake.wait(delay)
                self._connector_wake.clear()
            else:
                attempt = 0
                self._connector_wake.wait()
                self._connector_wake.clear()
