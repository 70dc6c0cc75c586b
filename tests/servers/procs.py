"""Start, stop and restart the real peer servers used by tests and benchmarks.

Self-contained (standard library only), so it can be imported from the test
suite (``from servers.procs import NodeServer``; ``tests/`` is on sys.path via
``tests/conftest.py``) and from benchmarks (put ``<repo>/tests`` on sys.path,
or load this file by path).

All servers bind 127.0.0.1 on a port picked upfront by :func:`free_port`, so
:meth:`ServerProcess.restart` brings the server back on the same port.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

SERVERS_DIR = Path(__file__).resolve().parent
NODE_DIR = SERVERS_DIR / "node"
NODE_SERVER_JS = NODE_DIR / "server.js"
PY_SERVER = SERVERS_DIR / "py_server.py"
AMQTT_BROKER = SERVERS_DIR / "amqtt_broker.py"
MOSQUITTO_BIN = (
    os.environ.get("MOSQUITTO_BIN") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
)

#: mosquitto's dynamic security plugin (shipped with mosquitto 2): ACLs checked at SUBSCRIBE
MOSQUITTO_DYNSEC = os.environ.get("MOSQUITTO_DYNSEC") or next(
    (
        str(p)
        for pattern in (
            "/usr/lib/*/mosquitto_dynamic_security.so",
            "/usr/lib/mosquitto_dynamic_security.so",
            "/usr/local/lib/mosquitto_dynamic_security.so",
            "/opt/homebrew/lib/mosquitto_dynamic_security.so",
        )
        for p in sorted(Path("/").glob(pattern.lstrip("/")))
    ),
    "mosquitto_dynamic_security.so",
)

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
HOST = "127.0.0.1"

_LISTENING_RE = re.compile(r"^LISTENING (\d+)\s*$")

# ports handed out by free_port() in this process: never hand one out twice,
# even after the server on it stopped (a restart must find it still free).
_given_ports: set[int] = set()
_ports_lock = threading.Lock()


_S = TypeVar("_S", bound="ServerProcess")


class ServerStartError(RuntimeError):
    """The server process exited or did not become ready in time."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that is free now and was not handed out before.

    Ports are picked below the kernel's ephemeral range when possible: a client
    that keeps reconnecting to a stopped server on an ephemeral port can end up
    connected to itself (TCP simultaneous open), which breaks restart tests.
    """
    lo, _ = _ephemeral_range()
    rng = random.Random()
    if lo > 12000:
        for _ in range(200):
            port = rng.randrange(10000, lo)
            with _ports_lock:
                if port in _given_ports:
                    continue
            if _bindable(port, host):
                with _ports_lock:
                    _given_ports.add(port)
                return port
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        with _ports_lock:
            if port not in _given_ports:
                _given_ports.add(port)
                return port
    raise RuntimeError("could not find a free port")


def port_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_closed(port: int, host: str = HOST, timeout: float = 5.0) -> bool:
    """Wait until nothing accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(port, host):
            return True
        time.sleep(0.02)
    return False


def node_modules_ok() -> bool:
    return (NODE_DIR / "node_modules" / "socket.io").is_dir()


def make_tls_cert(directory: str | os.PathLike[str], cn: str = HOST) -> dict[str, str]:
    """Write a self-signed cert/key for ``cn`` (IP SAN 127.0.0.1, DNS localhost)
    into ``directory`` with the openssl CLI. Returns ``{"key": path, "cert": path}``,
    ready for ``NodeServer(tls=...)`` / ``PySocketIOServer(tls=...)``; the cert
    file doubles as the CA bundle for clients."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            shutil.which("openssl") or "openssl",
            "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return {"key": str(key), "cert": str(cert)}


def _snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class ServerProcess:
    """A child process serving on a fixed TCP port.

    Readiness: if ``ready_line`` is true, wait for a ``LISTENING <port>`` line
    on stdout (then also check the port accepts TCP); otherwise poll the port.
    stdout/stderr are drained by threads; the last lines are kept for errors.
    """

    name = "server"

    def __init__(
        self,
        cmd: Sequence[str] | None = None,
        port: int | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        ready_line: bool = True,
        start_timeout: float = START_TIMEOUT,
        host: str = HOST,
        scheme: str = "http",
    ) -> None:
        self.port: int = port if port else free_port(host)
        self.host = host
        self.scheme = scheme
        self._cmd = list(cmd) if cmd is not None else None
        self.cwd = cwd
        self.env = env
        self.ready_line = ready_line
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._ready = threading.Event()
        self._listening_port: int | None = None
        self._threads: list[threading.Thread] = []
        self.starts = 0

    # -- overridable -------------------------------------------------------
    def command(self) -> list[str]:
        if self._cmd is None:
            raise NotImplementedError
        return self._cmd

    # -- properties ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def stderr_text(self) -> str:
        return "".join(self._stderr)

    @property
    def stdout_text(self) -> str:
        return "".join(self._stdout)

    # -- lifecycle -----------------------------------------------------------
    def _drain(self, stream: Any, sink: list[str], is_stdout: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            sink.append(line)
            if len(sink) > 500:
                del sink[:100]
            if is_stdout and not self._ready.is_set():
                m = _LISTENING_RE.match(line)
                if m:
                    self._listening_port = int(m.group(1))
                    self._ready.set()
        stream.close()

    def start(self: _S) -> _S:
        if self.running:
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self._stdout.clear()
        self._stderr.clear()
        self._ready.clear()
        self._listening_port = None
        cmd = self.command()
        # a server that has just been killed may leave the port busy very briefly
        deadline = time.monotonic() + self.start_timeout
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.starts += 1
        self._threads = [
            threading.Thread(
                target=self._drain, args=(self.proc.stdout, self._stdout, True), daemon=True
            ),
            threading.Thread(
                target=self._drain, args=(self.proc.stderr, self._stderr, False), daemon=True
            ),
        ]
        for t in self._threads:
            t.start()
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(timeout=1)
                raise ServerStartError(
                    f"{self.name} exited with code {self.proc.returncode} before listening "
                    f"on port {self.port}\ncommand: {self.command()}\n"
                    f"stderr:\n{self.stderr_text}\nstdout:\n{self.stdout_text}"
                )
            if self.ready_line:
                if self._ready.wait(0.02):
                    if self._listening_port != self.port:
                        raise ServerStartError(
                            f"{self.name} listens on {self._listening_port}, expected {self.port}"
                        )
                    if port_open(self.port, self.host):
                        return
            elif port_open(self.port, self.host):
                return
            else:
                time.sleep(0.02)
        raise ServerStartError(
            f"{self.name} not listening on port {self.port} after {self.start_timeout}s\n"
            f"command: {self.command()}\nstderr:\n{self.stderr_text}\n"
            f"stdout:\n{self.stdout_text}"
        )

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            # the server runs in its own session: signal its whole group
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def _reap(self, timeout: float) -> bool:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        for t in self._threads:
            t.join(timeout=1)
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            # a test may have frozen the server with SIGSTOP: let it handle SIGTERM
            self._signal(signal.SIGCONT)
            if not self._reap(timeout):
                self._signal(signal.SIGKILL)
                self._reap(timeout)
        else:
            self._reap(timeout)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL (abrupt crash: no close frames, no FIN ordering guarantees)."""
        if self.proc is None:
            return None
        self._signal(signal.SIGKILL)
        self._reap(STOP_TIMEOUT)
        return self.proc.returncode

    def terminate(self) -> None:
        """Send SIGTERM without waiting."""
        self._signal(signal.SIGTERM)

    def restart(self: _S, *, kill: bool = False, down_time: float = 0.0) -> _S:
        """Stop (or SIGKILL with ``kill=True``), wait ``down_time`` s, start on the same port."""
        if kill:
            self.kill()
        else:
            self.stop()
        if down_time > 0:
            time.sleep(down_time)
        return self.start()

    def __enter__(self: _S) -> _S:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid}>"


class _SocketIOServer(ServerProcess):
    """Common option handling for the Node and Python Socket.IO servers.

    Options may be given snake_case (``ping_interval=500``) or camelCase
    (``pingInterval=500``); they are sent to the server as camelCase JSON.
    Times are in milliseconds.
    """

    def __init__(self, port: int | None = None, **options: Any) -> None:
        self.options: dict[str, Any] = {_snake_to_camel(k): v for k, v in options.items()}
        tls = self.options.get("tls")
        super().__init__(port=port, scheme="https" if tls else "http")

    @property
    def path(self) -> str:
        return str(self.options.get("path") or "/socket.io/")

    @property
    def ws_url(self) -> str:
        return ("wss" if self.scheme == "https" else "ws") + f"://{self.host}:{self.port}"

    def config_json(self) -> str:
        return json.dumps({**self.options, "port": self.port, "host": self.host})


class NodeServer(_SocketIOServer):
    """tests/servers/node/server.js (socket.io 4.8) on a fixed port."""

    name = "node socket.io server"

    def __init__(self, port: int | None = None, **options: Any) -> None:
        super().__init__(port=port, **options)
        self.cwd = str(NODE_DIR)

    def command(self) -> list[str]:
        if not node_modules_ok():
            raise ServerStartError(
                f"{NODE_DIR}/node_modules is missing: run `make test` or `cd {NODE_DIR} && npm ci`"
            )
        node = shutil.which("node") or "node"
        return [node, str(NODE_SERVER_JS), self.config_json()]


class PySocketIOServer(_SocketIOServer):
    """tests/servers/py_server.py (python-socketio AsyncServer + uvicorn) on a fixed port."""

    name = "python-socketio server"

    def command(self) -> list[str]:
        return [sys.executable, str(PY_SERVER), self.config_json()]


class Mosquitto(ServerProcess):
    """A private mosquitto broker on 127.0.0.1:<port> (never the system one on 1883).

    The config file lives in ``self.tmpdir`` (removed by :meth:`cleanup`, called
    by ``__exit__``). ``persistence_dir`` enables persistence there (kept, so a
    restart finds retained messages/sessions); without it persistence is off.
    """

    name = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        config_extra: str = "",
        persistence_dir: str | os.PathLike[str] | None = None,
        *,
        verbose: bool = False,
    ) -> None:
        super().__init__(port=port, ready_line=False, scheme="mqtt")
        self.config_extra = config_extra
        self.persistence_dir = str(persistence_dir) if persistence_dir is not None else None
        self.verbose = verbose
        self.tmpdir = tempfile.mkdtemp(prefix="mosquitto-test-")
        self.config_path = os.path.join(self.tmpdir, "mosquitto.conf")

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # mosquitto 2 drops root privileges to user "mosquitto" by default,
            # which then cannot write the (0700) temp/persistence directories
            lines.append("user root")
        if self.verbose:
            lines += ["log_type notice", "log_type information", "connection_messages true"]
        else:
            lines.append("connection_messages false")
        if self.persistence_dir:
            os.makedirs(self.persistence_dir, exist_ok=True)
            lines += [
                "persistence true",
                f"persistence_location {self.persistence_dir.rstrip('/')}/",
                "persistence_file mosquitto.db",
                # write the db only at shutdown (SIGTERM), not periodically
                "autosave_interval 0",
            ]
        else:
            lines.append("persistence false")
        if self.config_extra:
            lines.append(self.config_extra.strip())
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        with open(self.config_path, "w") as f:
            f.write(self.config_text())
        return [MOSQUITTO_BIN, "-c", self.config_path]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


class Amqtt(ServerProcess):
    """amqtt, an MQTT 3.1.1-only broker (Python, the ``demo`` extra), on 127.0.0.1:<port>: the
    second broker of the tests, for what a broker without MQTT 5 or shared subscriptions does
    (see ``amqtt_broker.py``)."""

    name = "amqtt"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port=port, scheme="mqtt")

    def command(self) -> list[str]:
        return [sys.executable, str(AMQTT_BROKER), str(self.port)]
