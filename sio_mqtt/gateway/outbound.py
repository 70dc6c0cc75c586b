"""Socket.IO -> MQTT: what one server event becomes (a pure plan).

:func:`plan_event` turns an event (namespace, name, arguments, whether the server asked for an
ack, the device of a device session) and its matching routes into steps: :class:`Publish` (a
plain publish through the outbox), :class:`AskDevice` (the first ``reply: true`` route of an
event with an ack request: published as a request with a reply address, the ack waits for the
device) or :class:`TopicRefusal` (the topic template lacks a value: reported). The gateway
runtime executes them in order; an event with an ack request and no :class:`AskDevice` step is
acked at once, after its publishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sio_mqtt.gateway.routes import SocketioToMqttRoute, TemplateError

__all__ = ["AskDevice", "Publish", "TopicRefusal", "plan_event"]


@dataclass(frozen=True, slots=True)
class Publish:
    route: SocketioToMqttRoute
    topic: str


@dataclass(frozen=True, slots=True)
class AskDevice:
    route: SocketioToMqttRoute
    topic: str


@dataclass(frozen=True, slots=True)
class TopicRefusal:
    route: SocketioToMqttRoute
    reason: str


Step = Publish | AskDevice | TopicRefusal


def plan_event(
    routes: Sequence[SocketioToMqttRoute],
    namespace: str,
    event: str,
    args: Sequence[Any],
    wants_ack: bool,
    device: str | None = None,
) -> list[Step]:
    """One step per route, in route order (see the module docstring)."""
    steps: list[Step] = []
    asking = False
    for route in routes:
        try:
            topic = route.topic_for(namespace, event, args, device)
        except TemplateError as exc:
            steps.append(TopicRefusal(route, str(exc)))
            continue
        if wants_ack and route.reply and not asking:
            asking = True
            steps.append(AskDevice(route, topic))
        else:
            steps.append(Publish(route, topic))
    return steps
