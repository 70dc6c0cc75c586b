"""Availability: what ``/readyz`` reports and the retained ``{base_topic}/socketio/state`` topic.

``/readyz`` is about the shared Socket.IO connection and MQTT (device sessions have ``/devices``):
both sides connected, and -- listed only while they fail or are being checked -- every
subscription granted and shared subscriptions working. ``{base_topic}/status`` (``online``, Last
Will ``offline``) is kept by :mod:`sio_mqtt.gateway.mqtt`.
"""

from __future__ import annotations

from typing import Any

from sio_mqtt.gateway.mqtt import MqttConnection

__all__ = ["STATE_CONNECTED", "STATE_DISCONNECTED", "Availability"]

STATE_CONNECTED = b"connected"
STATE_DISCONNECTED = b"disconnected"


class Availability:
    """Readiness of both sides and the Socket.IO state topic."""

    def __init__(self, mqtt: MqttConnection, state_topic: str, shared_group: str | None) -> None:
        self._mqtt = mqtt
        self.state_topic = state_topic
        self._shared_group = shared_group

    def readiness(self, socketio_connected: bool) -> dict[str, bool]:
        sides = {"mqtt": self._mqtt.connected, "socketio": socketio_connected}
        if self._mqtt.refused:
            sides["subscriptions"] = False
        if self._shared_group is not None and not self._mqtt.shared_available:
            sides["shared_subscriptions"] = False
        return sides

    def details(self) -> dict[str, Any]:
        """Extra ``/readyz`` fields: the refused subscription filters and why."""
        refused = dict(self._mqtt.refused)
        if not refused:
            return {}
        return {"refused_subscriptions": [{"filter": f, "reason": r} for f, r in refused.items()]}

    def publish_state(self, connected: bool) -> None:
        """``connected`` (every shared namespace connected) or ``disconnected``, retained."""
        self._mqtt.publish(
            self.state_topic,
            STATE_CONNECTED if connected else STATE_DISCONNECTED,
            qos=1,
            retain=True,
        )
