"""Scenario: a network cut between the gateway and the Socket.IO server, mid-stream.

A TCP proxy between them stops forwarding without closing anything (no FIN, no RST: only
silence). The gateway's client must notice by the missing pings within pingInterval +
pingTimeout, reconnect through the proxy once it forwards again, and lose nothing of a 10,000
message MQTT -> Socket.IO stream on ``ack: true`` routes.
"""

from __future__ import annotations

import time

import pytest
from fault_support import World

pytestmark = pytest.mark.faults

PING_INTERVAL_MS = 500
PING_TIMEOUT_MS = 500
#: scheduling slack on this 2-core machine on top of pingInterval + pingTimeout
DETECT_SLACK = 0.4
CUT_SECONDS = 2.0


def test_network_cut_detected_by_ping_timeout_and_nothing_lost(world: World) -> None:
    broker = world.mosquitto(persistent=False)
    node = world.node(ping_interval=PING_INTERVAL_MS, ping_timeout=PING_TIMEOUT_MS)
    proxy = world.proxy(node.port)
    gw = world.gateway(mqtt_port=broker.port, sio_url=f"http://127.0.0.1:{proxy.port}")
    gw.start()
    stream = world.record_stream(broker.port)
    stream.start(rate=4000)

    stream.wait_mid_stream()
    t_cut = time.monotonic()
    proxy.blackhole()

    # the client notices the silence by the missing pings
    limit = (PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000
    deadline = t_cut + limit + 5
    hit = None
    while hit is None and time.monotonic() < deadline:
        # the Engine.IO session's close is the detection; the namespaces' disconnects follow
        hit = gw.proc.first_line(r"closed: ping timeout|disconnected \(ping timeout\)", t_cut)
        if hit is None:
            time.sleep(0.02)
    assert hit is not None, f"no 'ping timeout' disconnect after the cut\n{gw.output()}"
    detected = hit[0] - t_cut
    assert detected <= limit + DETECT_SLACK, (
        f"ping timeout detected after {detected:.2f} s, expected within pingInterval + "
        f"pingTimeout = {limit:.1f} s (+{DETECT_SLACK} s slack)"
    )
    at_cut = stream.check.distinct()
    gw.proc.wait_http("/readyz", 503, timeout=3)  # and reports itself not ready
    accepted = proxy.accepted

    time.sleep(max(0.0, t_cut + CUT_SECONDS - time.monotonic()))  # the cut lasts a while
    t_resume = time.monotonic()
    proxy.resume()
    gw.proc.wait_ready(timeout=15)
    reconnected = time.monotonic() - t_resume
    assert proxy.accepted > accepted, "the gateway did not reconnect through the proxy"

    dups = stream.finish(gw)
    world.result(
        f"{stream.check.total} msgs, ping timeout after {detected:.2f} s (limit {limit:.1f} s), "
        f"cut {CUT_SECONDS:g} s at {at_cut}, reconnected {reconnected:.2f} s after resume, "
        f"{dups} duplicates"
    )
