"""Fault-injection helpers: sequenced streams, a message-by-message checker, the gateway as a
killable process, MQTT publisher/subscriber, an MQTT packet tap for the TCP proxy.

Every stream message carries ``{"seq": <n>, "stream": <key>, "pad": "..."}``. A
:class:`StreamCheck` is fed every arrival (duplicates included) and judges, per key (an MQTT
topic or a Socket.IO namespace): nothing missing, duplicates counted (at-least-once allows them),
and order kept: the *first* occurrence of each seq must come in increasing order.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from servers.procs import Mosquitto, NodeServer, free_port, node_modules_ok
from servers.tcp_proxy import TcpProxy

from sio_mqtt.socketio.client import Client

_GATEWAY_TESTS = Path(__file__).resolve().parents[1] / "gateway"
if str(_GATEWAY_TESTS) not in sys.path:
    sys.path.insert(0, str(_GATEWAY_TESTS))

from gw_support import REPO, GatewayProc, http_get  # noqa: E402

#: every stream scenario: seqs 0..N-1 on each of NAMESPACES (10,000 messages in all)
N = 5000
NAMESPACES = ("/", "/chat")
#: a scenario injects its fault once this many messages arrived: mid-stream
MID_STREAM = 3000

# ------------------------------------------------------------------------------------------------
# waiting
# ------------------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.02,
) -> None:
    """Poll a condition that has no event to wait on (a file growing, an HTTP endpoint);
    ``what`` (or what it returns, computed at the timeout) describes it in the failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {text}")
        time.sleep(interval)


def ranges(values: Iterable[int], limit: int = 12) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"`` (at most ``limit`` ranges shown)."""
    out: list[str] = []
    vals = sorted(set(values))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    if len(out) > limit:
        return ", ".join(out[:limit]) + f", ... ({len(out) - limit} more ranges)"
    return ", ".join(out)


# ------------------------------------------------------------------------------------------------
# the checker
# ------------------------------------------------------------------------------------------------


@dataclass
class KeyReport:
    key: str
    expected: int
    received: int = 0  # arrivals, duplicates included
    distinct: int = 0
    missing: list[int] = field(default_factory=list)
    duplicates: int = 0  # arrivals of an already seen seq
    out_of_order: list[tuple[int, int]] = field(default_factory=list)  # (seq, after max)
    unexpected: list[int] = field(default_factory=list)  # seq outside 0..n-1

    def problems(self, tolerated_missing: set[int] | None = None) -> list[str]:
        out: list[str] = []
        missing = [s for s in self.missing if not tolerated_missing or s not in tolerated_missing]
        if missing:
            out.append(f"{self.key}: {len(missing)} lost: {ranges(missing)}")
        if self.out_of_order:
            ex = ", ".join(f"{s} after {m}" for s, m in self.out_of_order[:8])
            out.append(f"{self.key}: {len(self.out_of_order)} out of order (first seen): {ex}")
        if self.unexpected:
            out.append(f"{self.key}: unexpected seqs {ranges(self.unexpected)}")
        return out


class StreamCheck:
    """Collects arrivals of seqs 0..n-1 for each key; thread-safe; ``wait_complete`` blocks."""

    def __init__(self, keys: Iterable[str], n: int) -> None:
        self.n = n
        self.keys = list(keys)
        self._seen: dict[str, bytearray] = {k: bytearray(n) for k in self.keys}
        self._distinct: dict[str, int] = dict.fromkeys(self.keys, 0)
        self._received: dict[str, int] = dict.fromkeys(self.keys, 0)
        self._max_first: dict[str, int] = dict.fromkeys(self.keys, -1)
        self._out_of_order: dict[str, list[tuple[int, int]]] = {k: [] for k in self.keys}
        self._unexpected: dict[str, list[int]] = {k: [] for k in self.keys}
        self._cond = threading.Condition()
        self.first_arrival: float | None = None
        self.last_new: float | None = None

    def add(self, key: str, seq: int) -> None:
        with self._cond:
            seen = self._seen.get(key)
            if seen is None:
                self._unexpected.setdefault(key, []).append(seq)
                return
            self._received[key] += 1
            if not 0 <= seq < self.n:
                self._unexpected[key].append(seq)
                return
            now = time.monotonic()
            if self.first_arrival is None:
                self.first_arrival = now
            if seen[seq]:
                return  # a duplicate: counted by received - distinct
            seen[seq] = 1
            self.last_new = now
            self._distinct[key] += 1
            if seq < self._max_first[key]:
                self._out_of_order[key].append((seq, self._max_first[key]))
            else:
                self._max_first[key] = seq
            self._cond.notify_all()

    def distinct(self, key: str | None = None) -> int:
        with self._cond:
            if key is not None:
                return self._distinct[key]
            return sum(self._distinct.values())

    @property
    def total(self) -> int:
        return self.n * len(self.keys)

    def wait_distinct(self, count: int, timeout: float, key: str | None = None) -> bool:
        """Wait until ``count`` distinct seqs arrived (over all keys, or for ``key``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = self._distinct[key] if key is not None else sum(self._distinct.values())
                if got >= count:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def wait_complete(self, timeout: float) -> bool:
        return self.wait_distinct(self.total, timeout)

    def wait_quiet(self, quiet: float, timeout: float) -> None:
        """Wait until no new seq arrived for ``quiet`` seconds (used only to end a stream that
        is allowed to miss messages, i.e. the broker's loss window)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while time.monotonic() < deadline:
                last = self.last_new or 0.0
                left = last + quiet - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def report(self) -> list[KeyReport]:
        with self._cond:
            out = []
            for k in self.keys:
                seen = self._seen[k]
                missing = [i for i in range(self.n) if not seen[i]]
                out.append(
                    KeyReport(
                        key=k,
                        expected=self.n,
                        received=self._received[k],
                        distinct=self._distinct[k],
                        missing=missing,
                        duplicates=self._received[k] - self._distinct[k] - len(self._unexpected[k]),
                        out_of_order=list(self._out_of_order[k]),
                        unexpected=list(self._unexpected[k]),
                    )
                )
            return out

    def summary(self) -> str:
        parts = []
        for r in self.report():
            parts.append(
                f"{r.key}: {r.distinct}/{r.expected} distinct, {r.duplicates} duplicates, "
                f"{len(r.out_of_order)} out of order"
            )
        return "; ".join(parts)

    def assert_ok(
        self, context: str = "", tolerated_missing: dict[str, set[int]] | None = None
    ) -> list[KeyReport]:
        """Fail with every problem found (lost, out of order, unexpected), message by message."""
        reports = self.report()
        problems: list[str] = []
        for r in reports:
            problems += r.problems((tolerated_missing or {}).get(r.key))
        if problems:
            raise AssertionError(
                "stream check failed:\n  " + "\n  ".join(problems) + f"\n{context}".rstrip()
            )
        return reports


def stream_payload(key: str, seq: int, pad: str = "") -> bytes:
    return json.dumps({"seq": seq, "stream": key, "pad": pad}, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------------
# the Node server's durable record
# ------------------------------------------------------------------------------------------------


class RecordTail:
    """Reads the lines the Node server appends to its ``recordFile`` and feeds a StreamCheck
    (key = the namespace); survives server restarts (the file is only appended to)."""

    def __init__(self, path: Path, check: StreamCheck) -> None:
        self.path = path
        self.check = check
        self._offset = 0
        self._partial = b""
        self.lines = 0

    def poll(self) -> int:
        """Read what was appended since the last call; returns the check's distinct count."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.check.distinct()
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            if not line:
                continue
            entry = json.loads(line)
            self.lines += 1
            for arg in entry["args"]:
                if isinstance(arg, dict) and "seq" in arg:
                    self.check.add(entry["nsp"], int(arg["seq"]))
        return self.check.distinct()

    def wait_distinct(self, count: int, timeout: float) -> None:
        """Wait until ``count`` distinct seqs were recorded (a mid-stream mark)."""
        wait_until(
            lambda: self.poll() >= count,
            timeout,
            lambda: f"{count} distinct messages recorded by the server ({self.check.summary()})",
        )

    def wait_complete(self, timeout: float, stall: float | None = None) -> bool:
        """Wait until every seq was recorded, or nothing new came for ``stall`` seconds."""
        return wait_progress(self.check, self.poll, timeout, stall)


#: a stream that makes no progress for this long is over (what is missing is lost)
STALL = 12.0


def wait_progress(
    check: StreamCheck,
    poll: Callable[[], int],
    timeout: float,
    stall: float | None = None,
    target: Callable[[], bool] | None = None,
) -> bool:
    """Poll until ``target()`` (default: every seq arrived); False after ``timeout`` or after
    ``stall`` seconds without a new seq (the check then reports what is missing)."""
    stall = STALL if stall is None else stall
    done = target or (lambda: check.distinct() >= check.total)
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while True:
        count = poll()
        if done():
            return True
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        if now > deadline or now - last_change > stall:
            return False
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------
# MQTT clients
# ------------------------------------------------------------------------------------------------


class Publisher:
    """A paho MQTT 5 client publishing sequenced QoS 1 streams from a background thread."""

    def __init__(self, port: int, client_id: str | None = None, inflight: int = 1000) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connected.wait(10), "publisher could not connect"
        self.published = 0
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._infos: list[paho.MQTTMessageInfo] = []
        self.error: BaseException | None = None

    def start_stream(
        self,
        topics: dict[str, str],
        n: int,
        rate: float = 0.0,
        pad: str = "",
    ) -> None:
        """Publish seq 0..n-1 to every ``topics`` value (key -> topic), interleaved, at ``rate``
        messages per second in total (0 = as fast as paho takes them)."""

        def run() -> None:
            try:
                t0 = time.monotonic()
                items = list(topics.items())
                total = 0
                for seq in range(n):
                    for key, topic in items:
                        info = self.client.publish(topic, stream_payload(key, seq, pad), qos=1)
                        self._infos.append(info)
                        total += 1
                    with self._progress:
                        self.published = total
                        self._progress.notify_all()
                    if rate:
                        ahead = t0 + total / rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)  # pacing, not synchronisation
            except BaseException as exc:  # surfaced by wait_published
                self.error = exc
                with self._progress:
                    self._progress.notify_all()

        self._thread = threading.Thread(target=run, name="fault-publisher", daemon=True)
        self._thread.start()

    def wait_progress(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._progress:
            while self.published < count and self.error is None:
                left = deadline - time.monotonic()
                assert left > 0, f"publisher stuck at {self.published}/{count}"
                self._progress.wait(left)
        assert self.error is None, f"publisher failed: {self.error!r}"

    def wait_published(self, timeout: float = 60.0) -> None:
        """Wait until the stream was handed to the broker and every message PUBACKed."""
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher thread did not finish"
        assert self.error is None, f"publisher failed: {self.error!r}"
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge the stream"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Subscriber:
    """A paho MQTT 5 subscriber with a persistent session (clean_start false, session expiry,
    QoS 1) feeding a StreamCheck (key = topic); re-subscribes on every connect."""

    def __init__(
        self,
        port: int,
        filters: list[str],
        check: StreamCheck,
        client_id: str | None = None,
    ) -> None:
        self.check = check
        self.filters = filters
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self.subscribed = threading.Event()
        self.connects = 0
        self.sessions_present: list[bool] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber could not connect and subscribe"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        self.connects += 1
        self.sessions_present.append(bool(flags.session_present))
        client.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and "seq" in data:
            self.check.add(msg.topic, int(data["seq"]))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------------------
# MQTT tap: what the broker acknowledged to the gateway (for the SIGKILLed broker)
# ------------------------------------------------------------------------------------------------


def _varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("malformed MQTT remaining length")


class _TapConn:
    def __init__(self) -> None:
        self.bufs = {"up": bytearray(), "down": bytearray()}
        self.v5 = True
        self.inflight: dict[int, tuple[str, int]] = {}


class MqttTap:
    """A :class:`~servers.tcp_proxy.TcpProxy` tap between the gateway and the broker that parses
    MQTT: PUBLISH (gateway -> broker, QoS 1) and PUBACK (broker -> gateway). ``acked[topic]`` is
    the set of seqs whose PUBACK was passed on to the gateway: the messages the gateway may
    consider delivered. Every other message it must publish again after a broker crash."""

    def __init__(self) -> None:
        self._conns: dict[int, _TapConn] = {}
        self._lock = threading.Lock()
        self.acked: dict[str, set[int]] = {}
        self.publishes = 0
        self.pubacks = 0

    def __call__(self, conn_id: int, direction: str, data: bytes) -> None:
        with self._lock:
            conn = self._conns.setdefault(conn_id, _TapConn())
            buf = conn.bufs[direction]
            buf += data
            pos = 0
            while True:
                if pos + 2 > len(buf):
                    break
                head = _varint(buf, pos + 1)
                if head is None:
                    break
                length, body = head
                end = body + length
                if end > len(buf):
                    break
                self._packet(conn, direction, buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[body:end]))
                pos = end
            del buf[:pos]

    def _packet(self, conn: _TapConn, direction: str, kind: int, flags: int, body: bytes) -> None:
        if direction == "up" and kind == 1:  # CONNECT: protocol level
            name_len = int.from_bytes(body[0:2], "big")
            conn.v5 = body[2 + name_len] == 5
        elif direction == "up" and kind == 3:  # PUBLISH
            qos = (flags >> 1) & 3
            if qos == 0:
                return
            tlen = int.from_bytes(body[0:2], "big")
            topic = body[2 : 2 + tlen].decode("utf-8", "replace")
            pos = 2 + tlen
            packet_id = int.from_bytes(body[pos : pos + 2], "big")
            pos += 2
            if conn.v5:
                got = _varint(body, pos)
                assert got is not None
                plen, pos = got
                pos += plen
            try:
                seq = int(json.loads(body[pos:])["seq"])
            except (ValueError, KeyError, TypeError):
                return
            conn.inflight[packet_id] = (topic, seq)
            self.publishes += 1
        elif direction == "down" and kind == 4:  # PUBACK
            packet_id = int.from_bytes(body[0:2], "big")
            reason = body[2] if conn.v5 and len(body) > 2 else 0
            item = conn.inflight.pop(packet_id, None)
            if item is not None and reason < 0x80:
                self.acked.setdefault(item[0], set()).add(item[1])
                self.pubacks += 1

    def snapshot(self) -> dict[str, set[int]]:
        with self._lock:
            return {k: set(v) for k, v in self.acked.items()}


# ------------------------------------------------------------------------------------------------
# the gateway process
# ------------------------------------------------------------------------------------------------

#: run the gateway from another source tree (a checkout's root), e.g. to compare versions
GATEWAY_SRC = os.environ.get("SIO_MQTT_FAULTS_SRC") or str(REPO)


class TimedGatewayProc(GatewayProc):
    """GatewayProc (run from :data:`GATEWAY_SRC`) that also keeps each output line's arrival
    time (time.monotonic()): a scenario measures when the gateway noticed a fault."""

    def __init__(self, config_path: Path, http_port: int) -> None:
        self.timed: list[tuple[float, str]] = []  # before the reader threads start
        super().__init__(config_path, http_port, cwd=GATEWAY_SRC)

    def _add_line(self, line: str) -> None:
        super()._add_line(line)
        self.timed.append((time.monotonic(), line))

    def first_line(self, pattern: str, after: float = 0.0) -> tuple[float, str] | None:
        rx = re.compile(pattern)
        for t, line in list(self.timed):
            if t >= after and rx.search(line):
                return t, line
        return None

    def rss_kb(self) -> int | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


class Gateway:
    """The gateway CLI for one scenario: the same config (and so the same MQTT client id and
    outbox file) across kills and restarts; every run's output is kept for failure messages."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.http_port = int(config["http"]["port"])
        self.runs: list[TimedGatewayProc] = []

    @property
    def proc(self) -> TimedGatewayProc:
        return self.runs[-1]

    @property
    def running(self) -> bool:
        return bool(self.runs) and self.proc.proc.poll() is None

    def start(self, wait_ready: bool = True, timeout: float = 20.0) -> TimedGatewayProc:
        path = self.tmp_path / "gateway.yaml"
        path.write_text(json.dumps(self.config, indent=2))
        gw = TimedGatewayProc(path, self.http_port)
        self.runs.append(gw)
        if wait_ready:
            gw.wait_ready(timeout)
        return gw

    def kill(self) -> None:
        """SIGKILL (no shutdown code runs)."""
        self.proc.kill()

    def stop(self) -> None:
        for gw in self.runs:
            if gw.proc.poll() is None:
                try:
                    gw.terminate(15)
                except Exception:
                    gw.kill()

    def metrics(self) -> dict[str, float]:
        """The gateway's Prometheus samples (``name{labels}`` -> value)."""
        try:
            status, body = http_get(self.http_port, "/metrics")
        except OSError:
            return {}
        if status != 200:
            return {}
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def drops(self) -> dict[str, float]:
        return {
            k: v for k, v in self.metrics().items() if k.startswith("sio_mqtt_dropped_total") and v
        }

    def output(self, tail: int = 60) -> str:
        chunks = []
        for i, gw in enumerate(self.runs):
            lines = gw.output.splitlines()[-tail:]
            chunks.append(f"--- gateway run {i + 1} (last {len(lines)} lines) ---")
            chunks += lines
        return "\n".join(chunks)


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread (values in KiB)."""

    def __init__(self, read: Callable[[], int | None], interval: float = 0.1) -> None:
        self._read = read
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self._read()
            if v is not None:
                self.samples.append((time.monotonic(), v))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def peak(self) -> int:
        return max((v for _, v in self.samples), default=0)


class MetricsSampler:
    """Polls the gateway's ``/metrics`` every ``interval`` seconds in a thread and keeps the
    peak of every ``sio_mqtt_queue_depth`` gauge (for failure messages and results)."""

    def __init__(self, gateway: Gateway, interval: float = 0.25) -> None:
        self._gateway = gateway
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, value in self._gateway.metrics().items():
                if name.startswith("sio_mqtt_queue_depth"):
                    queue = name.partition('queue="')[2].rstrip('"}')
                    self.peaks[queue] = max(self.peaks.get(queue, 0.0), value)
            self._stop.wait(self.interval)

    def __enter__(self) -> MetricsSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def text(self) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.peaks.items()))


def gateway_config(
    prefix: str,
    *,
    mqtt_port: int,
    sio_url: str,
    http_port: int,
    tmp_path: Path,
    ack_timeout: float = 2.0,
    retries: int = 10,
    queue: int = 10000,
    outbox: bool = True,
    namespaces: tuple[str, ...] = NAMESPACES,
) -> dict[str, Any]:
    """The scenarios' gateway config: per namespace one ``ack: true`` MQTT -> Socket.IO route
    (``{prefix}/rec/<ns>`` -> event ``record``) and one Socket.IO -> MQTT route (event ``seq``
    -> ``{prefix}/out/<ns>``); a persistent MQTT session; the durable outbox in ``tmp_path``."""
    inbound = []
    outbound = []
    for ns in namespaces:
        tag = ns_tag(ns)
        inbound.append(
            {
                "name": f"rec-{tag}",
                "topic": f"{prefix}/rec/{tag}",
                "namespace": ns,
                "event": "record",
                "ack": True,
                "ack_timeout": ack_timeout,
                "retries": retries,
                "qos": 1,
            }
        )
        outbound.append(
            {
                "name": f"seq-{tag}",
                "event": "seq",
                "namespace": ns,
                "topic": f"{prefix}/out/{tag}",
                "qos": 1,
                "reply": False,
            }
        )
    return {
        "socketio": {
            "url": sio_url,
            "namespaces": list(namespaces),
            "transports": ["websocket"],
            "reconnect": {"delay": 0.1, "delay_max": 0.5, "randomization_factor": 0.1},
            "connect_timeout": 3,
        },
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "protocol": 5,
            "client_id": f"gw-{prefix}",
            "base_topic": f"{prefix}/gw",
            "clean_start": False,
            "session_expiry": 600,
            "keepalive": 5,
        },
        "http": {"enabled": True, "host": "127.0.0.1", "port": http_port},
        "queues": {"mqtt_to_socketio": queue, "socketio_to_mqtt": 20000},
        "outbox": {"enabled": outbox, "path": str(tmp_path / "outbox.sqlite3")},
        "logging": {"level": "INFO"},
        "mqtt_to_socketio": inbound,
        "socketio_to_mqtt": outbound,
    }


def ns_tag(ns: str) -> str:
    return "root" if ns == "/" else ns.strip("/").replace("/", "_")


# ------------------------------------------------------------------------------------------------
# one scenario's world
# ------------------------------------------------------------------------------------------------

#: scenario results for the terminal summary: (test id, text)
RESULTS: list[tuple[str, str]] = []

#: mosquitto: never drop queued QoS 1 messages for a slow or offline session (the default
#: max_queued_messages of 1000 would be the broker's own loss, not the gateway's)
BROKER_EXTRA = "max_queued_messages 0\n"


@dataclass
class RecordStream:
    """An MQTT -> Socket.IO stream: a publisher on the gateway's ``ack: true`` routes
    (``topics``: namespace -> topic) and a StreamCheck fed by the Node server's durable record
    file (key = the namespace), which survives server kills."""

    topics: dict[str, str]
    check: StreamCheck
    tail: RecordTail
    pub: Publisher

    def start(self, rate: float, pad: str = "") -> None:
        """Publish seq 0..N-1 on every namespace's topic, ``rate`` messages per second in all
        (0 = a flood)."""
        self.pub.start_stream(self.topics, N, rate=rate, pad=pad)

    def wait_mid_stream(self) -> None:
        self.tail.wait_distinct(MID_STREAM, timeout=30)

    def finish(self, gw: Gateway) -> int:
        """Wait until every seq was recorded (or the stream stalled), judge the stream message
        by message and that the broker acknowledged every publish; returns the duplicates
        (allowed: delivery is at least once)."""
        complete = self.tail.wait_complete(timeout=60)
        reports = self.check.assert_ok(context=gw.output())
        assert complete
        self.pub.wait_published()
        return sum(r.duplicates for r in reports)


class World:
    """One scenario's processes and clients; :meth:`close` stops them all, newest first."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.tmp_path = tmp_path
        self.name = name
        self.prefix = f"f{uuid.uuid4().hex[:8]}"
        self.record_file = tmp_path / "record.jsonl"
        self.t0 = time.monotonic()
        self._owned: list[Any] = []

    # -- processes ---------------------------------------------------------------------------
    def mosquitto(self, persistent: bool = True) -> Mosquitto:
        broker = Mosquitto(
            config_extra=BROKER_EXTRA,
            persistence_dir=(self.tmp_path / "mosquitto-db") if persistent else None,
        )
        self._owned.append(broker)
        return broker.start()

    def node(self, **options: Any) -> NodeServer:
        if not node_modules_ok():
            raise RuntimeError("tests/servers/node/node_modules is missing: run `make test`")
        options.setdefault("record_file", str(self.record_file))
        options.setdefault("transports", ["websocket"])
        srv = NodeServer(**options)
        self._owned.append(srv)
        return srv.start()

    def proxy(self, upstream_port: int) -> TcpProxy:
        proxy = TcpProxy(upstream_port)
        self._owned.append(proxy)
        return proxy.start()

    def gateway(self, *, mqtt_port: int, sio_url: str, **options: Any) -> Gateway:
        cfg = gateway_config(
            self.prefix,
            mqtt_port=mqtt_port,
            sio_url=sio_url,
            http_port=free_port(),
            tmp_path=self.tmp_path,
            **options,
        )
        gw = Gateway(self.tmp_path, cfg)
        self._owned.append(gw)
        return gw

    def stack(self, **node_options: Any) -> tuple[Mosquitto, NodeServer, Gateway]:
        """The usual line-up: a broker without persistence, the Node server (``node_options``)
        and the gateway between them, started and ready."""
        broker = self.mosquitto(persistent=False)
        node = self.node(**node_options)
        gw = self.gateway(mqtt_port=broker.port, sio_url=node.url)
        gw.start()
        return broker, node, gw

    # -- clients -----------------------------------------------------------------------------
    def publisher(self, port: int) -> Publisher:
        pub = Publisher(port)
        self._owned.append(pub)
        return pub

    def subscriber(self, port: int, filters: list[str], check: StreamCheck) -> Subscriber:
        sub = Subscriber(port, filters, check, client_id=f"sub-{self.prefix}")
        self._owned.append(sub)
        return sub

    def driver(self, url: str, namespaces: tuple[str, ...] = NAMESPACES) -> Client:
        """A Socket.IO client of the test itself (starts server streams, reads records)."""
        client = Client(url, transports=["websocket"], reconnect=False, connect_timeout=5)
        self._owned.append(client)
        client.connect()
        for ns in namespaces[1:]:
            client.socket(ns).connect()
        return client

    # -- streams -----------------------------------------------------------------------------
    def topics(self, kind: str) -> dict[str, str]:
        """Namespace -> the gateway's MQTT topic of ``kind`` (see :func:`gateway_config`):
        ``rec`` (MQTT -> Socket.IO, event ``record``) or ``out`` (Socket.IO -> MQTT, ``seq``)."""
        return {ns: f"{self.prefix}/{kind}/{ns_tag(ns)}" for ns in NAMESPACES}

    def record_stream(self, broker_port: int) -> RecordStream:
        """An MQTT -> Socket.IO stream, not started yet (see :class:`RecordStream`)."""
        check = StreamCheck(NAMESPACES, N)
        tail = RecordTail(self.record_file, check)
        return RecordStream(self.topics("rec"), check, tail, self.publisher(broker_port))

    def broadcast_stream(
        self, broker_port: int, node: NodeServer, gw: Gateway, rate: float
    ) -> tuple[StreamCheck, Subscriber]:
        """A Socket.IO -> MQTT stream: the Node server broadcasts seq 0..N-1 as ``seq`` events
        on every namespace at ``rate`` per second each; a persistent-session subscriber of the
        gateway's ``out`` topics feeds the check (key = the topic). Returns mid-stream."""
        check = StreamCheck(self.topics("out").values(), N)
        sub = self.subscriber(broker_port, [f"{self.prefix}/out/#"], check)
        driver = self.driver(node.url, NAMESPACES)
        for ns in NAMESPACES:
            sock = driver if ns == "/" else driver.socket(ns)
            assert sock.call("stream", {"n": N, "rate": rate, "stream": ns}, timeout=5) is True
        assert check.wait_distinct(MID_STREAM, timeout=30), (
            f"stream did not start: {check.summary()}\n{gw.output()}"
        )
        return check, sub

    # -- reporting ---------------------------------------------------------------------------
    def result(self, text: str) -> None:
        RESULTS.append((self.name, f"{text} [{time.monotonic() - self.t0:.1f} s]"))

    def close(self) -> None:
        for obj in reversed(self._owned):
            try:
                if isinstance(obj, Client):
                    obj.disconnect()
                elif isinstance(obj, (Publisher, Subscriber)):
                    obj.close()
                elif isinstance(obj, Mosquitto):
                    obj.stop()
                    obj.cleanup()
                else:
                    obj.stop()
            except Exception as exc:  # keep stopping the others
                print(f"teardown of {obj!r} failed: {exc!r}", file=sys.stderr)
