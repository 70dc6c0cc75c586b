"""``sio-mqtt demo``: the whole gateway loop on one machine, with nothing but Python.

Run ``make demo`` (or ``sio-mqtt demo``, or ``python -m sio_mqtt.demo``). It starts, each as a child
process in its own process group:

1. an MQTT broker on a free 127.0.0.1 port: ``mosquitto`` from PATH (or ``/usr/sbin/mosquitto``)
   with a temporary config (MQTT 5), else - or with ``--no-mosquitto`` - the pure-Python broker
   ``amqtt`` from the ``demo`` extra (MQTT 3.1.1 only, so the demo then runs the gateway and the
   device with MQTT 3.1.1);
2. a demo Socket.IO server (python-socketio + uvicorn, ``python -m sio_mqtt.demo server``) that
   emits ``telemetry`` events, answers device commands with an ack and asks device ``d1`` a
   question with an ack request (``ask_device``);
3. the gateway, ``sio-mqtt run -c <tmp>.yaml`` with ``demo.yaml`` (package data, next to this
   module) and the chosen ports;

and then (4) a simulated device (a paho-mqtt client in this process) that prints the telemetry it
receives, publishes commands and prints the ack replies on its reply topic, and answers the
server's questions. Every line of traffic is printed, both ways, until Ctrl-C (or ``--duration``);
then every process is stopped (SIGTERM to its process group, SIGKILL after a grace period) and the
temporary files are removed, also after an error.

The pieces are usable on their own (``docker-compose.yml`` runs them under the ``demo`` profile)::

    python -m sio_mqtt.demo server --host 0.0.0.0 --port 3000
    python -m sio_mqtt.demo device --host mosquitto --port 1883
    python -m sio_mqtt.demo broker --port 1883          # amqtt, needs the demo extra
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["DemoError", "gateway_config", "main"]

HOST = "127.0.0.1"
PACKAGE_DIR = Path(__file__).resolve().parent
#: where ``sio_mqtt`` is imported from: the children's PYTHONPATH starts with it
IMPORT_ROOT = PACKAGE_DIR.parents[1]
#: the demo's gateway config: package data (sio_mqtt/demo/demo.yaml), so the demo works from an
#: installed package (``pip install 'sio-mqtt[demo]'``) as well as from a checkout
DEFAULT_CONFIG = PACKAGE_DIR / "demo.yaml"
#: what the demo needs beyond the gateway's own dependencies (the ``demo`` extra)
DEMO_EXTRA_HINT = "pip install 'sio-mqtt[demo]' (from a checkout: pip install '.[demo]')"

# Topics and events of the demo; they must match the routes of demo.yaml.
DEVICE_ID = "d1"
TELEMETRY_DEVICES = ("d1", "d2")
TELEMETRY_FILTER = "demo/telemetry/+"  # socketio_to_mqtt "telemetry": demo/telemetry/{arg0.device}
ASK_TOPIC = "devices/{device}/ask"  # socketio_to_mqtt "ask-device": devices/{arg0.device}/ask
COMMAND_TOPIC = "devices/{device}/cmd/{event}"  # mqtt_to_socketio "device-commands"
REPLY_FILTER = "devices/{device}/reply/+"  # its reply_topic (used without a v5 Response Topic)
INBOX_TOPIC = "demo/{device}/inbox"  # the device's own MQTT v5 Response Topic
COMMANDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("reboot", {"delay": 1}),
    ("get_status", {}),
    ("set_interval", {"seconds": 5}),
)

START_TIMEOUT = 15.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_print_lock = threading.Lock()


class DemoError(Exception):
    """The demo cannot start or a process it started died."""


def say(tag: str, text: str) -> None:
    """Print one line of demo output: ``HH:MM:SS tag     text`` (thread-safe, flushed)."""
    stamp = time.strftime("%H:%M:%S")
    with _print_lock:
        print(f"{stamp} {tag:<7} {text}", flush=True)


def _show(payload: bytes) -> str:
    """A payload for humans: compact JSON when it parses, else text, else a bytes repr."""
    if not payload:
        return "(empty)"
    try:
        return json.dumps(json.loads(payload), ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return repr(payload)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def find_mosquitto() -> str | None:
    """``mosquitto`` from PATH, else ``/usr/sbin/mosquitto`` (Debian), else ``None``."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(path, os.X_OK):
            return path
    return None


def amqtt_available() -> bool:
    try:
        importlib.import_module("amqtt.broker")
    except Exception:
        return False
    return True


def _watch_parent() -> None:
    """Stop this process (SIGTERM to itself) when the process that started it goes away."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


# ------------------------------------------------------------------------------------------------
# child processes
# ------------------------------------------------------------------------------------------------


class Child:
    """A child process in its own process group; its output is relayed line by line."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        formatter: Callable[[str], str | None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.tag = tag  # None: relay lines as they are (our own children print demo lines)
        self.formatter = formatter  # rewrites a line for display; None from it hides the line
        self.proc: subprocess.Popen[str] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Child:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # own process group: Ctrl-C reaches us only; killpg() all
        )
        self._reader = threading.Thread(target=self._relay, name=f"relay-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _relay(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\r\n")
            if not line:
                continue
            if self.formatter is not None:
                shown = self.formatter(line)
                if shown is None:
                    continue
                line = shown
            self.tail.append(line)
            if self.tag is None:
                with _print_lock:
                    print(line, flush=True)
            else:
                say(self.tag, line)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe_exit(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        tail = "\n".join(f"    {line}" for line in self.tail) or "    (no output)"
        return f"{self.name} exited with code {code}; its last output:\n{tail}"

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout`` s; always reaps the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                say("demo", f"{self.name} did not stop in {timeout:g} s: killing it")
        # the leader may be gone while others of its group live on: SIGKILL the group anyway
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self._reader is not None:
            self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _wait_for(
    check: Callable[[], bool], child: Child, what: str, timeout: float, stop: threading.Event
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if stop.is_set():
            raise KeyboardInterrupt
        if check():
            return
        if not child.running():
            raise DemoError(child.describe_exit())
        if time.monotonic() >= deadline:
            raise DemoError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.1)


def _port_open(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def _line_seen(child: Child, text: str) -> Callable[[], bool]:
    return lambda: any(text in line for line in list(child.tail))


def _gateway_line(line: str) -> str | None:
    """The gateway logs JSON lines (--log-format json): show them as ``LEVEL logger: message``."""
    try:
        rec = json.loads(line)
    except ValueError:
        return line
    if not isinstance(rec, dict) or "message" not in rec:
        return line
    level = str(rec.get("level", ""))
    logger = str(rec.get("logger", "")).removeprefix("sio_mqtt.")
    text = f"{level:<7} {logger}: {rec['message']}"
    if rec.get("exc_info"):
        text += "\n" + str(rec["exc_info"])
    return text


def _mosquitto_line(line: str) -> str | None:
    # expected when the demo runs as root (e.g. in a container): not worth a warning here
    return None if "should not be run as root" in line else line


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return check


def _child_env() -> dict[str, str]:
    """The environment for the children: no SIO_MQTT_* overrides (the generated config is the
    whole truth), unbuffered output, and this package importable even when not installed."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIO_MQTT_")}
    env["PYTHONUNBUFFERED"] = "1"
    root = str(IMPORT_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@contextlib.contextmanager
def _without_env_overrides() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith("SIO_MQTT_")}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def mosquitto_config(port: int) -> str:
    lines = [
        "# generated by sio-mqtt demo",
        f"listener {port} {HOST}",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "connection_messages false",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lines.append("user root")  # mosquitto would otherwise switch to user "mosquitto"
    return "\n".join(lines) + "\n"


def gateway_config(
    source: str | os.PathLike[str],
    *,
    socketio_url: str,
    mqtt_port: int,
    http_port: int,
    protocol: int | str | None = None,
    log_level: str | None = None,
) -> dict[str, Any]:
    """``source`` (demo.yaml) with the demo's ports filled in, as a plain mapping."""
    with open(source, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise DemoError(f"{source}: expected a mapping at the top level")
    data.setdefault("socketio", {})["url"] = socketio_url
    mqtt = data.setdefault("mqtt", {})
    mqtt["host"] = HOST
    mqtt["port"] = mqtt_port
    if protocol is not None:
        mqtt["protocol"] = protocol
    http = data.setdefault("http", {})
    http.update(enabled=True, host=HOST, port=http_port)
    if log_level is not None:
        data.setdefault("logging", {})["level"] = log_level
    return data


# ------------------------------------------------------------------------------------------------
# the simulated device
# ------------------------------------------------------------------------------------------------


def _envelope_reply_address(payload: bytes) -> tuple[str | None, Any, Any]:
    """For MQTT 3.1.1 requests: (reply topic, correlation, request body) from a JSON envelope."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, data
    topic = next(
        (
            data[k]
            for k in ("response_topic", "reply_topic", "reply_to")
            if isinstance(data.get(k), str)
        ),
        None,
    )
    corr = next(
        (data[k] for k in ("correlation_data", "correlation", "correlation_id") if k in data), None
    )
    body = next((data[k] for k in ("args", "payload", "data", "request") if k in data), data)
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return topic, corr, body


class Device:
    """A simulated device: paho-mqtt client that prints what it gets and answers requests."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        protocol: int | str = 5,
        device_id: str = DEVICE_ID,
        base_topic: str = "sio-mqtt",
    ) -> None:
        self.v5 = str(protocol) == "5"
        self.device_id = device_id
        self.base_topic = base_topic
        self.host, self.port = host, port
        self.inbox = INBOX_TOPIC.format(device=device_id)
        self.ask_topic = ASK_TOPIC.format(device=device_id)
        self.connected = threading.Event()
        self.started = time.monotonic()
        self._counter = itertools.count(1)
        self._commands = itertools.cycle(COMMANDS)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"demo-device-{device_id}-{os.getpid()}",
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise DemoError(f"device: no connection to the broker at {self.host}:{self.port}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            say("device", f"connection refused: {reason}")
            return
        subs = [
            (TELEMETRY_FILTER, 1),
            (self.ask_topic, 1),
            (REPLY_FILTER.format(device=self.device_id), 1),
            (f"{self.base_topic}/status", 1),
            (f"{self.base_topic}/socketio/state", 1),
            (f"{self.base_topic}/errors", 1),
        ]
        if self.v5:
            subs.append((self.inbox, 1))
        client.subscribe(subs)
        mode = "MQTT 5" if self.v5 else "MQTT 3.1.1"
        say("device", f"{self.device_id} connected to {self.host}:{self.port} ({mode})")
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        payload = bytes(msg.payload)
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        if topic == self.ask_topic:
            self._answer(payload, response_topic, corr)
        elif topic == self.inbox or topic.startswith(f"devices/{self.device_id}/reply/"):
            status = ""
            try:
                status = str(json.loads(payload).get("status", ""))
            except (ValueError, AttributeError, UnicodeDecodeError):
                pass
            extra = f" [correlation {corr.decode(errors='replace')}]" if corr else ""
            say(
                "device",
                f"<- reply on {topic}{extra}: status {status or '?'} {_show(payload)}",
            )
        elif topic.startswith(f"{self.base_topic}/"):
            retained = " (retained)" if msg.retain else ""
            say("device", f"<- {topic}{retained}: {_show(payload)}")
        else:
            say("device", f"<- {topic}: {_show(payload)}")

    def _answer(self, payload: bytes, response_topic: str | None, corr: bytes | None) -> None:
        body: Any = payload
        corr_value: Any = corr
        if response_topic is None:  # MQTT 3.1.1: the reply address travels in the payload
            response_topic, corr_value, body = _envelope_reply_address(payload)
        else:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(payload)
        shown = _dumps(body) if not isinstance(body, bytes) else _show(body)
        say("device", f"<- request on {self.ask_topic}: {shown}")
        if response_topic is None:
            say("device", "   (the request carries no reply address: not answered)")
            return
        answer: dict[str, Any] = {
            "device": self.device_id,
            "battery": random.randint(60, 100),
            "uptime": round(time.monotonic() - self.started),
        }
        # The answer's payload becomes the server's ack arguments (a JSON array would be spread).
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if corr is not None:
                props.CorrelationData = corr  # copying it is optional: the topic is unique
            self.client.publish(response_topic, json.dumps(answer), qos=1, properties=props)
        else:
            self.client.publish(response_topic, json.dumps(answer), qos=1)
        extra = ""
        if corr is not None:
            extra = f" [correlation {corr.decode(errors='replace')}]"
        elif corr_value is not None:
            extra = f" [correlation {corr_value}]"
        say("device", f"-> answer on {response_topic}{extra}: {_dumps(answer)}")

    def send_command(self) -> None:
        """Publish the next command; every other one (MQTT 5) names its own Response Topic."""
        n = next(self._counter)
        event, body = next(self._commands)
        topic = COMMAND_TOPIC.format(device=self.device_id, event=event)
        payload = json.dumps({"device": self.device_id, **body})
        if self.v5 and n % 2 == 1:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = self.inbox
            props.CorrelationData = f"cmd-{n}".encode()
            self.client.publish(topic, payload, qos=1, properties=props)
            how = f"[response topic {self.inbox}, correlation cmd-{n}]"
        else:
            self.client.publish(topic, payload, qos=1)
            how = f"[reply expected on devices/{self.device_id}/reply/{event}]"
        say("device", f"-> {topic}: {payload} {how}")


# ------------------------------------------------------------------------------------------------
# the demo Socket.IO server
# ------------------------------------------------------------------------------------------------


async def _serve(host: str, port: int, interval: float, ask_interval: float) -> None:
    import uvicorn

    socketio: Any = importlib.import_module("socketio")
    sio: Any = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False
    )
    clients: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def ask_loop(sid: str) -> None:
        questions = itertools.cycle(("battery level?", "firmware version?", "are you there?"))
        await asyncio.sleep(min(2.0, ask_interval))
        while sid in clients:
            data = {"device": DEVICE_ID, "question": next(questions)}
            say("server", f"-> ask_device {_dumps(data)} (asks for an ack)")
            try:
                answer = await sio.call("ask_device", data, to=sid, timeout=15)
                say("server", f"<- ack for ask_device: {_dumps(answer)}")
            except socketio.exceptions.TimeoutError:
                say("server", "<- no ack for ask_device within 15 s")
            except Exception as exc:
                say("server", f"ask_device failed: {exc!r}")
            await asyncio.sleep(ask_interval)

    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        clients.add(sid)
        say("server", f"client {sid} connected")
        spawn(ask_loop(sid))

    async def disconnect(sid: str, reason: Any = None) -> None:
        clients.discard(sid)
        say("server", f"client {sid} disconnected")

    def answer(event: str, args: tuple[Any, ...]) -> Any:
        data = args[0] if args and isinstance(args[0], dict) else {}
        if event == "reboot":
            return {"accepted": True, "rebooting_in": data.get("delay", 0)}
        if event == "set_interval":
            return {"accepted": True, "interval": data.get("seconds")}
        if event == "get_status":
            return {"uptime": round(time.monotonic() - started), "clients": len(clients)}
        return {"error": f"unknown command {event!r}"}

    async def any_event(event: str, sid: str, *args: Any) -> Any:
        result = answer(event, args)
        shown = ", ".join(_dumps(a) for a in args) or "(no args)"
        say("server", f"<- {event} {shown}; ack -> {_dumps(result)}")
        return result

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("*", any_event)

    async def telemetry() -> None:
        temps = dict.fromkeys(TELEMETRY_DEVICES, 21.0)
        devices = itertools.cycle(TELEMETRY_DEVICES)
        while True:
            await asyncio.sleep(interval)
            if not clients:
                continue
            dev = next(devices)
            temps[dev] = round(temps[dev] + random.uniform(-0.4, 0.4), 1)
            data = {"device": dev, "temperature": temps[dev]}
            say("server", f"-> telemetry {_dumps(data)}")
            await sio.emit("telemetry", data)

    started = time.monotonic()
    app = socketio.ASGIApp(sio)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    spawn(telemetry())
    say("server", f"demo Socket.IO server on http://{host}:{port}")
    try:
        await server.serve()
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_server(args: argparse.Namespace) -> int:
    if args.exit_with_parent:
        _watch_parent()
    try:
        importlib.import_module("socketio")
        importlib.import_module("uvicorn")
    except ImportError as exc:
        print(
            f"error: the demo server needs python-socketio and uvicorn ({exc}); "
            f"install them with: {DEMO_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 1
    asyncio.run(_serve(args.host, args.port, args.interval, args.ask_interval))
    return 0


# ------------------------------------------------------------------------------------------------
# the pure-Python broker (amqtt)
# ------------------------------------------------------------------------------------------------


async def _run_amqtt(host: str, port: int) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    broker_mod: Any = importlib.import_module("amqtt.broker")
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = broker_mod.Broker(config)
    await broker.start()
    version = getattr(importlib.import_module("amqtt"), "__version__", "?")
    say("broker", f"amqtt {version} (MQTT 3.1.1) on {host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def run_broker(args: argparse.Namespace) -> int:
    if args.exit_with_parent:
        _watch_parent()
    if not amqtt_available():
        print(
            "error: the pure-Python broker needs amqtt: pip install 'sio-mqtt[demo]'",
            file=sys.stderr,
        )
        return 1
    asyncio.run(_run_amqtt(args.host, args.port))
    return 0


# ------------------------------------------------------------------------------------------------
# device only (e.g. under docker compose)
# ------------------------------------------------------------------------------------------------


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    old: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return old

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, on_signal)
    return old


def _restore_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def run_device(args: argparse.Namespace) -> int:
    stop = threading.Event()
    old = _install_stop_handlers(stop)
    device = Device(args.host, args.port, protocol=args.protocol, base_topic=args.base_topic)
    try:
        deadline = time.monotonic() + START_TIMEOUT * 4
        while True:  # the broker may still be starting (compose)
            try:
                device.start()
                break
            except DemoError:
                if stop.is_set() or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        while not stop.wait(args.command_interval):
            device.send_command()
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        device.stop()
        _restore_handlers(old)
    return 0


# ------------------------------------------------------------------------------------------------
# the whole demo
# ------------------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    config_path = Path(args.config) if args.config else DEFAULT_CONFIG
    if not config_path.is_file():
        where = "" if args.config else " (package data missing: reinstall sio-mqtt)"
        print(f"error: demo config {config_path} not found{where}", file=sys.stderr)
        return 2
    needed = {"socketio": "python-socketio", "uvicorn": "uvicorn"}  # module -> distribution
    missing = [dist for mod, dist in needed.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print(
            f"error: the demo's Socket.IO server needs {' and '.join(missing)} (the demo extra): "
            f"install it with\n  {DEMO_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 2
    mosquitto = None if args.no_mosquitto else find_mosquitto()
    if mosquitto is None and not amqtt_available():
        why = "--no-mosquitto given" if args.no_mosquitto else "mosquitto is not installed"
        print(
            f"error: {why} and the pure-Python broker (amqtt) is missing: install it with\n"
            f"  {DEMO_EXTRA_HINT}\n  (or install mosquitto: sudo apt-get install mosquitto)",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()
    old_handlers = _install_stop_handlers(stop)
    children: list[Child] = []
    device: Device | None = None
    tmpdir = tempfile.mkdtemp(prefix="sio-mqtt-demo-")
    env = _child_env()
    py = sys.executable
    code = 0
    try:
        # 1. the broker
        mqtt_port = free_port()
        if mosquitto is not None:
            conf = Path(tmpdir, "mosquitto.conf")
            conf.write_text(mosquitto_config(mqtt_port), encoding="utf-8")
            broker = Child(
                "broker",
                [mosquitto, "-c", str(conf)],
                env=env,
                tag="broker",
                formatter=_mosquitto_line,
            )
            broker_ready = _port_open(HOST, mqtt_port)
            protocol: int | str | None = None  # mosquitto speaks 5 and 3.1.1: as in the config
            broker_desc = f"mosquitto ({mosquitto})"
        else:
            argv = [py, "-m", "sio_mqtt.demo", "broker", "--port", str(mqtt_port)]
            broker = Child("broker", [*argv, "--exit-with-parent"], env=env)
            broker_ready = _line_seen(broker, f"on {HOST}:{mqtt_port}")  # no probe: amqtt logs it
            protocol = "3.1.1"  # amqtt speaks MQTT 3.1.1 only
            broker_desc = "amqtt (pure Python, MQTT 3.1.1)"
        children.append(broker.start())
        say("demo", f"broker: {broker_desc} on {HOST}:{mqtt_port} (pid {broker.pid})")
        _wait_for(broker_ready, broker, "the broker", START_TIMEOUT, stop)

        # 2. the Socket.IO server
        sio_port = free_port()
        server = Child(
            "server",
            [
                py,
                "-m",
                "sio_mqtt.demo",
                "server",
                "--port",
                str(sio_port),
                "--interval",
                str(args.telemetry_interval),
                "--ask-interval",
                str(args.ask_interval),
                "--exit-with-parent",
            ],
            env=env,
        )
        children.append(server.start())
        say("demo", f"Socket.IO server: http://{HOST}:{sio_port} (pid {server.pid})")
        _wait_for(_port_open(HOST, sio_port), server, "the Socket.IO server", START_TIMEOUT, stop)

        # 3. the gateway's configuration: demo.yaml (or --config) with the chosen ports
        http_port = free_port()
        data = gateway_config(
            config_path,
            socketio_url=f"http://{HOST}:{sio_port}",
            mqtt_port=mqtt_port,
            http_port=http_port,
            protocol=protocol,
            log_level=args.gateway_log_level,
        )
        gw_conf = Path(tmpdir, "gateway.yaml")
        header = f"# generated by sio-mqtt demo from {config_path}\n"
        gw_conf.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        from sio_mqtt.gateway.config import ConfigError, config_from_mapping

        try:
            with _without_env_overrides():
                cfg = config_from_mapping(data, str(config_path))
        except ConfigError as exc:
            for line in exc.errors:
                print(f"error: {line}", file=sys.stderr)
            return 2

        # 4. the device (before the gateway, so it sees the gateway come online)
        device = Device(HOST, mqtt_port, protocol=cfg.mqtt.protocol, base_topic=cfg.mqtt.base_topic)
        device.start()

        # 5. the gateway
        gateway = Child(
            "gateway",
            [py, "-m", "sio_mqtt.cli", "run", "-c", str(gw_conf), "--log-format", "json"],
            env=env,
            cwd=tmpdir,
            tag="gateway",
            formatter=_gateway_line,
        )
        children.append(gateway.start())
        say("demo", f"gateway config: {config_path} with the ports above")
        say("demo", f"gateway: sio-mqtt run -c {gw_conf} (pid {gateway.pid})")
        ready_url = f"http://{HOST}:{http_port}/readyz"
        _wait_for(_http_ok(ready_url), gateway, "the gateway", READY_TIMEOUT, stop)
        say("demo", f"gateway ready ({ready_url}); metrics on http://{HOST}:{http_port}/metrics")
        if args.duration:
            say("demo", f"running for {args.duration:g} s")
        else:
            say("demo", "running: press Ctrl-C to stop")

        deadline = time.monotonic() + args.duration if args.duration else None
        next_command = time.monotonic() + 0.5
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            for child in children:
                if not child.running():
                    raise DemoError(child.describe_exit())
            if now >= next_command:
                device.send_command()
                next_command = now + args.command_interval
            stop.wait(0.1)
        if stop.is_set():
            say("demo", "stopping (signal received)")
    except KeyboardInterrupt:
        say("demo", "stopping (interrupted during start-up)")
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if device is not None:
            device.stop()
        for child in reversed(children):  # gateway first (it publishes "offline"), broker last
            try:
                child.stop()
            except Exception as exc:  # keep stopping the others
                print(f"error: stopping {child.name}: {exc!r}", file=sys.stderr, flush=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
        _restore_handlers(old_handlers)
        pids = ", ".join(str(c.pid) for c in children if c.proc is not None)
        say("demo", f"stopped; every process it started has ended (pids {pids or 'none'})")
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sio-mqtt demo",
        description=(
            "Run the gateway end to end locally: an MQTT broker, a demo Socket.IO server, the "
            "gateway (the packaged demo.yaml) and a simulated device, printing the traffic until "
            "Ctrl-C."
        ),
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="stop after SECONDS once everything runs"
    )
    parser.add_argument(
        "--no-mosquitto", action="store_true", help="use the pure-Python broker (amqtt)"
    )
    parser.add_argument(
        "--config", help=f"gateway config to start from (default: {DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--gateway-log-level", default="INFO", help="the gateway's log level (default INFO)"
    )
    parser.add_argument("--telemetry-interval", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--command-interval", type=float, default=4.0, metavar="SECONDS")
    parser.add_argument("--ask-interval", type=float, default=6.0, metavar="SECONDS")
    sub = parser.add_subparsers(dest="command", metavar="{server,device,broker}")

    srv = sub.add_parser("server", help="run only the demo Socket.IO server")
    srv.add_argument("--host", default=HOST)
    srv.add_argument("--port", type=int, default=3000)
    srv.add_argument("--interval", type=float, default=2.0, help="seconds between telemetry")
    srv.add_argument("--ask-interval", type=float, default=6.0, help="seconds between questions")
    srv.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)

    dev = sub.add_parser("device", help="run only the simulated device")
    dev.add_argument("--host", default=HOST)
    dev.add_argument("--port", type=int, default=1883)
    dev.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    dev.add_argument("--base-topic", default="sio-mqtt")
    dev.add_argument("--command-interval", type=float, default=4.0)

    brk = sub.add_parser("broker", help="run only the pure-Python MQTT broker (amqtt)")
    brk.add_argument("--host", default=HOST)
    brk.add_argument("--port", type=int, default=1883)
    brk.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sio-mqtt demo`` / ``python -m sio_mqtt.demo``; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "server":
        return run_server(args)
    if args.command == "device":
        return run_device(args)
    if args.command == "broker":
        return run_broker(args)
    return run_demo(args)
