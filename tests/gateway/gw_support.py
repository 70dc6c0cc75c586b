"""Gateway end-to-end helpers: the real CLI as a subprocess, and a paho "device".

* :class:`GatewayProc` writes a config to ``tmp_path``, runs ``python -m sio_mqtt.cli run -c ...``
  with an HTTP port from ``free_port()``, waits for ``/readyz`` and stops it with SIGTERM.
* :class:`Device` is a paho client (MQTT 5 or 3.1.1) that records every message on its
  subscriptions and lets a test wait for one (no sleeps).
* :func:`cli_env` and :func:`run_cli`: the environment every CLI run starts from, and a one-shot
  ``python -m sio_mqtt.cli`` run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from servers.procs import Mosquitto, free_port

from sio_mqtt.socketio.client import Client

REPO = Path(__file__).resolve().parents[2]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``SIO_MQTT_*`` variable, plus ``extra``: the
    CLI reads its settings from such variables, and the developer's own must not reach a test's
    gateway (a test passes the ones it means in ``extra``)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIO_MQTT_")}
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m sio_mqtt.cli *args`` to completion (``check``, bad configs), text output."""
    return subprocess.run(
        [sys.executable, "-m", "sio_mqtt.cli", *args],
        cwd=str(REPO),
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


class GatewayProc:
    """``sio-mqtt run`` in a subprocess, with ``env`` (see :func:`cli_env`); ``cwd`` is where
    ``python -m`` imports the package from (another checkout runs another version)."""

    def __init__(
        self,
        config_path: Path,
        http_port: int,
        extra_args: list[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path = REPO,
    ):
        self.config_path = config_path
        self.http_port = http_port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sio_mqtt.cli", "run", "-c", str(config_path)]
            + (extra_args or []),
            cwd=str(cwd),
            env=cli_env({**(env or {}), "PYTHONUNBUFFERED": "1"}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(s,), daemon=True)
            for s in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self._add_line(raw.decode("utf-8", "replace"))
        stream.close()

    def _add_line(self, line: str) -> None:
        """Keep one line of output (called from the reader threads; a subclass adds more)."""
        self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.http_port, path)

    def wait_http(self, path: str, status: int, timeout: float = 15.0) -> bytes:
        """Poll an endpoint until it answers ``status`` (there is no event to wait on)."""
        deadline = time.monotonic() + timeout
        last: tuple[int, bytes] | str = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({self.proc.returncode}):\n{self.output}")
            try:
                last = self.get(path)
                if last[0] == status:
                    return last[1]
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status} (last: {last!r}):\n{self.output}")

    def wait_ready(self, timeout: float = 15.0) -> None:
        self.wait_http("/readyz", 200, timeout)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            for t in self._threads:
                t.join(2)

    def kill(self) -> int:
        self.proc.kill()
        code = self.proc.wait(10)
        for t in self._threads:
            t.join(2)
        return code


class Device:
    """A paho test client that records messages; ``expect()`` waits for the next match."""

    def __init__(
        self,
        port: int,
        protocol: int | str = 5,
        client_id: str | None = None,
        before_connect: Callable[[paho.Client], None] | None = None,
    ):
        self.v5 = protocol == 5
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"dev-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
        )
        if before_connect is not None:  # credentials, TLS: see sec_support.SecureDevice
            before_connect(self.client)
        self.messages: list[paho.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connected.wait(10), "device could not connect"

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def subscribe(self, *filters: str) -> None:
        for flt in filters:
            self._subscribed.clear()
            self.client.subscribe(flt, qos=1)
            assert self._subscribed.wait(10), f"no SUBACK for {flt}"

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> None:
        props = None
        if response_topic is not None or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(10)

    def expect(
        self,
        topic: str,
        where: Callable[[paho.MQTTMessage], bool] | None = None,
        timeout: float = 10.0,
        start: int = 0,
    ) -> paho.MQTTMessage:
        """The first recorded message (from index ``start``) on ``topic`` matching ``where``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages[start:]:
                    if msg.topic == topic and (where is None or where(msg)):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[-15:]]
                    raise AssertionError(f"no message on {topic!r} within {timeout}s; saw {seen}")
                self._cond.wait(left)

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payload_json(msg: paho.MQTTMessage) -> Any:
    return json.loads(msg.payload)


def base_config(
    prefix: str,
    mosquitto_port: int,
    sio_url: str,
    protocol: int | str,
    http_port: int,
) -> dict[str, Any]:
    """A gateway config whose every topic lives under ``prefix`` (one per test)."""
    p = prefix
    return {
        "socketio": {
            "url": sio_url,
            "reconnect": {"delay": 0.2, "delay_max": 1.0, "randomization_factor": 0.1},
            "connect_timeout": 5,
        },
        "mqtt": {
            "host": "127.0.0.1",
            "port": mosquitto_port,
            "protocol": protocol,
            "client_id": f"gw-{p}",
            "base_topic": f"{p}/gw",
            "clean_start": True,
            "keepalive": 10,
        },
        "http": {"enabled": True, "host": "127.0.0.1", "port": http_port},
        "mqtt_to_socketio": [
            {
                "name": "cmd",
                "topic": f"{p}/in/{{event}}",
                "event": "{event}",
                "allow_events": [
                    "echo",
                    "echo_ack",
                    "count",
                    "broadcast",
                    "server_emit_with_ack",
                    "close_transport",
                ],
            },
            {
                "name": "req",
                "topic": f"{p}/req/{{device}}/{{event}}",
                "ack": True,
                "ack_timeout": 1.0,
                "reply_topic": f"{p}/reply/{{device}}/{{event}}",
            },
            {
                "name": "sreq",
                "topic": f"{p}/sreq/{{event}}",
                "ack": True,
                "spread": True,
                "reply_topic": f"{p}/sreply/{{event}}",
            },
            {"name": "json", "topic": f"{p}/json/{{event}}", "payload": "json"},
            {"name": "text", "topic": f"{p}/text/{{event}}", "payload": "text"},
            {"name": "bin", "topic": f"{p}/bin/{{event}}", "payload": "binary"},
            {"name": "spread", "topic": f"{p}/spread/{{event}}", "spread": True},
        ],
        "socketio_to_mqtt": [
            {"name": "echo", "event": "echo", "topic": f"{p}/out/echo", "reply": False},
            {"name": "telemetry", "event": "telemetry", "topic": f"{p}/telemetry/{{arg0.device}}"},
            {"name": "sensors", "event": "sensor.*", "topic": f"{p}/sensor/{{event}}", "qos": 0},
            {
                "name": "ask",
                "event": "ask_device",
                "topic": f"{p}/devices/{{arg0.device}}/ask",
                "reply": True,
                "ack_timeout": 1.5,
            },
            {"name": "ack-result", "event": "client_ack_result", "topic": f"{p}/out/ack_result"},
        ],
    }


class Env:
    """One test's world: a topic prefix, the broker, a device, and gateway starters."""

    def __init__(
        self,
        tmp_path: Path,
        mosquitto: Mosquitto,
        sio_url: str,
        protocol: int | str,
    ) -> None:
        self.tmp_path = tmp_path
        self.mosquitto = mosquitto
        self.protocol = protocol
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.http_port = free_port()
        self.config = base_config(self.prefix, mosquitto.port, sio_url, protocol, self.http_port)
        self.base = f"{self.prefix}/gw"
        self.gateways: list[GatewayProc] = []
        self.devices: list[Device] = []
        self.device = self.new_device()
        self.device.subscribe(f"{self.prefix}/#")

    def new_device(self, protocol: int | str | None = None) -> Device:
        dev = Device(self.mosquitto.port, self.protocol if protocol is None else protocol)
        self.devices.append(dev)
        return dev

    def write_config(self, name: str = "gateway.yaml") -> Path:
        path = self.tmp_path / name
        path.write_text(json.dumps(self.config, indent=2))  # JSON is YAML
        return path

    def start(self, wait_ready: bool = True, extra_args: list[str] | None = None) -> GatewayProc:
        gw = GatewayProc(self.write_config(), self.http_port, extra_args)
        self.gateways.append(gw)
        if wait_ready:
            gw.wait_ready()
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            if gw.proc.poll() is None:
                gw.terminate()
        for dev in self.devices:
            dev.close()


# -- shared by the delivery and broker-limit tests ---------------------------------------------
def metric(gw: Any, name: str, labels: str) -> float | None:
    text = gw.get("/metrics")[1].decode()
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def wait_metric(
    gw: Any, name: str, labels: str, ok: Callable[[float], bool], timeout: float = 15.0
) -> float:
    """Poll /metrics until the sample satisfies ``ok`` (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    last: float | None = None
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            raise AssertionError(f"gateway exited:\n{gw.output}")
        last = metric(gw, name, labels)
        if last is not None and ok(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"{name}{{{labels}}} never satisfied the condition (last {last})")


def broadcast(client: Client, *args: Any) -> None:
    assert client.call("broadcast", {"event": "echo", "args": list(args)}, timeout=10) is True


def use_broker(env: Env, broker: Mosquitto) -> Device:
    """Point the gateway config at ``broker`` and return a device subscribed there."""
    env.config["mqtt"]["port"] = broker.port
    dev = Device(broker.port, env.protocol)
    env.devices.append(dev)
    dev.subscribe(f"{env.prefix}/#")
    return dev


def enable_outbox(env: Env, **extra: Any) -> Path:
    path = env.tmp_path / "outbox.sqlite3"
    env.config["outbox"] = {"enabled": True, "path": str(path), **extra}
    return path
