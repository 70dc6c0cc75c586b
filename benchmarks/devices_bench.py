"""Device sessions: N simulated devices through one gateway; prints one ``RESULT {json}`` line.

    python -m benchmarks.devices_bench --n 10000

A fresh Node test server and mosquitto; ``sio-mqtt run`` with ``devices.enabled`` (connect_rate
high) in a subprocess; one MQTT client publishes N birth messages. Figures:

* ``connect_s``: the first birth published -> the server counts N device sockets (polled every
  50 ms through its control API); ``js_connect_s``: socket.io-client's time to connect N
  sessions in one Node process in the same run (``benchmarks/many_sessions.js``);
* ``broadcast_s``: the server broadcasts one event to the device namespace -> a subscriber got
  the N MQTT messages it becomes;
* ``rss_mb`` and ``threads`` of the gateway process with N devices, ``threads_10`` with 10;
* ``req_p50_ms`` / ``req_p99_ms``: MQTT request -> the device's socket -> server ack -> MQTT reply
  of one device, one at a time, while the N sessions are open.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import print_result
from benchmarks.many_sessions import HERE, NODE_DIR, STEADY, raise_nofile

REPO = HERE.parent
PREFIX = "bench"


def _proc_status(pid: int) -> tuple[float, int]:
    rss, threads = 0.0, 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def _wait(pred: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def _js_connect(url: str, n: int) -> float | None:
    env = dict(os.environ, NODE_PATH=str(NODE_DIR / "node_modules"))
    out = subprocess.run(
        ["node", str(HERE / "many_sessions.js"), url, str(n), "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[7:])["connect_s"])
    return None


def run(n: int, requests: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests"))
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from servers.procs import Mosquitto, NodeServer, free_port

    from sio_mqtt.socketio.client import Client

    with NodeServer() as node, Mosquitto(config_extra="max_queued_messages 0") as broker:
        http_port = free_port()
        cfg = {
            "socketio": {"url": node.url, "transports": ["websocket"], "connect_timeout": 60},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "client_id": "gw-devbench",
                "base_topic": f"{PREFIX}/gw",
            },
            "http": {"enabled": True, "host": "127.0.0.1", "port": http_port},
            "queues": {"mqtt_to_socketio": 20_000, "socketio_to_mqtt": 20_000},
            "devices": {
                "enabled": True,
                "topic": f"{PREFIX}/dev/{{device}}/#",
                "presence": {"topic": f"{PREFIX}/dev/{{device}}/status"},
                "connect_rate": 100_000,
                "max_sessions": n + 10,
            },
            "mqtt_to_socketio": [
                {
                    "name": "cmd",
                    "session": "device",
                    "topic": f"{PREFIX}/dev/{{device}}/cmd/{{event}}",
                    "ack": True,
                    "reply_topic": f"{PREFIX}/dev/{{device}}/reply/{{event}}",
                }
            ],
            "socketio_to_mqtt": [
                {
                    "name": "out",
                    "session": "device",
                    "event": "*",
                    "reply": False,
                    "topic": f"{PREFIX}/dev/{{device}}/out/{{event}}",
                    "qos": 0,
                }
            ],
        }
        tmp = Path(tempfile.mkdtemp(prefix="devbench-"))
        path = tmp / "gw.yaml"
        path.write_text(json.dumps(cfg))
        gw = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sio_mqtt.cli",
                "run",
                "-c",
                str(path),
                "--log-level",
                "WARNING",
            ],
            cwd=str(REPO),
            env={k: v for k, v in os.environ.items() if not k.startswith("SIO_MQTT_")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ctl = Client(node.url, transports=["websocket"])
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="devbench-pub")
        got = {"out": 0, "reply": 0}
        cond = threading.Condition()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with cond:
                got["reply" if "/reply/" in msg.topic else "out"] += 1
                cond.notify_all()

        pub.on_message = on_message
        try:

            def ready() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                        return True
                except OSError:
                    return False

            _wait(ready, 30, "the gateway")
            ctl.connect()
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            pub.subscribe(f"{PREFIX}/dev/+/out/#", qos=0)
            pub.subscribe(f"{PREFIX}/dev/+/reply/#", qos=0)
            time.sleep(0.5)  # SUBACKs (nothing to await on paho without a callback dance)

            def count() -> int:
                value: int = ctl.call("devices_count", timeout=30)
                return value

            def births(names: range) -> None:
                for i in names:
                    pub.publish(f"{PREFIX}/dev/b{i}/status", "online", qos=1)

            births(range(10))
            _wait(lambda: count() >= 10, 60, "10 device sockets")
            time.sleep(STEADY)
            _, threads_10 = _proc_status(gw.pid)
            t0 = time.monotonic()
            births(range(10, n))
            _wait(lambda: count() >= n, 900, f"{n} device sockets")
            connect_s = time.monotonic() - t0
            time.sleep(STEADY)  # steady state, as for 10 devices
            rss, threads = _proc_status(gw.pid)
            # broadcast to the namespace -> N MQTT messages
            t1 = time.monotonic()
            assert ctl.call("devices_broadcast", {"event": "bcast", "args": [1]}, timeout=30)
            with cond:
                ok = cond.wait_for(lambda: got["out"] >= n, 300)
            broadcast_s = time.monotonic() - t1 if ok else None
            # request -> ack -> reply of one device, one at a time
            lat: list[float] = []
            for _ in range(requests):
                before = got["reply"]
                t = time.perf_counter()
                pub.publish(f"{PREFIX}/dev/b0/cmd/ping", "1", qos=0)
                with cond:
                    if not cond.wait_for(lambda b=before: got["reply"] > b, 10):
                        break
                lat.append((time.perf_counter() - t) * 1000)
        finally:
            pub.loop_stop()
            ctl.disconnect()
            gw.terminate()
            try:
                gw.wait(30)
            except subprocess.TimeoutExpired:
                gw.kill()
        js = _js_connect(node.url, n)
    lat.sort()
    return {
        "n": n,
        "connect_s": round(connect_s, 3),
        "js_connect_s": None if js is None else round(js, 3),
        "broadcast_s": None if broadcast_s is None else round(broadcast_s, 3),
        "rss_mb": round(rss, 1),
        "threads": threads,
        "threads_10": threads_10,
        "req_p50_ms": round(statistics.median(lat), 3) if lat else None,
        "req_p99_ms": round(lat[int(len(lat) * 0.99) - 1], 3) if len(lat) >= 100 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    raise_nofile()
    print_result(run(args.n, args.requests))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
