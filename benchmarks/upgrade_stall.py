"""Emits made while polling upgrades to websocket: how long their round trips take.

``python -m benchmarks.upgrade_stall [rounds]`` connects a fresh client ``rounds`` times (polling
first, then the upgrade) and, right after each connect, makes ``call("echo_ack")`` round trips
back to back until the client is on websocket. It prints the latencies of the calls that started
before the switch (the ones an upgrade can stall) as one RESULT line. Not part of ``make test``.
"""

from __future__ import annotations

import sys
import time

from benchmarks.common import add_tests_to_path, median, percentile, print_result


def main(rounds: int = 40) -> None:
    add_tests_to_path()
    from servers.procs import NodeServer

    from sio_mqtt import Client

    latencies: list[float] = []
    with NodeServer() as server:
        for _ in range(rounds):
            client = Client(server.url)
            client.connect()
            try:
                while client.transport != "websocket":
                    started = time.perf_counter()
                    client.call("echo_ack", 1, timeout=5)
                    latencies.append((time.perf_counter() - started) * 1000)
            finally:
                client.disconnect()
    print_result(
        {
            "bench": "upgrade_stall",
            "rounds": rounds,
            "calls": len(latencies),
            "median_ms": round(median(latencies), 2),
            "p90_ms": round(percentile(latencies, 90), 2),
            "max_ms": round(max(latencies), 2),
            "over_50ms": sum(1 for v in latencies if v > 50),
        }
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
