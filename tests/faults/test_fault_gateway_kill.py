"""Scenario: the gateway itself is SIGKILLed mid-stream and started again (same config: same
MQTT client id and session, same outbox file), in both directions.

* MQTT -> Socket.IO (``ack: true`` routes): the gateway acknowledges a message to the broker
  only after the server acked it, and its MQTT session outlives it (clean start off, session
  expiry), so the broker redelivers whatever the dead gateway had not acknowledged.
* Socket.IO -> MQTT: the server broadcasts with connection-state recovery; events the gateway
  took are in its durable outbox until PUBACK, and the recovery pid/offset persisted with them
  lets the restarted gateway recover what the server broadcast while it was dead.
"""

from __future__ import annotations

import time

import pytest
from fault_support import RecordTail, StreamCheck, World, ns_tag, wait_progress

pytestmark = pytest.mark.faults

N = 5000  # per namespace; two namespaces = 10,000 messages
NAMESPACES = ("/", "/chat")
DOWN_TIME = 0.5


def test_gateway_killed_mqtt_to_socketio(world: World) -> None:
    broker = world.mosquitto(persistent=False)
    node = world.node()
    gw = world.gateway(mqtt_port=broker.port, sio_url=node.url)
    gw.start()
    check = StreamCheck(NAMESPACES, N)
    tail = RecordTail(world.record_file, check)
    pub = world.publisher(broker.port)
    # a flood: the gateway has a backlog in hand when it dies
    pub.start_stream({ns: f"{world.prefix}/rec/{ns_tag(ns)}" for ns in NAMESPACES}, N, rate=0)

    tail.wait_distinct(3000, timeout=30)
    gw.kill()
    at_kill = tail.poll()
    time.sleep(DOWN_TIME)  # the gateway is dead for a while
    t_up = time.monotonic()
    gw.start(timeout=20)
    ready = time.monotonic() - t_up

    complete = tail.wait_complete(timeout=60)
    reports = check.assert_ok(context=gw.output())
    assert complete
    pub.wait_published()
    dups = sum(r.duplicates for r in reports)
    world.result(
        f"{check.total} msgs, gateway SIGKILLed at {at_kill} recorded, down {DOWN_TIME:g} s, "
        f"ready {ready:.2f} s after the restart, {dups} duplicates"
    )


def test_gateway_killed_socketio_to_mqtt(world: World) -> None:
    broker = world.mosquitto(persistent=False)
    node = world.node(connection_state_recovery=True)
    gw = world.gateway(mqtt_port=broker.port, sio_url=node.url)
    gw.start()
    topics = {ns: f"{world.prefix}/out/{ns_tag(ns)}" for ns in NAMESPACES}
    check = StreamCheck(topics.values(), N)
    world.subscriber(broker.port, [f"{world.prefix}/out/#"], check)
    driver = world.driver(node.url, NAMESPACES)
    for ns in NAMESPACES:
        sock = driver if ns == "/" else driver.socket(ns)
        assert sock.call("stream", {"n": N, "rate": 1500, "stream": ns}, timeout=5) is True

    assert check.wait_distinct(3000, timeout=30), (
        f"stream did not start: {check.summary()}\n{gw.output()}"
    )
    gw.kill()
    at_kill = check.distinct()
    time.sleep(DOWN_TIME)
    t_up = time.monotonic()
    gw.start(timeout=20)
    ready = time.monotonic() - t_up

    complete = wait_progress(check, check.distinct, timeout=60)
    reports = check.assert_ok(context=gw.output())
    assert complete
    dups = sum(r.duplicates for r in reports)
    world.result(
        f"{check.total} msgs, gateway SIGKILLed at {at_kill} received, down {DOWN_TIME:g} s, "
        f"ready {ready:.2f} s after the restart, {dups} duplicates"
    )
