"""Scenario: a Socket.IO server ten times slower than the input.

A publisher floods 10,000 MQTT messages (1 KiB each) as fast as the broker takes them; the Node
server acks ``record`` events at a tenth of that rate (``recordRate``). Back-pressure must hold
the surplus at the broker (unacknowledged) instead of in the gateway: its RSS, sampled from
/proc, stays under a bound, and nothing is dropped, lost or reordered.
"""

from __future__ import annotations

import time

import pytest
from fault_support import MetricsSampler, N, RssSampler, World

pytestmark = pytest.mark.faults

PAD = "p" * 1024
#: acks per second of the slow server; the publisher's flood is >= 10x that (asserted; a slow
#: 2-vCPU machine publishes about 2,600/s here, a fast one 5,000/s and more)
SERVER_RATE = 200
#: allowed RSS growth of the gateway over its idle baseline, in MiB. Holding the whole flood
#: (10,000 x 1 KiB payloads as Python objects, plus the encoded packets) takes well above this.
RSS_BOUND_MIB = 25


def test_slow_server_back_pressure_bounded_memory(world: World) -> None:
    broker = world.mosquitto(persistent=False)
    node = world.node(record_rate=SERVER_RATE)
    gw = world.gateway(mqtt_port=broker.port, sio_url=node.url, ack_timeout=10.0, queue=500)
    gw.start()
    stream = world.record_stream(broker.port)
    baseline = gw.proc.rss_kb()
    assert baseline is not None

    with RssSampler(gw.proc.rss_kb) as rss, MetricsSampler(gw) as queues:
        t0 = time.monotonic()
        stream.start(rate=0, pad=PAD)
        stream.pub.wait_published(timeout=60)
        input_rate = stream.check.total / (time.monotonic() - t0)
        complete = stream.tail.wait_complete(timeout=120)
        elapsed = time.monotonic() - t0

    reports = stream.check.assert_ok(context=gw.output())
    assert complete
    drops = gw.drops()
    assert not drops, f"the gateway dropped messages: {drops}"
    server_rate = stream.check.total / elapsed
    assert input_rate >= 10 * SERVER_RATE, (
        f"the input ({input_rate:.0f}/s) was not 10x faster than the server ({SERVER_RATE}/s)"
    )
    growth_mib = (rss.peak - baseline) / 1024
    assert growth_mib < RSS_BOUND_MIB, (
        f"gateway RSS grew by {growth_mib:.1f} MiB (baseline {baseline / 1024:.1f} MiB, peak "
        f"{rss.peak / 1024:.1f} MiB) while the server was slow; bound {RSS_BOUND_MIB} MiB; "
        f"peak queue depths: {queues.text()}"
    )
    # the server's in-memory record agrees with its file
    driver = world.driver(node.url)
    recorded = driver.call("get_recorded", timeout=10)
    assert {e["args"][0]["seq"] for e in recorded} == set(range(N))
    dups = sum(r.duplicates for r in reports)
    world.result(
        f"{stream.check.total} msgs of 1 KiB, input {input_rate:.0f}/s, server {server_rate:.0f}/s "
        f"(acks limited to {SERVER_RATE}/s), RSS baseline {baseline / 1024:.1f} MiB, peak "
        f"+{growth_mib:.1f} MiB (bound {RSS_BOUND_MIB}), {dups} duplicates, peak queue depths: "
        f"{queues.text()}"
    )
