"""The gateway's MQTT connection: a thin, thread-safe wrapper around paho-mqtt 2.x.

Why a wrapper: the bridge should not care about protocol versions, TLS, reconnects or the
availability convention. This module owns them:

* MQTT 5 or 3.1.1 (``mqtt.protocol``); ``clean_start`` (clean-session for 3.1.1) and, for v5, the
  Session Expiry Interval.
* Username/password from the config (the password is a ``SecretStr``; it is revealed only to paho
  and never logged), TLS from ``mqtt.tls``.
* Availability: the Last Will is ``{base_topic}/status`` = ``offline`` (retained, QoS 1), and
  ``online`` (retained) is published on *every* connect, after the subscriptions are restored.
* Subscriptions are restored in ``on_connect`` on every (re)connect, so a broker that lost the
  session (restart without persistence, ``clean_start: true``) still delivers.
* ``TCP_NODELAY`` on the broker socket (``mqtt.tcp_nodelay``) so small request/reply messages
  are not delayed by Nagle's algorithm.
* paho's network thread (``loop_start``) reads and writes; it reconnects by itself with a back-off
  between ``reconnect_min_delay`` and ``reconnect_max_delay`` seconds. Exception: latency-bound
  packets (``publish(now=True)``/``ack(now=True)``: a request's reply and its PUBACK) are written
  by the calling thread when nothing is queued ahead of them on a plain TCP socket
  (:meth:`FastClient.writing_now <sio_mqtt.gateway.paho_fast.FastClient.writing_now>`), which
  saves the wake-up of paho's thread; paho's QoS bookkeeping is the same either way.

Outgoing queue while the broker is down
---------------------------------------
paho keeps QoS 1/2 messages that could not be sent yet and sends them in order after reconnecting.
That queue is bounded by ``max_queued`` (``queues.socketio_to_mqtt``): when it is full,
:meth:`MqttConnection.publish` returns :attr:`PublishResult.QUEUE_FULL` and the message is *not*
queued (drop-newest: the caller reports and counts the drop). QoS 0 messages are never queued:
while disconnected they are dropped (:attr:`PublishResult.NOT_CONNECTED`), as QoS 0 allows.
``publish`` never blocks, so it is safe to call from the Socket.IO dispatcher thread.

Delivery (see README.md, "Delivery guarantees")
---------------------------------------------
* Incoming QoS 1/2 messages are acknowledged *manually* (paho ``manual_ack=True``): the gateway
  calls :meth:`MqttConnection.ack` once it has handed the message on. An ack carries the
  connection generation it was received on; an ack for an earlier connection is not sent (the
  packet id may already name another message; the broker redelivers the old one when the
  session persists). MQTT 5: the CONNECT's Receive Maximum (``receive_maximum``) bounds the
  unacknowledged messages the broker sends us (broker-side flow control).
* ``on_published(mid)`` runs (paho thread, must not block) for every PUBACK/PUBCOMP;
  :meth:`publish_mid` returns the mid to match. ``on_ready`` runs once the ``online`` status
  published on connect was acknowledged: paho has re-sent what it had in flight by then, so a
  caller that publishes only after ``on_ready`` keeps its order across reconnects.
* A PUBACK with a failure reason (MQTT 5, >= 0x80: not authorized, quota exceeded...) is not a
  delivery: ``on_refused(mid, reason, retry)`` runs instead of ``on_published`` (``retry``: a
  quota-like code, worth trying again after a delay; else the message is dropped and reported).

Broker limits and refusals
--------------------------
* **Maximum Packet Size**: the smaller of the broker's (MQTT 5 CONNACK) and
  ``mqtt.max_packet_size`` (for 3.1.1 brokers, which cannot say it). A PUBLISH over it is not
  sent (:attr:`PublishResult.TOO_LARGE` / ``"too_large"``): a broker drops the whole connection
  over one, so the gateway would reconnect and resend it forever.
* **Refused subscriptions** (SUBACK >= 0x80, e.g. an ACL): :attr:`MqttConnection.refused` maps
  each refused filter to the broker's reason; ``on_subscribed(refused, granted)`` reports changes.
* **Shared subscriptions**: with ``mqtt.shared_group``, a broker that says it has none (MQTT 5
  CONNACK Shared Subscription Available = 0) or, for 3.1.1, does not deliver a probe message
  through a shared filter within :data:`SHARED_PROBE_TIMEOUT` (aedes, amqtt and RabbitMQ take
  ``$share/...`` as a literal filter) makes ``on_shared_unavailable(reason)`` run.
* **Protocol mismatch**: a broker that refuses an MQTT 5 CONNECT (or closes the connection before
  its CONNACK) and never accepted one may speak only 3.1.1: said once, with how to set it.
* **Log lines**: a broker outage is one WARNING when it starts and one when the broker is back
  (with the duration); each retry in between is DEBUG, and paho's own per-round error lines for
  a client without a socket are DEBUG too.
"""

from __future__ import annotations

import enum
import logging
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sio_mqtt.gateway.config import MqttConfig
from sio_mqtt.gateway.paho_fast import FAST_PROBLEMS, FastClient

__all__ = [
    "PUBACK_REASONS",
    "SHARED_PROBE_TIMEOUT",
    "MqttConnection",
    "PublishResult",
    "publish_packet_size",
    "reply_properties",
]

log = logging.getLogger("sio_mqtt.gateway.mqtt")

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"

MessageHandler = Callable[[paho.MQTTMessage], None]
StateHandler = Callable[[bool], None]


class PublishResult(enum.Enum):
    """What happened to a publish request (never an exception: callers count and report)."""

    OK = "ok"  # sent, or queued by paho to be sent after reconnecting (QoS > 0)
    NOT_CONNECTED = "not_connected"  # QoS 0 while disconnected: dropped
    QUEUE_FULL = "queue_full"  # the bounded outgoing queue is full: dropped
    ERROR = "error"  # invalid topic/payload or another paho error
    TOO_LARGE = "too_large"  # over the Maximum Packet Size: dropped (never sent)


#: MQTT 5 PUBACK/PUBREC failure reason codes -> the name used in metrics and reports
PUBACK_REASONS = {
    0x80: "unspecified_error",
    0x83: "implementation_specific_error",
    0x87: "not_authorized",
    0x90: "topic_name_invalid",
    0x91: "packet_identifier_in_use",
    0x97: "quota_exceeded",
    0x99: "payload_format_invalid",
}
#: refusals worth trying again after a delay (the broker is out of room for now); every other
#: failure (authorization, topic name, payload format...) would fail again: dropped and reported
RETRY_REASONS = frozenset({0x97})
#: CONNACK codes with which a broker may be telling an MQTT 5 client that it speaks only 3.1.1
#: (1 = a 3.1.1 broker's "unacceptable protocol version" read as MQTT 5; RabbitMQ: 0x80)
_PROTOCOL_HINT_CODES = frozenset({0x01, 0x80, 0x81, 0x82, 0x84})
#: seconds a probe message may take through a shared subscription (3.1.1) before the broker is
#: taken for one without shared subscriptions
SHARED_PROBE_TIMEOUT = 5.0
_SHARED_PREFIX = "$share/"


#: in-flight window without a Receive Maximum from the broker (MQTT 3.1.1)
MQTT311_INFLIGHT = 20


class PackedProperties(Properties):
    """MQTT 5 PUBLISH properties in wire form, packed once by us.

    paho's generic ``Properties`` costs ~27 µs per message to build and pack (name tables, per
    property validation); on the hot path every forwarded message carries a message id, so we
    write the few properties we use directly. paho only calls ``pack()`` on PUBLISH properties.
    """

    __setattr__ = object.__setattr__  # paho's validates every name against its tables

    def __init__(self, packed: bytes, user_properties: Sequence[tuple[str, str]] = ()) -> None:
        # deliberately not calling Properties.__init__: nothing here needs its tables
        self.packetType = PacketTypes.PUBLISH
        self._packed = packed
        self.user_properties = tuple(user_properties)

    def pack(self) -> bytes:
        return self._packed


def _vbi(value: int) -> bytes:
    """MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _mqtt_bytes(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


_RESPONSE_TOPIC = b"\x08"
_CORRELATION_DATA = b"\x09"
_USER_PROPERTY = b"\x26"


def publish_packet_size(
    topic: str, payload: bytes | str, qos: int, props: Properties | None, v5: bool
) -> int:
    """Bytes of the PUBLISH packet paho will write (what a Maximum Packet Size limits)."""
    size = 2 + len(topic.encode()) + len(payload.encode() if isinstance(payload, str) else payload)
    if qos:
        size += 2
    if v5:
        size += len(props.pack()) if props is not None else 1  # type: ignore[no-untyped-call]
    return 1 + len(_vbi(size)) + size


def reply_properties(
    response_topic: str | None = None,
    correlation_data: bytes | None = None,
    user_properties: Sequence[tuple[str, str]] = (),
) -> Properties:
    """MQTT 5 PUBLISH properties for requests, replies and message ids."""
    parts: list[bytes] = []
    if response_topic is not None:
        parts.append(_RESPONSE_TOPIC + _mqtt_bytes(response_topic.encode()))
    if correlation_data is not None:
        parts.append(_CORRELATION_DATA + _mqtt_bytes(correlation_data))
    for name, value in user_properties:
        parts.append(_USER_PROPERTY + _mqtt_bytes(name.encode()) + _mqtt_bytes(value.encode()))
    body = b"".join(parts)
    return PackedProperties(_vbi(len(body)) + body, user_properties)


class MqttConnection:
    """One MQTT client session of the gateway (see the module docstring).

    ``on_message`` runs on paho's network thread for every message on a subscribed filter; it must
    not block. ``on_state(connected)`` runs on the same thread on connect/disconnect.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        on_message: MessageHandler,
        on_state: StateHandler | None = None,
        max_queued: int = 10_000,
        max_inflight: int = 1000,
        reconnect_min_delay: float = 0.5,
        reconnect_max_delay: float = 5.0,
        receive_maximum: int | None = None,
        on_published: Callable[[int], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_refused: Callable[[int, str, bool], None] | None = None,
        on_subscribed: Callable[[dict[str, str], list[str]], None] | None = None,
        on_shared_unavailable: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.v5 = cfg.protocol == 5
        self.status_topic = f"{cfg.base_topic}/status"
        self._on_message_cb = on_message
        self._on_state_cb = on_state
        self._subscriptions: dict[str, int] = {}
        self._sub_lock = threading.Lock()
        self._connected = False
        self._stopping = False
        self._ever_connected = False
        self.connects = 0
        #: connection losses after a successful connect (the reconnect counter of the metrics)
        self.reconnects = 0
        self._connected_event = threading.Event()
        self._last_info: paho.MQTTMessageInfo | None = None
        self._receive_maximum = receive_maximum
        self._on_published_cb = on_published
        self._on_ready_cb = on_ready
        self._online_mid: int | None = None
        #: the ``online`` status of this connection was acknowledged (see the module docstring)
        self.ready = False
        self._on_refused_cb = on_refused
        self._on_subscribed_cb = on_subscribed
        self._on_shared_unavailable_cb = on_shared_unavailable
        #: subscription filters the broker refused (SUBACK >= 0x80) -> its reason
        self.refused: dict[str, str] = {}
        self._pending_subs: dict[int, list[str]] = {}
        #: the PUBLISH size limit in force (the broker's and/or ``max_packet_size``), if any
        self.max_packet_size: int | None = cfg.max_packet_size
        #: shared subscriptions work (None: not known yet, or no ``shared_group``)
        self.shared_available: bool | None = None
        self._probe_topic = f"{cfg.base_topic}/probe/{uuid.uuid4().hex[:12]}"
        self._probe_mid: int | None = None
        self._probe_timer: threading.Timer | None = None
        # outage bookkeeping for the log (see the module docstring)
        self._down_since: float | None = None
        self._failed_attempts = 0
        self._connack_seen = False
        self._last_refusal: str | None = None
        self._protocol_hint_given = False

        protocol = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        client = FastClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            clean_session=None if self.v5 else cfg.clean_start,
            protocol=protocol,
            reconnect_on_failure=True,
            manual_ack=True,
        )
        self._paho_log = _PahoLog(logging.getLogger("sio_mqtt.gateway.paho"))
        client.enable_logger(cast(logging.Logger, self._paho_log))
        if FAST_PROBLEMS:
            log.info("MQTT: paho's fast path is off (stock paho): %s", "; ".join(FAST_PROBLEMS))
        client.max_queued_messages_set(max_queued)
        self._max_inflight = max_inflight
        client.max_inflight_messages_set(max_inflight)
        client.reconnect_delay_set(
            min_delay=max(1, round(reconnect_min_delay)),
            max_delay=max(1, round(reconnect_max_delay)),
        )
        if cfg.username is not None or cfg.password is not None:
            client.username_pw_set(
                cfg.username or "",
                cfg.password.get_secret_value() if cfg.password is not None else None,
            )
        if cfg.tls.enabled:
            try:
                client.tls_set(
                    ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                    certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                    keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED if cfg.tls.verify else ssl.CERT_NONE,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                # a clear start-up error (exit 2), not a traceback: e.g. a key that does not
                # match the certificate, a PEM file that is not one
                raise ValueError(
                    f"mqtt.tls: cannot load the CA/certificate/key files: {exc}"
                ) from None
            client.tls_insecure_set(not cfg.tls.verify)
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        self._last_connect_failure: str | None = None
        self.client = client

    # -- state -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected_event.wait(timeout)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (never raises for an unreachable broker: paho retries)."""
        props: Properties | None = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.cfg.session_expiry
            if self._receive_maximum is not None:
                props.ReceiveMaximum = max(1, min(self._receive_maximum, 65535))
        kwargs: dict[str, Any] = {"keepalive": self.cfg.keepalive, "properties": props}
        if self.v5:
            kwargs["clean_start"] = self.cfg.clean_start
        self.client.connect_async(self.cfg.host, self.cfg.port, **kwargs)
        self.client.loop_start()
        log.info(
            "MQTT: connecting to %s:%d (protocol %s, client id %r)",
            self.cfg.host,
            self.cfg.port,
            self.cfg.protocol,
            self.cfg.client_id,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), wait up to ``timeout`` for queued QoS>0 messages and
        that one, then disconnect cleanly (the broker does not send the will) and end the thread."""
        self._stopping = True
        if self._connected:
            info = self.client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.info("MQTT: 'offline' not confirmed: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()
        self._connected = False

    def flush(self, timeout: float) -> bool:
        """Wait until the last QoS>0 publish was acknowledged (the broker acks in order)."""
        info = self._last_info
        if info is None:
            return True
        try:
            if info.is_published():
                return True
        except RuntimeError:  # paho raises for a message queued while never connected
            return False
        if not self._connected:
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    # -- subscriptions -----------------------------------------------------------------------
    def subscribe(self, filters: Iterable[tuple[str, int]]) -> None:
        """Add subscriptions (kept and restored on every reconnect); subscribes now if connected."""
        new: list[tuple[str, int]] = []
        with self._sub_lock:
            for topic, qos in filters:
                if self._subscriptions.get(topic) != qos:
                    self._subscriptions[topic] = qos
                    new.append((topic, qos))
        if new and self._connected:
            self._send_subscribe(new)

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> None:
        with self._sub_lock:  # the SUBACK may come back before subscribe() returns
            rc, mid = self.client.subscribe(filters)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._pending_subs[mid] = [topic for topic, _qos in filters]
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("MQTT: subscribe failed (%s); retried on the next connect", rc)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """A SUBACK: note refused filters (>= 0x80) and the ones granted again."""
        if mid == self._probe_mid:
            return
        with self._sub_lock:
            filters = self._pending_subs.pop(mid, None)
            if filters is None:
                return
            refused: dict[str, str] = {}
            granted: list[str] = []
            for flt, code in zip(filters, reason_codes, strict=False):
                if code.value >= 0x80:
                    refused[flt] = f"{code} (0x{code.value:02x})"
                else:
                    granted.append(flt)
            changed = {f: r for f, r in refused.items() if self.refused.get(f) != r}
            regained = [f for f in granted if f in self.refused]
            for flt in granted:
                self.refused.pop(flt, None)
            self.refused.update(refused)
        if (changed or regained) and self._on_subscribed_cb is not None:
            self._on_subscribed_cb(changed, regained)

    # -- publishing --------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        props: Properties | None = None,
        block: float = 0.0,
        now: bool = False,
    ) -> PublishResult:
        """Publish; see the module docstring for the queue's overflow rule.

        ``block`` > 0: while *connected* and the queue is full (the broker acknowledges slower
        than we publish), wait up to ``block`` seconds for room instead of dropping. That is
        back-pressure for the Socket.IO dispatcher (it stops reading, the server's TCP window
        fills); while disconnected a full queue still drops at once, so a broker outage never
        stalls the Socket.IO side.

        ``now``: latency matters (a reply): written by the calling thread when it can be, not
        handed to paho's network thread (:meth:`FastClient.writing_now`).
        """
        client = self.client
        if not self.v5:
            props = None
        limit = self.max_packet_size
        if limit is not None and publish_packet_size(topic, payload, qos, props, self.v5) > limit:
            return PublishResult.TOO_LARGE
        try:
            if now:
                with client.writing_now():
                    info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
            else:
                info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE and block > 0 and self._connected:
                deadline = time.monotonic() + block
                while (
                    info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
                    and self._connected
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.0005)
                    info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except ValueError as exc:
            log.warning("MQTT: cannot publish on %r: %s", topic, exc)
            return PublishResult.ERROR
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            if qos:
                self._last_info = info
            return PublishResult.OK
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # QoS > 0: paho keeps it and sends it after reconnecting
            if qos:
                self._last_info = info
                return PublishResult.OK
            return PublishResult.NOT_CONNECTED
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return PublishResult.QUEUE_FULL
        return PublishResult.ERROR

    def publish_mid(
        self,
        topic: str,
        payload: bytes | str,
        qos: int,
        retain: bool,
        props: Properties | None,
    ) -> int | str | None:
        """Publish for a caller that tracks the broker's ack: the mid (QoS > 0, sent or kept by
        paho for after a reconnect), ``0`` (QoS 0 written), ``None`` (paho's queue is full: try
        again later) or a failure reason (``"not_connected"`` for QoS 0, ``"too_large"``: over
        the Maximum Packet Size, ``"error"``)."""
        if not self.v5:
            props = None
        limit = self.max_packet_size
        if limit is not None and publish_packet_size(topic, payload, qos, props, self.v5) > limit:
            return "too_large"
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except ValueError as exc:
            log.warning("MQTT: cannot publish on %r: %s", topic, exc)
            return "error"
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return None
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            if not qos:
                return 0 if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else "not_connected"
            self._last_info = info
            return info.mid
        return "error"

    def ack(self, mid: int, qos: int, generation: int, now: bool = False) -> None:
        """Acknowledge an incoming QoS 1/2 message received on connection ``generation``
        (``connects`` when it arrived); acks for an earlier connection are not sent. ``now``:
        written by the calling thread when it can be (see :meth:`publish`)."""
        if qos and generation == self.connects and self._connected:
            if now:
                with self.client.writing_now():
                    self.client.ack(mid, qos)
            else:
                self.client.ack(mid, qos)

    # -- paho callbacks (network thread) -----------------------------------------------------
    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if mid == self._online_mid and not self.ready:
            self.ready = True
            if self._on_ready_cb is not None:
                self._on_ready_cb()
        code = reason_code.value
        if code >= 0x80 and self._on_refused_cb is not None:
            name = PUBACK_REASONS.get(code, f"0x{code:02x}")
            self._on_refused_cb(mid, name, code in RETRY_REASONS)
            return
        cb = self._on_published_cb
        if cb is not None:
            cb(mid)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        """paho could not open the connection (refused, unreachable, TLS handshake failed: wrong
        CA, host name mismatch...). paho calls this inside its ``except OSError`` block and logs
        nothing above DEBUG itself, so log the cause here: at WARNING for the first failure of an
        outage, else at DEBUG (the same outage every back-off period is noise)."""
        exc = sys.exc_info()[1]
        cause = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown cause"
        self._attempt_failed(
            "MQTT: cannot connect to %s:%d%s: %s; retrying",
            self.cfg.host,
            self.cfg.port,
            " (TLS)" if self.cfg.tls.enabled else "",
            cause,
        )

    def _attempt_failed(self, msg: str, *args: Any) -> None:
        """One failed connection attempt: the first of an outage is a WARNING, the rest DEBUG."""
        self._failed_attempts += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(msg, *args)
        else:
            log.debug(msg, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._connack_seen = False
        self._paho_log.last_error = None
        if not self.cfg.tcp_nodelay:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError) as exc:  # e.g. a unix or websocket transport
            log.debug("MQTT: TCP_NODELAY not set: %s", exc)

    def _protocol_hint(self, what: str) -> None:
        """An MQTT 5 CONNECT refused or dropped by a broker that never accepted one: say once
        that it may speak only 3.1.1 (aedes, amqtt, RabbitMQ 3.x answer it in their own ways)."""
        if not self.v5 or self._ever_connected or self._protocol_hint_given:
            return
        self._protocol_hint_given = True
        log.warning(
            "MQTT: the broker at %s:%d %s the MQTT 5 CONNECT: it may speak only MQTT 3.1.1; "
            'if so, set mqtt.protocol: "3.1.1" (or SIO_MQTT_MQTT__PROTOCOL=3.1.1)',
            self.cfg.host,
            self.cfg.port,
            what,
        )

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack_seen = True
        if reason_code.value >= 0x80 or (self.v5 and reason_code.value != 0):
            refusal = f"{reason_code} (0x{reason_code.value:02x})"
            msg = "MQTT: broker refused the connection: %s; retrying"
            if refusal != self._last_refusal:  # a new cause is worth a WARNING of its own
                self._last_refusal = refusal
                self._failed_attempts += 1
                if self._down_since is None:
                    self._down_since = time.monotonic()
                log.warning(msg, refusal)
            else:
                self._attempt_failed(msg, refusal)
            if reason_code.value in _PROTOCOL_HINT_CODES:
                self._protocol_hint(f"refused ({refusal})")
            return
        self.connects += 1
        self._last_refusal = None
        # paho does not honour the broker's Receive Maximum by itself (a strict broker refuses
        # or disconnects a client exceeding it), and its public setter refuses to change the
        # window on an open connection: set the attribute the setter would set (both positive).
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        if not (isinstance(receive_max, int) and receive_max > 0):
            # MQTT 3.1.1 has no Receive Maximum; brokers commonly allow 20 in flight per client
            # (mosquitto's max_inflight_messages) and may drop QoS 2 publishes beyond it
            receive_max = MQTT311_INFLIGHT
        window = min(self._max_inflight, receive_max)
        if hasattr(client, "_max_inflight_messages"):
            client._max_inflight_messages = window
        log.debug("MQTT: broker Receive Maximum %d, in-flight window %d", receive_max, window)
        # a broker sending more than it accepts would drop the connection over one message
        broker_max = getattr(properties, "MaximumPacketSize", None) if properties else None
        limits = [v for v in (broker_max, self.cfg.max_packet_size) if isinstance(v, int)]
        self.max_packet_size = min(limits) if limits else None
        if isinstance(broker_max, int):
            log.info("MQTT: the broker's Maximum Packet Size is %d bytes", broker_max)
        outage = ""
        level = logging.INFO
        if self._down_since is not None:
            level = logging.WARNING  # the end of what the first failure reported
            n = self._failed_attempts
            outage = (
                f" after {time.monotonic() - self._down_since:.1f} s without a connection "
                f"({n} failed attempt{'s' if n != 1 else ''})"
            )
            self._down_since = None
        self._failed_attempts = 0
        log.log(
            level,
            "MQTT: connected to %s:%d (session present: %s)%s",
            self.cfg.host,
            self.cfg.port,
            flags.session_present,
            outage,
        )
        with self._sub_lock:
            subs = list(self._subscriptions.items())
        if subs:
            self._send_subscribe(subs)
        self._check_shared(client, properties)
        self.ready = False
        self._online_mid = client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True).mid
        self._connected = True
        self._ever_connected = True
        self._connected_event.set()
        if self._on_state_cb is not None:
            self._on_state_cb(True)

    # -- shared subscriptions ------------------------------------------------------------------
    def _check_shared(self, client: paho.Client, properties: Properties | None) -> None:
        """With ``shared_group``: does the broker really share (see the module docstring)?"""
        group = self.cfg.shared_group
        if group is None or self.shared_available is not None:
            return
        if self.v5:
            available = getattr(properties, "SharedSubscriptionAvailable", 1) if properties else 1
            self.shared_available = available != 0
            if not self.shared_available:
                self._shared_unavailable(
                    "the broker's CONNACK says Shared Subscription Available = 0"
                )
            return
        # 3.1.1 cannot say: a probe message through a shared filter (the broker handles our
        # SUBSCRIBE before the PUBLISH that follows it on the same connection)
        generation = self.connects
        _rc, self._probe_mid = client.subscribe(f"{_SHARED_PREFIX}{group}/{self._probe_topic}", 1)
        client.publish(self._probe_topic, b"probe", qos=1)
        timer = threading.Timer(SHARED_PROBE_TIMEOUT, self._probe_expired, (generation,))
        timer.daemon = True
        self._probe_timer = timer
        timer.start()

    def _probe_expired(self, generation: int) -> None:
        if self.shared_available is not None or self._stopping:
            return
        if generation != self.connects or not self._connected:
            return  # the connection was lost meanwhile: probed again on the next connect
        self.shared_available = False
        self._shared_unavailable(
            f"a probe message published on {self._probe_topic!r} did not arrive through "
            f"'{_SHARED_PREFIX}{self.cfg.shared_group}/{self._probe_topic}' within "
            f"{SHARED_PROBE_TIMEOUT:g} s (the broker takes '$share/...' as a literal filter)"
        )

    def _probe_arrived(self) -> None:
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        if self.shared_available is None:
            self.shared_available = True
            log.info("MQTT: shared subscriptions work (probe received)")
        group = self.cfg.shared_group
        self.client.unsubscribe(f"{_SHARED_PREFIX}{group}/{self._probe_topic}")

    def _shared_unavailable(self, reason: str) -> None:
        if self._on_shared_unavailable_cb is not None:
            self._on_shared_unavailable_cb(reason)
        else:
            log.error("MQTT: shared subscriptions unavailable: %s", reason)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was = self._connected
        self._connected = False
        self.ready = False
        self._connected_event.clear()
        if self._stopping:
            log.info("MQTT: disconnected")
        elif was:
            self.reconnects += 1
            self._failed_attempts = 0
            self._down_since = time.monotonic()
            log.warning(
                "MQTT: connection to %s:%d lost (%s); reconnecting",
                self.cfg.host,
                self.cfg.port,
                self._disconnect_cause(reason_code),
            )
        elif self._connack_seen:
            # a refused CONNECT: _on_connect said why
            log.debug("MQTT: connection closed after the refusal (%s)", reason_code)
        else:
            # the socket was open but the broker closed it before any CONNACK: a clean close or
            # a keep-alive timeout may be a 3.1.1-only broker; a socket error (a TLS alert...)
            # says itself what is wrong
            socket_error = self._paho_log.last_error
            self._attempt_failed(
                "MQTT: the broker at %s:%d closed the connection before answering CONNECT (%s)",
                self.cfg.host,
                self.cfg.port,
                self._disconnect_cause(reason_code),
            )
            if socket_error is None:
                self._protocol_hint("closed the connection before answering")
        self._connack_seen = False
        if self._on_state_cb is not None and was:
            self._on_state_cb(False)

    def _disconnect_cause(self, reason_code: ReasonCode) -> str:
        """paho's reason, plus the socket error paho logged for it (see :class:`_PahoLog`)."""
        error = self._paho_log.last_error
        self._paho_log.last_error = None
        return f"{reason_code}; {error}" if error else str(reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self._probe_topic:
            self._probe_arrived()
            return
        try:
            self._on_message_cb(message)
        except Exception:
            log.exception("MQTT: message handler failed for topic %r", message.topic)
            client.ack(message.mid, message.qos)  # never leave it in flight forever


class _PahoLog:
    """The logger paho writes to (its ``enable_logger`` needs only ``log`` and ``isEnabledFor``).

    paho's ERROR lines that only repeat what the gateway says itself become DEBUG: a round of its
    loop without a socket (once per reconnect attempt during an outage) and the socket error of
    a lost connection, which is kept in :attr:`last_error` and named in the gateway's own line
    (one outage, one WARNING; see the module docstring)."""

    _NOISE = ("Client is not connected", "failed to receive on socket", "timeout on socket")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        #: the last socket error paho logged (cleared when a new socket opens)
        self.last_error: str | None = None

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.ERROR and isinstance(msg, str) and msg.startswith(self._NOISE):
            level = logging.DEBUG
            if not msg.startswith("Client is not connected"):
                try:
                    self.last_error = msg % args if args else msg
                except (TypeError, ValueError):
                    self.last_error = msg
        self._logger.log(level, msg, *args, **kwargs)
