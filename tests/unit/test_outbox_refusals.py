"""The outbox's refusal policy (pure: a fake publish function stands in for paho/the broker).

A refused publish (MQTT 5 PUBACK >= 0x80) is not a delivery: quota-like refusals go back to the
head of the queue and are handed again after ``retry_delay`` (nothing overtakes them), at most
``retries`` times; other refusals, and a message over the packet size limit, are dropped alone.
The end-to-end tests against mosquitto are in tests/gateway/test_broker_limits.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from support import wait_until

from sio_mqtt.gateway.config import OutboxConfig
from sio_mqtt.gateway.outbox import Outbox, OutMessage


class FakeBroker:
    """Records what the outbox hands over; returns a fresh mid (or a failure reason)."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, int]] = []  # (topic, mid)
        self.too_large: set[str] = set()
        self._mid = 0
        self.lock = threading.Lock()

    def publish(self, msg: OutMessage) -> int | str | None:
        if msg.topic in self.too_large:
            return "too_large"
        with self.lock:
            self._mid += 1
            self.handed.append((msg.topic, self._mid))
            return self._mid

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.handed]

    def mid_of(self, topic: str, nth: int = 0) -> int:
        with self.lock:
            return [m for t, m in self.handed if t == topic][nth]


@pytest.fixture
def rig() -> Iterator[tuple[Outbox, FakeBroker, list[tuple[str, str]]]]:
    broker = FakeBroker()
    dropped: list[tuple[str, str]] = []
    box = Outbox(
        OutboxConfig(),
        broker.publish,
        lambda m, reason: dropped.append((m.topic, reason)),
        window=100,
        retry_delay=0.05,
        retries=2,
    )
    box.open()
    box.set_connected(True)
    box.set_ready()
    yield box, broker, dropped
    box.close()


def add(box: Outbox, topic: str) -> None:
    assert box.add(OutMessage(topic, b"x", 1, False, route="r"))


def test_authorization_refusal_drops_that_message_only(
    rig: tuple[Outbox, FakeBroker, list[tuple[str, str]]],
) -> None:
    box, broker, dropped = rig
    for t in ("a", "b", "c"):
        add(box, t)
    box.refused(broker.mid_of("b"), "not_authorized", False)
    box.acked(broker.mid_of("a"))
    box.acked(broker.mid_of("c"))
    wait_until(lambda: len(box) == 0, what="outbox empty")
    assert dropped == [("b", "refused_not_authorized")]
    assert broker.topics() == ["a", "b", "c"]  # b was not handed again


def test_quota_refusal_is_retried_in_order_then_dropped(
    rig: tuple[Outbox, FakeBroker, list[tuple[str, str]]],
) -> None:
    box, broker, dropped = rig
    add(box, "q")
    box.refused(broker.mid_of("q"), "quota_exceeded", True)
    add(box, "after")  # waits behind the refused one (order holds)
    wait_until(lambda: broker.topics().count("q") == 2, what="q handed again")
    assert broker.topics() == ["q", "q", "after"]
    box.refused(broker.mid_of("q", 1), "quota_exceeded", True)
    wait_until(lambda: broker.topics().count("q") == 3, what="q handed a third time")
    box.refused(broker.mid_of("q", 2), "quota_exceeded", True)  # retries (2) used up
    box.acked(broker.mid_of("after"))
    wait_until(lambda: len(box) == 0, what="outbox empty")
    assert dropped == [("q", "refused_quota_exceeded")]


def test_too_large_is_dropped_when_handed_and_the_rest_flows(
    rig: tuple[Outbox, FakeBroker, list[tuple[str, str]]],
) -> None:
    box, broker, dropped = rig
    broker.too_large.add("big")
    for t in ("a", "big", "c"):
        add(box, t)
    assert dropped == [("big", "too_large")]
    assert broker.topics() == ["a", "c"]
