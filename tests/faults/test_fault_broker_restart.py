"""Scenario: mosquitto restarted in the middle of a 10,000 message Socket.IO -> MQTT stream.

The Node server broadcasts sequenced ``seq`` events on two namespaces; the gateway mirrors them
to ``<prefix>/out/<ns>`` (QoS 1); a paho subscriber with a persistent session (clean start off,
session expiry, QoS 1) checks them message by message.

* graceful (SIGTERM, persistence on): the broker keeps the subscriber's session and everything
  it acknowledged, so nothing may be missing;
* SIGKILL: mosquitto's persistence is a snapshot taken at shutdown, so the broker loses what it
  had acknowledged and not yet delivered. That is the broker's loss; what the gateway had *not*
  seen acknowledged it must publish again. The gateway talks to the broker through a TCP proxy
  whose MQTT tap records every PUBACK passed on to the gateway: a missing message is tolerated
  only if the gateway had seen its PUBACK. While the broker is down the proxy refuses the
  gateway until the subscriber has subscribed again (its session died with the broker), so no
  republished message can find a broker without the subscriber.
"""

from __future__ import annotations

import time

import pytest
from fault_support import MqttTap, World, ranges, wait_progress, wait_until

pytestmark = pytest.mark.faults

RATE = 1500  # events per second per namespace
DOWN_TIME = 0.5


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "sigkill"])
def test_broker_restarted_mid_stream(world: World, kill: bool) -> None:
    broker = world.mosquitto(persistent=True)
    tap = MqttTap()
    mproxy = world.proxy(broker.port)
    mproxy.taps.append(tap)
    node = world.node(connection_state_recovery=True)
    gw = world.gateway(mqtt_port=mproxy.port, sio_url=node.url)
    gw.start()
    check, sub = world.broadcast_stream(broker.port, node, gw, rate=RATE)

    tolerated: dict[str, set[int]] = {}
    if kill:
        mproxy.refuse_new = True
        broker.kill()
        at_fault = check.distinct()
        # every PUBACK the gateway could have seen has passed the proxy once its
        # connection to the dead broker is closed
        wait_until(lambda: not mproxy.connections(), 5, "the proxy to drop the dead broker")
        tolerated = tap.snapshot()
        time.sleep(DOWN_TIME)  # the broker is down for a while
        broker.start()
        wait_until(
            lambda: sub.connects >= 2 and sub.subscribed.is_set(),
            15,
            "the subscriber to reconnect and subscribe",
        )
        mproxy.refuse_new = False
    else:
        broker.stop()
        at_fault = check.distinct()
        time.sleep(DOWN_TIME)
        broker.start()
    gw.proc.wait_ready(timeout=15)

    def required_seen() -> bool:
        for r in check.report():
            if any(s not in tolerated.get(r.key, ()) for s in r.missing):
                return False
        return True

    complete = wait_progress(check, check.distinct, timeout=60, target=required_seen)
    reports = check.assert_ok(context=gw.output(), tolerated_missing=tolerated)
    assert complete
    assert not gw.drops(), f"the gateway dropped messages: {gw.drops()}"
    if not kill:
        assert sub.sessions_present[-1], "the broker lost the subscriber's persistent session"
    lost = {r.key: r.missing for r in reports if r.missing}
    dups = sum(r.duplicates for r in reports)
    lost_text = "; ".join(f"{k}: {ranges(v)}" for k, v in lost.items()) or "none"
    world.result(
        f"{check.total} msgs, broker {'SIGKILLed' if kill else 'stopped'} at {at_fault} "
        f"received, down {DOWN_TIME:g} s, {dups} duplicates, lost by the broker after its "
        f"PUBACK: {lost_text}"
    )
