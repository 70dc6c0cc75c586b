"""Micro-benchmark: stock paho ``Client`` vs ``sio_mqtt.gateway.paho_fast.FastClient`` receiving
QoS 1 messages from a private mosquitto.

    python -m benchmarks.paho_fast_bench [--n 20000] [--rounds 3] [--protocol 5|311|both]
                                         [--ack auto|thread|both] [--payload 40]

For each (protocol, ack mode, implementation) and round: a subscriber (the client under test,
``loop_start``) subscribes QoS 1 to ``bench/fast/<round>``; a separate *process* publishes N QoS 1
messages on it as fast as mosquitto takes them (a raw-socket MQTT 3.1.1 publisher: pre-encoded
packets, PUBACKs drained by a thread, so the publisher is not the limit); msgs/s = N / (time from
the first publish to the N-th message in ``on_message``). Ack modes:

* ``auto``   -- paho acknowledges after ``on_message`` (network thread);
* ``thread`` -- ``manual_ack=True``; ``on_message`` hands ``(mid, qos)`` to a worker thread that
  calls ``client.ack()`` -- what the gateway does.

Implementations alternate within a round (stock, fast, fast, stock...) to spread drift.
Prints a table and one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.common import REPO, add_tests_to_path, print_result
from sio_mqtt.gateway.paho_fast import FAST_OK, FastClient

add_tests_to_path()
from servers.mqtt_wire import connect_packet, publish_packet  # noqa: E402
from servers.procs import Mosquitto  # noqa: E402

HOST = "127.0.0.1"


# -- publisher process ----------------------------------------------------------------------------
def run_publisher(port: int, topic: str, n: int, payload_size: int) -> None:
    """Connect, wait for "go" on stdin, publish N QoS 1 messages, wait for all PUBACKs."""
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"bench-fastpub-{os.getpid()}"))
    if sock.recv(4)[:1] != b"\x20":
        raise RuntimeError("publisher: no CONNACK")
    payload = (b'{"id":"sensor-1","t":21.5,"ok":true,"pad":"' + b"x" * payload_size)[:payload_size]
    t = topic.encode()
    packets = [publish_packet(t, payload, 1, (i % 65535) + 1, v5=False) for i in range(n)]
    acked = threading.Event()

    def drain() -> None:  # PUBACKs are 4 bytes each
        want, got = 4 * n, 0
        while got < want:
            data = sock.recv(1 << 16)
            if not data:
                return
            got += len(data)
        acked.set()

    threading.Thread(target=drain, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    step = 256
    for i in range(0, n, step):
        sock.sendall(b"".join(packets[i : i + step]))
    acked.wait(120)
    sock.sendall(b"\xe0\x00")
    sock.close()


# -- subscriber (in this process) -----------------------------------------------------------------
def measure(impl: str, port: int, protocol: int, ack: str, n: int, payload: int, tag: str) -> float:
    cls: Any = FastClient if impl == "fast" else mqtt.Client
    v5 = protocol == 5
    client = cls(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-fastsub-{impl}-{os.getpid()}-{tag}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        manual_ack=ack == "thread",
    )
    client.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    topic = f"bench/fast/{tag}"
    count = 0
    done = threading.Event()
    subscribed = threading.Event()
    acks: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()

    def acker() -> None:
        while True:
            item = acks.get()
            if item is None:
                return
            client.ack(*item)

    worker = threading.Thread(target=acker, daemon=True)
    if ack == "thread":
        worker.start()

    def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        if ack == "thread":
            acks.put((msg.mid, msg.qos))
        count += 1
        if count == n:
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.connect(HOST, port)
    client.loop_start()
    pub = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.paho_fast_bench", "--role", "publisher",
         "--port", str(port), "--topic", topic, "--n", str(n), "--payload", str(payload)],
        cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        if not subscribed.wait(10):
            raise RuntimeError(f"{impl}: no SUBACK")
        assert pub.stdout is not None and pub.stdin is not None
        if pub.stdout.readline().strip() != "ready":
            raise RuntimeError("publisher did not start")
        t0 = time.perf_counter()
        pub.stdin.write("go\n")
        pub.stdin.flush()
        if not done.wait(120):
            raise RuntimeError(f"{impl}: got {count}/{n} messages")
        dt = time.perf_counter() - t0
        pub.wait(60)
    finally:
        if pub.poll() is None:
            pub.kill()
        acks.put(None)
        client.disconnect()
        client.loop_stop()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["bench", "publisher"], default="bench")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--topic", default="bench/fast")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--payload", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--protocol", choices=["5", "311", "both"], default="both")
    ap.add_argument("--ack", choices=["auto", "thread", "both"], default="both")
    args = ap.parse_args()
    if args.role == "publisher":
        run_publisher(args.port, args.topic, args.n, args.payload)
        return 0
    if not FAST_OK:
        print("warning: paho_fast is disabled for this paho (FastClient == stock paho)")

    protocols = [5, 311] if args.protocol == "both" else [int(args.protocol)]
    ack_modes = ["auto", "thread"] if args.ack == "both" else [args.ack]
    results: dict[str, dict[str, list[float]]] = {}
    with Mosquitto(config_extra="max_queued_messages 0") as broker:
        for protocol in protocols:
            for ack in ack_modes:
                key = f"v{protocol} {ack}-ack"
                res = results.setdefault(key, {"stock": [], "fast": []})
                for r in range(args.rounds):
                    order = ["stock", "fast"] if r % 2 == 0 else ["fast", "stock"]
                    for impl in order:
                        tag = f"{protocol}-{ack}-{r}-{impl}"
                        rate = measure(impl, broker.port, protocol, ack, args.n, args.payload, tag)
                        res[impl].append(rate)
                        print(f"  {key:16} round {r} {impl:5} {rate:10,.0f} msgs/s", flush=True)
    print()
    print(f"QoS 1 receive, N={args.n}, payload {args.payload} B, {args.rounds} rounds (median)")
    print(f"| {'case':16} | {'stock msgs/s':>12} | {'fast msgs/s':>12} | {'fast/stock':>10} |")
    print(f"|{'-' * 18}|{'-' * 14}|{'-' * 14}|{'-' * 12}|")
    summary: dict[str, Any] = {}
    for key, res in results.items():
        s, f = statistics.median(res["stock"]), statistics.median(res["fast"])
        summary[key] = {"stock": s, "fast": f, "ratio": f / s, "runs": res}
        print(f"| {key:16} | {s:12,.0f} | {f:12,.0f} | {f / s:9.2f}x |")
    print_result({"n": args.n, "payload": args.payload, "fast_ok": FAST_OK, "cases": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
