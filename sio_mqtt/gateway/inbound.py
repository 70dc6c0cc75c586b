"""MQTT -> Socket.IO: what one MQTT message becomes (a pure plan) and the bookkeeping that
carries it to the emit (requests, the broker message they acknowledge, the bounded queue).

:func:`plan_message` turns a message and its matching routes into one :class:`Emit` per route
(event, arguments, reply address, device of a ``session: device`` route) or a :class:`Refusal`
with its reason, without I/O; the gateway runtime (:mod:`sio_mqtt.gateway.bridge`) executes
the plan: emits, waits for acks, publishes replies and acknowledges the MQTT message.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sio_mqtt.gateway.routes import (
    MqttToSocketioRoute,
    PayloadError,
    RouteRefused,
    TemplateError,
)

__all__ = [
    "MESSAGE_ID",
    "Emit",
    "Inbound",
    "Refusal",
    "Request",
    "RequestQueue",
    "plan_message",
    "reply_address",
]

#: the MQTT 5 user property carrying a forwarded message's id (and the key of the id argument
#: appended to Socket.IO events of routes with ``message_id: true``)
MESSAGE_ID = "sio-mqtt-id"


@dataclass(frozen=True, slots=True)
class Emit:
    """Emit ``event`` with ``args`` on the route's session (the device's when ``device``)."""

    route: MqttToSocketioRoute
    event: str
    args: list[Any]
    reply_topic: str | None
    correlation: bytes | None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Nothing is emitted for this route: report ``reason`` (error kind ``kind``) and, for an
    ``ack: true`` route, reply ``error`` on the reply address."""

    route: MqttToSocketioRoute
    kind: str
    reason: str
    event: str | None
    reply_topic: str | None
    correlation: bytes | None


def reply_address(
    route: MqttToSocketioRoute, captures: Mapping[str, str], event: str | None, props: Any
) -> tuple[str | None, bytes | None]:
    """The request's v5 Response Topic + Correlation Data, else the route's reply_topic."""
    correlation: bytes | None = None
    if props is not None:
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if response_topic:
            return str(response_topic), correlation
    try:
        return route.reply_topic_for(captures, event), correlation
    except TemplateError:
        return None, correlation


def publisher_message_id(props: Any) -> str | None:
    """The publisher's ``sio-mqtt-id`` user property (MQTT 5), else None."""
    if props is not None:
        for key, value in getattr(props, "UserProperty", None) or ():
            if key == MESSAGE_ID:
                return str(value)
    return None


def plan_message(
    matches: Sequence[tuple[MqttToSocketioRoute, dict[str, str]]],
    payload: bytes,
    props: Any,
    message_id: Callable[[Any], str] | None = None,
    msg_id_routes: frozenset[str] = frozenset(),
) -> list[Emit | Refusal]:
    """One step per matching route, in route order: an :class:`Emit` or a :class:`Refusal`.

    ``message_id(props)`` gives the id appended for routes in ``msg_id_routes``.
    """
    steps: list[Emit | Refusal] = []
    for route, captures in matches:
        try:
            event = route.event_for(captures)
        except RouteRefused as exc:
            steps.append(_refusal(route, captures, None, props, "refused", exc.reason))
            continue
        try:
            args = route.args_for(payload)
        except PayloadError as exc:
            steps.append(_refusal(route, captures, event, props, "payload", exc.reason))
            continue
        if message_id is not None and route.name in msg_id_routes:
            args = [*args, {MESSAGE_ID: message_id(props)}]
        reply_topic: str | None = None
        correlation: bytes | None = None
        if route.ack:
            reply_topic, correlation = reply_address(route, captures, event, props)
        device = captures["device"] if route.session == "device" else None
        steps.append(Emit(route, event, args, reply_topic, correlation, device))
    return steps


def _refusal(
    route: MqttToSocketioRoute,
    captures: Mapping[str, str],
    event: str | None,
    props: Any,
    kind: str,
    reason: str,
) -> Refusal:
    topic, correlation = (None, None)
    if route.ack:
        topic, correlation = reply_address(route, captures, event, props)
    return Refusal(route, kind, reason, event, topic, correlation)


# ------------------------------------------------------------------------------------------------
# runtime bookkeeping
# ------------------------------------------------------------------------------------------------


class Inbound:
    """An incoming QoS 1/2 MQTT message: acknowledged once all its requests were handed on."""

    __slots__ = ("gen", "mid", "pending", "qos")

    def __init__(self, mid: int, qos: int, gen: int) -> None:
        self.mid = mid
        self.qos = qos
        self.gen = gen
        self.pending = 0


class Request:
    """One MQTT message on its way to Socket.IO (one per matching route)."""

    __slots__ = (
        "args",
        "attempts",
        "correlation",
        "device",
        "event",
        "reply_topic",
        "route",
        "seq",
        "t0",
        "token",
    )

    _counter = itertools.count()  # arrival order (paho's thread makes every request)

    def __init__(
        self,
        route: MqttToSocketioRoute,
        event: str,
        args: list[Any],
        reply_topic: str | None,
        correlation: bytes | None,
        t0: float,
    ) -> None:
        self.route = route
        self.event = event
        self.args = args
        self.reply_topic = reply_topic
        self.correlation = correlation
        self.t0 = t0
        self.attempts = 0
        self.token: Inbound | None = None
        #: ``session: device`` routes: the device whose own session emits it
        self.device: str | None = None
        self.seq = next(Request._counter)


def _arrival(req: Request) -> int:
    return req.seq


class RequestQueue:
    """A bounded FIFO for one consumer that takes everything queued at once (one lock round trip
    per batch instead of per item). ``put`` waits while the queue is full (back-pressure on the
    producer: paho's network thread); ``requeue`` (requests to emit again after a lost
    connection) goes first and ignores the bound (those are already counted in flight)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: collections.deque[Request] = collections.deque()
        self._again: collections.deque[Request] = collections.deque()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._waiting = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items) + len(self._again)

    def put(self, item: Request) -> bool:
        """Queue ``item``, waiting for room; False once the queue is closed."""
        with self._cond:
            while len(self._items) >= self.maxsize and not self._closed:
                self._not_full.wait(0.5)
            if self._closed:
                return False
            self._items.append(item)
            if self._waiting:
                self._cond.notify()
        return True

    def has_retries(self) -> bool:
        return bool(self._again)

    def push_front(self, items: list[Request]) -> None:
        """Put items taken earlier back at the head of the queue, merged with the retries in
        arrival order (retries may keep arriving while the worker holds a batch)."""
        with self._cond:
            merged = sorted([*self._again, *items], key=_arrival)
            self._again.clear()
            self._again.extend(merged)

    def consumer_idle(self) -> bool:
        """True when the consumer waits with nothing queued: the producer may then hand an item
        on itself without overtaking anything (it is the only producer of new items)."""
        with self._cond:
            return self._waiting and not self._items and not self._again and not self._closed

    def requeue(self, item: Request) -> bool:
        """Queue ``item`` to go out again before everything else, in arrival order: requests
        lost with a connection are requeued from several threads at once (the reader cancels
        the in-flight ones while the worker's own emit fails)."""
        with self._cond:
            if self._closed:
                return False
            again = self._again
            if not again or again[-1].seq < item.seq:
                again.append(item)
            else:
                position = bisect.bisect_left([r.seq for r in again], item.seq)
                again.insert(position, item)
            if self._waiting:
                self._cond.notify()
        return True

    def take_all(self) -> list[Request] | None:
        """Everything queued (waiting for at least one item); None once closed and empty."""
        with self._cond:
            while not self._items and not self._again:
                if self._closed:
                    return None
                self._waiting = True
                self._cond.wait()
                self._waiting = False
            items = list(self._again)
            self._again.clear()
            items.extend(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[Request]:
        with self._cond:
            items = list(self._again) + list(self._items)
            self._again.clear()
            self._items.clear()
            return items
