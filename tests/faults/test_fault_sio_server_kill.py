"""Scenario: the Socket.IO server is SIGKILLed and restarted in the middle of a 10,000 message
MQTT -> Socket.IO stream on ``ack: true`` routes.

The Node server records every ``record`` event in a file before acking it (``recordFile``), so
the record survives the kill. Every message must be recorded at least once, and per namespace
the first occurrences must come in order; duplicates (acks lost with the server) are allowed.
"""

from __future__ import annotations

import time

import pytest
from fault_support import World

pytestmark = pytest.mark.faults

DOWN_TIME = 1.0


def test_socketio_server_killed_mid_stream_nothing_lost(world: World) -> None:
    broker, node, gw = world.stack()
    stream = world.record_stream(broker.port)
    stream.start(rate=4000)
    stream.wait_mid_stream()
    node.kill()
    at_kill = stream.tail.poll()
    time.sleep(DOWN_TIME)  # the server is down for a while
    node.start()
    t_up = time.monotonic()
    gw.proc.wait_ready(timeout=15)
    reconnected = time.monotonic() - t_up

    dups = stream.finish(gw)
    assert not gw.drops(), f"the gateway dropped messages: {gw.drops()}"
    world.result(
        f"{stream.check.total} msgs, server SIGKILLed at {at_kill} recorded, down "
        f"{DOWN_TIME:g} s, gateway ready {reconnected:.2f} s after the restart, {dups} duplicates"
    )
