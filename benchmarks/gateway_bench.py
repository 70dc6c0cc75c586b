"""One gateway measurement: starts the gateway under test in its own process, drives it with paho
clients from this process, samples its RSS/threads from outside; prints one ``RESULT {json}``.

    python -m benchmarks.gateway_bench --impl ours|bridge --metric m2s|req|s2m \\
        --url http://127.0.0.1:PORT --mqtt-port PORT --n 20000

* ``ours``   -- ``python -m sio_mqtt.cli run -c <generated YAML>``;
* ``bridge`` -- ``python -m benchmarks.naive_bridge`` (python-socketio + paho-mqtt, by hand).

Metrics:

* ``m2s`` -- MQTT -> Socket.IO: a paho publisher publishes N QoS 1 messages on ``bench/in/count``,
  the gateway emits ``count``, the Node server counts them; msgs/s until the count reaches N;
* ``req`` -- a paho MQTT v5 "device" publishes requests on ``bench/req/echo_ack`` (response topic
  + correlation data) one at a time; the gateway emits with an ack to the server's ``echo_ack``
  and publishes the ack as the reply: p50/p99 latency (ms) and round trips/s;
* ``s2m`` -- Socket.IO -> MQTT: the server floods the gateway's socket with N ``tele`` events
  (asked through ``bench/in/flood``); the gateway publishes them QoS 1 on ``bench/out/tele`` to a
  paho subscriber that counts; msgs/s until it has N.

Both gateways are also sampled at idle (after a warm-up) and under load: RSS (MB), OS threads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.common import REPO, Sampler, add_tests_to_path, median, percentile, print_result

add_tests_to_path()
from servers.mqtt_wire import connect_packet, varint  # noqa: E402

HOST = "127.0.0.1"
TIMEOUT = 120.0
TELE = {"id": "sensor-1", "t": 21.5, "ok": True}

GATEWAY_YAML = """\
socketio:
  url: {url}
mqtt:
  host: {host}
  port: {port}
  client_id: bench-gw-{pid}
  clean_start: true
  session_expiry: 0
  base_topic: bench-gw
http:
  enabled: false
logging:
  level: WARNING
mqtt_to_socketio:
  - name: requests
    topic: "bench/req/{{event}}"
    event: "{{event}}"
    qos: 1
    ack: true
    ack_timeout: 5
  - name: events
    topic: "bench/in/{{event}}"
    event: "{{event}}"
    qos: 1
socketio_to_mqtt:
  - name: all-events
    event: "*"
    topic: "bench/out/{{event}}"
    qos: 1
"""


def start_gateway(impl: str, url: str, mqtt_port: int, tmp: Path) -> subprocess.Popen[bytes]:
    if impl == "ours":
        cfg = tmp / "gateway.yaml"
        cfg.write_text(GATEWAY_YAML.format(url=url, host=HOST, port=mqtt_port, pid=os.getpid()))
        prefix = os.environ.get("BENCH_GATEWAY_CMD")  # e.g. a patched entry point to try ideas
        cmd = [*(prefix.split() if prefix else [sys.executable, "-m", "sio_mqtt.cli"])]
        cmd += ["run", "-c", str(cfg)]
    else:
        cmd = [
            sys.executable, "-m", "benchmarks.naive_bridge",
            "--url", url, "--mqtt-host", HOST, "--mqtt-port", str(mqtt_port),
        ]  # fmt: skip
    log = open(tmp / "gateway.log", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        cmd, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )


def paho_client(name: str, v5: bool = True) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-{name}-{os.getpid()}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(0)  # unlimited: the load generator must not be the limit
    client.on_socket_open = _nodelay  # no Nagle delays in the load generators themselves
    return client


def _nodelay(client: Any, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Device:
    """MQTT v5 requester: one request at a time, reply matched by correlation data."""

    def __init__(self, port: int) -> None:
        self.reply_topic = f"bench/reply/dev-{os.getpid()}"
        self.client = paho_client("device")
        self.event = threading.Event()
        self.reply: tuple[bytes, bytes] | None = None
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_subscribe = lambda *a: connected.set()
        self.client.on_connect = lambda c, *a: c.subscribe(self.reply_topic, qos=1)
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("device: no SUBACK")
        self.seq = 0

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        corr = getattr(msg.properties, "CorrelationData", b"") or b""
        self.reply = (corr, msg.payload)
        self.event.set()

    def request(self, event: str, payload: str, timeout: float = 5.0) -> float:
        """One round trip; returns its latency in seconds (raises on timeout/bad reply)."""
        self.seq += 1
        corr = str(self.seq).encode()
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = corr
        self.event.clear()
        self.reply = None
        t0 = time.perf_counter()
        self.client.publish(f"bench/req/{event}", payload, qos=1, properties=props)
        if not self.event.wait(timeout):
            raise TimeoutError("no reply")
        dt = time.perf_counter() - t0
        assert self.reply is not None
        got_corr, body = self.reply
        if got_corr != corr:
            raise RuntimeError(f"reply for {got_corr!r}, expected {corr!r}")
        reply = json.loads(body)
        if reply.get("status") != "ok":
            raise RuntimeError(f"reply {reply}")
        return dt

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Subscriber:
    """Counts QoS 1 messages on one topic; ``done`` is set at the target count."""

    def __init__(self, port: int, topic: str) -> None:
        self.client = paho_client("sub")
        self.count = 0
        self.target = 0
        self.done = threading.Event()
        self.topic = topic
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("subscriber: no SUBACK")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()

    def expect(self, n: int) -> None:
        self.count = 0
        self.target = n
        self.done.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class LeanSubscriber:
    """A minimal MQTT 3.1.1 QoS 1 subscriber on a plain socket (one reader thread; PUBACKs of a
    whole read sent in one write). paho's own receive path tops out around 9-14k msgs/s on a
    2-core machine, below what the gateway sends, so it would measure paho instead of the
    gateway; this one costs a few microseconds per message."""

    def __init__(self, port: int, topic: str) -> None:
        self.count = 0
        self.target = 0
        self.done = threading.Event()
        self.topic = topic.encode()
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(f"bench-lean-{os.getpid()}"))
        sub = b"\x00\x01" + len(self.topic).to_bytes(2, "big") + self.topic + b"\x01"
        self.sock.sendall(b"\x82" + varint(len(sub)) + sub)
        self._buf = b""
        self._subscribed = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="lean-sub", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(10):
            raise RuntimeError("lean subscriber: no SUBACK")

    def _run(self) -> None:
        sock = self.sock
        buf = b""
        topic = self.topic
        while True:
            try:
                data = sock.recv(1 << 18)
            except OSError:
                return
            if not data:
                return
            buf += data
            acks = []
            pos = 0
            end = len(buf)
            while pos + 2 <= end:
                head = buf[pos]
                length, mult, i = 0, 1, pos + 1
                while i < end:
                    b = buf[i]
                    length += (b & 0x7F) * mult
                    mult <<= 7
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    break
                if i + length > end:
                    break
                kind = head >> 4
                if kind == 3:
                    tlen = int.from_bytes(buf[i : i + 2], "big")
                    if head & 0x06:
                        acks.append(b"\x40\x02" + buf[i + 2 + tlen : i + 4 + tlen])
                    if buf[i + 2 : i + 2 + tlen] == topic:
                        self.count += 1
                        if self.count == self.target:
                            self.done.set()
                elif kind == 9:
                    self._subscribed.set()
                pos = i + length
            buf = buf[pos:]
            if acks:
                sock.sendall(b"".join(acks))

    def expect(self, n: int) -> None:
        self.count = 0
        self.target = n
        self.done.clear()

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass


class Publisher:
    """MQTT 3.1.1 QoS 1 publisher with no in-flight limit (broker-side: no receive maximum)."""

    def __init__(self, port: int) -> None:
        self.client = paho_client("pub", v5=False)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: str | bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Monitor:
    """A Socket.IO client reading/resetting the Node server's ``count`` (namespace ``/``)."""

    def __init__(self, url: str) -> None:
        from sio_mqtt import Client

        self.c = Client(url, transports=["websocket"], reconnect=False)
        self.c.connect(timeout=20)

    def reset(self) -> None:
        self.c.call("reset_count", timeout=10)

    def wait_count(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.c.call("get_count", timeout=10) >= n:
                return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self.c.disconnect()


def wait_ready(dev: Device, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with code {proc.returncode}")
        try:
            dev.request("echo_ack", '{"ready": true}', timeout=0.5)
            return
        except (TimeoutError, RuntimeError):
            time.sleep(0.1)
    raise RuntimeError("gateway not ready (no request round trip) in time")


def make_subscriber(args: argparse.Namespace, topic: str) -> Subscriber | LeanSubscriber:
    if args.subscriber == "paho":
        return Subscriber(args.mqtt_port, topic)
    return LeanSubscriber(args.mqtt_port, topic)


def sampled_runs(
    args: argparse.Namespace, sampler: Sampler, timed_run: Callable[[int], float]
) -> dict[str, Any]:
    """A warm-up run, an idle second, then ``args.reps`` timed runs of ``args.n`` in the "load"
    phase; ``timed_run(n)`` returns msgs/s. One sequence, so m2s and s2m sample the gateway's
    RSS/threads at the same points."""
    timed_run(args.warmup)
    idle(sampler)
    sampler.phase = "load"
    runs = [timed_run(args.n) for _ in range(args.reps)]
    sampler.phase = "after"
    return {"unit": "msgs/s", "value": median(runs), "runs": runs}


def run_m2s(args: argparse.Namespace, url: str, sampler: Sampler) -> dict[str, Any]:
    pub = Publisher(args.mqtt_port)
    mon = Monitor(url)
    try:

        def burst(n: int) -> float:
            mon.reset()
            t0 = time.perf_counter()
            for i in range(n):
                pub.publish("bench/in/count", b'{"seq":%d,"t":21.5}' % i)
            if not mon.wait_count(n, TIMEOUT):
                raise RuntimeError(f"the server did not count {n} events in time")
            return n / (time.perf_counter() - t0)

        return sampled_runs(args, sampler, burst)
    finally:
        pub.close()
        mon.close()


def run_s2m(args: argparse.Namespace, url: str, sampler: Sampler) -> dict[str, Any]:
    pub = Publisher(args.mqtt_port)
    sub = make_subscriber(args, "bench/out/tele")
    try:

        def flood(n: int) -> float:
            sub.expect(n)
            t0 = time.perf_counter()
            pub.publish("bench/in/flood", json.dumps({"n": n, "event": "tele", "payload": TELE}))
            if not sub.done.wait(TIMEOUT):
                raise RuntimeError(f"subscriber got {sub.count} of {n} messages in time")
            dt = time.perf_counter() - t0
            time.sleep(0.2)  # flood_done and stragglers
            return n / dt

        return sampled_runs(args, sampler, flood)
    finally:
        pub.close()
        sub.close()


def run_req(args: argparse.Namespace, dev: Device, sampler: Sampler) -> dict[str, Any]:
    for i in range(args.warmup):
        dev.request("echo_ack", f'{{"warm": {i}}}')
    idle(sampler)
    sampler.phase = "load"
    lat: list[float] = []
    t_start = time.perf_counter()
    deadline = t_start + args.max_seconds
    for i in range(args.n):
        lat.append(dev.request("echo_ack", f'{{"seq": {i}, "t": 21.5}}') * 1000)
        if time.perf_counter() > deadline:
            break
    total = time.perf_counter() - t_start
    sampler.phase = "after"
    p50 = percentile(lat, 50)
    return {
        "unit": "ms",
        "latencies_ms": [round(x, 4) for x in lat],
        "total_s": total,
        "value": p50,
        "p50_ms": p50,
        "p99_ms": percentile(lat, 99),
        "mean_ms": sum(lat) / len(lat),
        "rate": len(lat) / total,
        "count": len(lat),
    }


def run_direct(args: argparse.Namespace) -> dict[str, Any]:
    """No gateway: the paho publisher publishes straight to the paho subscriber's topic, QoS 1.
    The ceiling of the load generators themselves on this machine."""
    pub = Publisher(args.mqtt_port)
    sub = make_subscriber(args, "bench/out/tele")
    payload = json.dumps(TELE)
    try:

        def burst(n: int) -> float:
            sub.expect(n)
            t0 = time.perf_counter()
            for _ in range(n):
                pub.publish("bench/out/tele", payload)
            if not sub.done.wait(TIMEOUT):
                raise RuntimeError(f"subscriber got {sub.count} of {n} messages in time")
            return n / (time.perf_counter() - t0)

        burst(args.warmup)
        runs = [burst(args.n) for _ in range(args.reps)]
        return {
            "impl": "direct",
            "subscriber": args.subscriber,
            "metric": args.metric,
            "unit": "msgs/s",
            "value": median(runs),
            "runs": runs,
            "n": args.n,
        }
    finally:
        pub.close()
        sub.close()


def start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy (``pip install py-spy``) sampling every thread of ``pid`` at 200 Hz, GIL-holding
    and idle-excluded, written as collapsed stacks (flamegraph.pl / speedscope input)."""
    exe = Path(sys.executable).with_name("py-spy")
    spy = subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--format", "raw", "-o", out, "-r", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return spy


def idle(sampler: Sampler, seconds: float = 1.0) -> None:
    sampler.phase = "idle"
    time.sleep(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=("ours", "bridge", "direct"), required=True)
    ap.add_argument("--metric", choices=("m2s", "req", "s2m"), required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=5.0, help="req: time cap")
    ap.add_argument(
        "--subscriber", choices=("lean", "paho"), default="lean", help="s2m: the counting client"
    )
    ap.add_argument(
        "--profile", metavar="FILE", help="record the gateway with py-spy (collapsed stacks)"
    )
    ap.add_argument("--keep-log", action="store_true")
    args = ap.parse_args()

    if args.impl == "direct":
        print_result(run_direct(args))
        return
    with tempfile.TemporaryDirectory(prefix="sio-mqtt-bench-") as tmpdir:
        tmp = Path(tmpdir)
        proc = start_gateway(args.impl, args.url, args.mqtt_port, tmp)
        sampler = Sampler(proc.pid).start()
        dev: Device | None = None
        try:
            dev = Device(args.mqtt_port)
            wait_ready(dev, proc)
            spy = start_py_spy(proc.pid, args.profile) if args.profile else None
            if args.metric == "m2s":
                res = run_m2s(args, args.url, sampler)
            elif args.metric == "s2m":
                res = run_s2m(args, args.url, sampler)
            else:
                res = run_req(args, dev, sampler)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with code {proc.returncode}")
        except BaseException:
            sys.stderr.write((tmp / "gateway.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            sampler.stop()
            if dev is not None:
                dev.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        idle_samples = sampler.samples.get("idle", [])
        res.update(
            impl=args.impl,
            metric=args.metric,
            n=args.n,
            rss_idle_mb=round(median([r for r, _ in idle_samples]), 1) if idle_samples else None,
            threads_idle=sampler.threads(["idle"]),
            rss_load_mb=sampler.max_rss(["load"]),
            threads_load=sampler.threads(["load"]),
        )
        if args.keep_log:
            res["log"] = (tmp / "gateway.log").read_text(errors="replace")[-2000:]
        print_result(res)


if __name__ == "__main__":
    main()
