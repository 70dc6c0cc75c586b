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
from collections.abc import Callable

import pytest
from fault_support import Gateway, World, wait_progress

pytestmark = pytest.mark.faults

DOWN_TIME = 0.5


def kill_and_restart(gw: Gateway, progress: Callable[[], int]) -> tuple[int, float]:
    """SIGKILL the gateway, leave it dead for DOWN_TIME and start it again (same config);
    returns ``progress()`` at the kill and how long the restarted gateway took to be ready."""
    gw.kill()
    at_kill = progress()
    time.sleep(DOWN_TIME)  # the gateway is dead for a while
    t_up = time.monotonic()
    gw.start(timeout=20)
    return at_kill, time.monotonic() - t_up


def test_gateway_killed_mqtt_to_socketio(world: World) -> None:
    broker, _, gw = world.stack()
    stream = world.record_stream(broker.port)
    stream.start(rate=0)  # a flood: the gateway has a backlog in hand when it dies
    stream.wait_mid_stream()
    at_kill, ready = kill_and_restart(gw, stream.tail.poll)

    dups = stream.finish(gw)
    world.result(
        f"{stream.check.total} msgs, gateway SIGKILLed at {at_kill} recorded, down "
        f"{DOWN_TIME:g} s, ready {ready:.2f} s after the restart, {dups} duplicates"
    )


def test_gateway_killed_socketio_to_mqtt(world: World) -> None:
    broker, node, gw = world.stack(connection_state_recovery=True)
    check, _ = world.broadcast_stream(broker.port, node, gw, rate=1500)

    at_kill, ready = kill_and_restart(gw, check.distinct)

    complete = wait_progress(check, check.distinct, timeout=60)
    reports = check.assert_ok(context=gw.output())
    assert complete
    dups = sum(r.duplicates for r in reports)
    world.result(
        f"{check.total} msgs, gateway SIGKILLed at {at_kill} received, down {DOWN_TIME:g} s, "
        f"ready {ready:.2f} s after the restart, {dups} duplicates"
    )
