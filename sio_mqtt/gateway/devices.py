"""Device sessions at run time: one Socket.IO :class:`~sio_mqtt.Client` per MQTT device.

:class:`~sio_mqtt.gateway.device_sessions.DeviceTable` decides (pure); this module executes its
actions: it opens a device's client on ``devices.namespace`` with the device's own CONNECT auth,
closes it on the device's Last Will, retries a refused one after the table's backoff and feeds
the clients' outcomes back. Every client runs on the process-wide I/O loop (no thread per
device); the loop's timer heap paces opens (``connect_rate``) and retries. Opening and closing a
client may wait briefly (closing drains its dispatcher), so both run on one worker thread of this
module instead of on the loop or on paho's thread.

The gateway's direction modules ask :meth:`DeviceSessions.plan_message` what to do with a device
message (a socket to emit on, wait for, or a refusal with its reason) and get the server's events
for a device through ``on_event``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from sio_mqtt.engineio.loop import shared_loop
from sio_mqtt.gateway.config import GatewayConfig, device_auth
from sio_mqtt.gateway.device_sessions import (
    Action,
    Close,
    DeviceState,
    DeviceTable,
    Open,
    Partition,
    Refuse,
    SessionPolicy,
)
from sio_mqtt.gateway.routes import TopicPattern
from sio_mqtt.gateway.sessions import session_client
from sio_mqtt.socketio.client import Client
from sio_mqtt.socketio.socket import Socket

__all__ = ["DeviceSessions", "MessagePlan"]

log = logging.getLogger("sio_mqtt.gateway.devices")

_SERVER_DISCONNECT = "io server disconnect"

#: ``on_event(device, event, ack, args)``: the server sent ``event`` to ``device``'s socket
EventFn = Callable[[str, str, Callable[..., None] | None, tuple[Any, ...]], None]
#: ``report(device, kind, reason)``: count, log and publish an error report
ReportFn = Callable[[str, str, str], None]


@dataclass(frozen=True)
class MessagePlan:
    """What to do with one device message on a ``session: device`` route: emit on the
    device's session (``refusal`` None; it may still be connecting: wait for it), or refuse."""

    device: str
    refusal: str | None = None


class DeviceSessions:
    """The device sessions of this replica (thread-safe)."""

    def __init__(
        self,
        config: GatewayConfig,
        registry: CollectorRegistry,
        *,
        on_event: EventFn,
        on_change: Callable[[], None],
        report: ReportFn,
    ) -> None:
        self.config = config
        dcfg = config.devices
        rc = config.socketio.reconnect
        self.namespace = dcfg.namespace
        self.presence = TopicPattern(dcfg.presence.topic)
        assert dcfg.topic is not None  # validated: enabled needs a topic
        self.pattern = TopicPattern(dcfg.topic)
        self._online = dcfg.presence.online.encode()
        self._offline = dcfg.presence.offline.encode()
        self.table = DeviceTable(
            SessionPolicy(
                open_on=dcfg.open_on,
                idle_timeout=dcfg.idle_timeout,
                max_sessions=dcfg.max_sessions,
                connect_rate=dcfg.connect_rate,
                retry_base=max(rc.delay, 0.05),
                retry_max=max(rc.delay_max, rc.delay, 0.05),
                retry_jitter=rc.randomization_factor,
            ),
            Partition(dcfg.partition.index, dcfg.partition.count),
        )
        self._on_event = on_event
        self._on_change = on_change
        self._report = report
        self._lock = threading.RLock()
        self._clients: dict[str, Client] = {}
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._loop = shared_loop()
        self._idle_timer: Any = None

        self._events = Counter(
            "sio_mqtt_device_session_events",
            "Device sessions opened, closed and refused",
            ["outcome"],
            registry=registry,
        )
        gauge = Gauge(
            "sio_mqtt_device_sessions",
            "Device sessions by state",
            ["state"],
            registry=registry,
        )
        for state in DeviceState:
            gauge.labels(state.value).set_function(
                lambda s=state: float(self._counts().get(s, 0))  # type: ignore[misc]
            )

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="sio-mqtt-devices", daemon=True)
        self._worker.start()
        if self.table.policy.idle_timeout > 0:
            self._schedule_idle()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every device session (the server sees each socket disconnect)."""
        with self._lock:
            self._stopping = True
            clients = list(self._clients.values())
            self._clients.clear()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
        for client in clients:
            self._jobs.put(client.disconnect)
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("device session job failed")

    # -- inputs (paho's thread) -----------------------------------------------------------
    def device_of(self, topic: str) -> str | None:
        """The device a topic under ``devices.topic`` belongs to, else None."""
        captures = self.pattern.match(topic)
        return None if captures is None else captures.get("device")

    def owns(self, device: str) -> bool:
        return self.table.owns(device)

    def on_presence(self, topic: str, payload: bytes | bytearray) -> bool:
        """Handle a presence message; False when ``topic`` is not a presence topic."""
        captures = self.presence.match(topic)
        if captures is None:
            return False
        device = captures["device"]
        if not self.table.owns(device):
            return True
        body = bytes(payload).strip()
        now = time.monotonic()
        with self._lock:
            if body == self._online:
                actions = self.table.online(device, now)
            elif body == self._offline:
                actions = self.table.offline(device, now)
            else:
                log.debug("device %s: presence payload is neither online nor offline", device)
                return True
            self._execute(actions, now)
        return True

    def plan_message(self, device: str) -> MessagePlan:
        """A message for ``device`` on a ``session: device`` route (its session may open now)."""
        now = time.monotonic()
        with self._lock:
            actions = self.table.message(device, now)
            # a refusal is reported by the caller, with the route and topic
            self._execute(actions, now, report=False)
        for action in actions:
            if isinstance(action, Refuse):
                return MessagePlan(device, action.reason)
        return MessagePlan(device)

    def traffic(self, device: str) -> None:
        with self._lock:
            self.table.traffic(device, time.monotonic())

    def socket(self, device: str) -> Socket | None:
        """The device's socket when it is connected."""
        with self._lock:
            client = self._clients.get(device)
            if client is None or self.table.state(device) is not DeviceState.CONNECTED:
                return None
            return client

    def state(self, device: str) -> DeviceState | None:
        with self._lock:
            return self.table.state(device)

    def waitable(self, device: str) -> bool:
        """Whether a message for ``device`` may still wait for its session to connect."""
        state = self.state(device)
        return state is DeviceState.CONNECTING and not self._stopping

    # -- views ----------------------------------------------------------------------------
    def _counts(self) -> dict[DeviceState, int]:
        with self._lock:
            return self.table.counts()

    def snapshot(self) -> list[dict[str, Any]]:
        """The ``/devices`` rows: device, state, sid, since (Unix time)."""
        offset = time.time() - time.monotonic()
        with self._lock:
            views = list(self.table.views())
        return [
            {
                "device": v.device,
                "state": v.state.value,
                "sid": v.sid,
                "since": round(v.since + offset, 3),
            }
            for v in views
        ]

    # -- actions --------------------------------------------------------------------------
    def _execute(
        self, actions: list[Action], now: float, *, retry: bool = False, report: bool = True
    ) -> None:
        """Caller holds the lock."""
        for action in actions:
            if isinstance(action, Open):
                self._schedule_open(action.device, max(0.0, action.at - now), retry)
            elif isinstance(action, Close):
                client = self._clients.pop(action.device, None)
                self._events.labels("closed").inc()
                log.info("device %s: closing its session (%s)", action.device, action.reason)
                if client is not None:
                    self._jobs.put(client.disconnect)
            elif isinstance(action, Refuse):
                self._events.labels("refused").inc()
                if report:
                    self._report(action.device, "device", action.reason)

    def _schedule_open(self, device: str, delay: float, retry: bool) -> None:
        def due() -> None:
            self._jobs.put(lambda: self._open(device, retry))

        if delay <= 0:
            due()
        else:
            self._loop.call_later(delay, due)

    def _open(self, device: str, retry: bool) -> None:
        """Worker thread: open ``device``'s session if the table still wants it."""
        now = time.monotonic()
        with self._lock:
            if self._stopping:
                return
            if retry:
                if not self.table.retrying(device, now):
                    return
            elif self.table.state(device) is not DeviceState.CONNECTING:
                return
            client = self._clients.get(device)
            if client is None:
                client = self._client(device)
                self._clients[device] = client
        log.debug("device %s: opening its session", device)
        client.connect(wait=False)

    def _client(self, device: str) -> Client:
        client = session_client(
            self.config.socketio, self.namespace, device_auth(self.config, device)
        )

        def current() -> bool:
            return self._clients.get(device) is client

        def on_connect() -> None:
            with self._lock:
                if not current() or self._stopping:
                    stale = True
                else:
                    stale = False
                    self.table.connected(device, client.sid or "", time.monotonic())
                    if self.table.state(device) is not DeviceState.CONNECTED:
                        stale = True  # closed while connecting
                        self._clients.pop(device, None)
            if stale:
                self._jobs.put(client.disconnect)
                return
            self._events.labels("opened").inc()
            log.info("device %s: session connected (sid %s)", device, client.sid)
            self._on_change()

        def on_disconnect(reason: str) -> None:
            with self._lock:
                if not current():
                    return
                now = time.monotonic()
                if reason == _SERVER_DISCONNECT:
                    self.table.server_closed(device, now)
                    self._clients.pop(device, None)
                    self._events.labels("closed").inc()
                    log.info("device %s: the server closed its session", device)
                    self._jobs.put(client.disconnect)
                else:
                    self.table.lost(device, now)
            self._on_change()

        def on_refused(err: Any) -> None:
            if client.active:
                return  # a failed attempt the client retries itself
            message = getattr(err, "message", None) or str(err)
            with self._lock:
                if not current():
                    return
                now = time.monotonic()
                actions = self.table.refused(device, now)
                self._events.labels("refused").inc()
                self._execute(actions, now, retry=True)
            self._report(device, "device_refused", f"the server refused the session: {message}")
            self._on_change()

        def on_event(event: str, ack: Callable[..., None] | None, *args: Any) -> None:
            self.traffic(device)
            self._on_event(device, event, ack, args)

        client.on("connect", on_connect)
        client.on("disconnect", on_disconnect)
        client.on("connect_error", on_refused)
        client.on("reconnect_failed", lambda: on_refused("reconnection failed"))
        client.on_any(on_event, with_ack=True)
        return client

    def _schedule_idle(self) -> None:
        period = max(0.05, min(1.0, self.table.policy.idle_timeout / 2))

        def tick() -> None:
            now = time.monotonic()
            with self._lock:
                if self._stopping:
                    return
                self._execute(self.table.expire_idle(now), now)
                self._idle_timer = self._loop.call_later(period, tick)

        self._idle_timer = self._loop.call_later(period, tick)
