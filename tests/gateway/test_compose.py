"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Static checks (services, images, mounts, profiles, the healthcheck's port, the non-root user) and
then the gateway's compose command run natively: the mounted config (``./config`` -> ``/config``)
against a local mosquitto and the demo Socket.IO server, with environment overrides for the
addresses that only exist inside compose, until ``/readyz`` answers 200 - and the healthcheck's
own command, run natively against that port, succeeds.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers.procs import Mosquitto, free_port

from sio_mqtt.gateway.config import GatewayConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    svc = compose["services"][name]
    assert isinstance(svc, dict)
    return svc


def as_list(value: Any) -> list[str]:
    """A compose command/entrypoint/test: a list, or a string split like a shell."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def bind_mounts(svc: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Container path -> (host path, mode) of the service's bind mounts (short syntax)."""
    mounts: dict[str, tuple[Path, str]] = {}
    for vol in svc.get("volumes", []):
        assert isinstance(vol, str), "use the short volume syntax"
        parts = vol.split(":")
        host, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else "rw"
        if host.startswith((".", "/")):
            mounts[target] = ((ROOT / host).resolve(), mode)
    return mounts


def to_host_path(arg: str, mounts: dict[str, tuple[Path, str]]) -> str:
    for target, (host, _) in mounts.items():
        if arg == target or arg.startswith(target.rstrip("/") + "/"):
            return str(host) + arg[len(target.rstrip("/")) :]
    return arg


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # a JSON array is valid YAML
    assert isinstance(value, list), f"use the exec form (JSON array), got {args!r}"
    return [str(v) for v in value]


def gateway_argv(compose: dict[str, Any]) -> list[str]:
    """The gateway container's command line (entrypoint + command) with host paths."""
    gw = service(compose, "gateway")
    instr = dockerfile_instructions()
    entrypoint = as_list(gw.get("entrypoint")) or exec_form(
        [a for w, a in instr if w == "ENTRYPOINT"][-1]
    )
    command = as_list(gw.get("command")) or exec_form([a for w, a in instr if w == "CMD"][-1])
    mounts = bind_mounts(gw)
    return [*entrypoint, *(to_host_path(a, mounts) for a in command)]


def config_path(compose: dict[str, Any]) -> Path:
    argv = gateway_argv(compose)
    assert "-c" in argv, argv
    return Path(argv[argv.index("-c") + 1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIO_MQTT_")}
    env.update(extra)
    return env


def healthcheck_url(compose: dict[str, Any]) -> urllib.parse.SplitResult:
    test = as_list(service(compose, "gateway")["healthcheck"]["test"])
    urls: list[str] = re.findall(r"https?://[^\s'\"]+", " ".join(test))
    assert len(urls) == 1, test
    return urllib.parse.urlsplit(urls[0])


def resolved_config(compose: dict[str, Any]) -> GatewayConfig:
    """The mounted config as the container sees it (its compose `environment` applied)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(clean_env(**environment(service(compose, "gateway"))))
        return load_config(config_path(compose))
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------------------------------------
# static checks
# ---------------------------------------------------------------------------------------------


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mosquitto", "gateway", "demo-server"} <= set(services)
    # the broker and the gateway always run; the example server only with --profile demo
    assert not services["mosquitto"].get("profiles")
    assert not services["gateway"].get("profiles")
    assert services["demo-server"]["profiles"] == ["demo"]
    for name, svc in services.items():
        if name not in ("mosquitto", "gateway"):
            assert svc.get("profiles") == ["demo"], name
    # a service that always runs must not depend on one of the demo profile
    for name in ("mosquitto", "gateway"):
        deps = services[name].get("depends_on") or []
        for dep in deps:
            assert not services[dep].get("profiles"), (name, dep)


def test_mosquitto_service(compose: dict[str, Any]) -> None:
    mosq = service(compose, "mosquitto")
    assert str(mosq["image"]).startswith("eclipse-mosquitto:2")
    mounts = bind_mounts(mosq)
    host, mode = mounts["/mosquitto/config/mosquitto.conf"]
    assert host == ROOT / "config" / "mosquitto.conf"
    assert host.is_file()
    assert mode == "ro"
    # the persistence directory named in mosquitto.conf is a volume the broker can write
    conf = host.read_text(encoding="utf-8")
    location = re.search(r"^persistence_location\s+(\S+)", conf, re.M)
    assert location is not None
    targets = [str(v).split(":")[1].rstrip("/") for v in mosq.get("volumes", [])]
    assert location.group(1).rstrip("/") in targets
    assert location.group(1).rstrip("/") in " ".join(as_list(mosq.get("command")))
    assert re.search(r"^listener\s+1883\s*$", conf, re.M)


def test_gateway_service_mounts_config_and_uses_the_image(compose: dict[str, Any]) -> None:
    gw = service(compose, "gateway")
    build = gw["build"]
    build = {"context": build} if isinstance(build, str) else build
    assert (ROOT / build.get("context", ".")).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    host, mode = bind_mounts(gw)["/config"]
    assert host == ROOT / "config"
    assert mode == "ro"
    argv = gateway_argv(compose)
    assert argv[0] == "sio-mqtt"
    assert argv[1] == "run"
    assert config_path(compose) == ROOT / "config" / "compose.yaml"
    deps = gw.get("depends_on") or []
    assert "mosquitto" in deps


def test_compose_config_passes_check(compose: dict[str, Any]) -> None:
    """`sio-mqtt check` on the mounted config (the compose host names need no resolving)."""
    path = config_path(compose)
    res = subprocess.run(
        [sys.executable, "-m", "sio_mqtt.cli", "check", "-c", str(path)],
        cwd=ROOT,
        env=clean_env(**environment(service(compose, "gateway"))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{path}: OK" in res.stdout


def test_compose_config_points_at_the_compose_services(compose: dict[str, Any]) -> None:
    cfg = resolved_config(compose)
    services = compose["services"]
    assert cfg.mqtt.host == "mosquitto" and cfg.mqtt.host in services
    url = urllib.parse.urlsplit(cfg.socketio.url)
    assert url.hostname == "demo-server" and url.hostname in services
    server_cmd = as_list(services["demo-server"]["command"])
    assert server_cmd[0] == "server"
    assert server_cmd[server_cmd.index("--port") + 1] == str(url.port)
    assert server_cmd[server_cmd.index("--host") + 1] == "0.0.0.0"
    assert as_list(services["demo-server"]["entrypoint"]) == ["python", "-m", "sio_mqtt.demo"]
    # reachable from the healthcheck (inside the container) and the published port
    assert cfg.http.enabled
    assert cfg.http.host == "0.0.0.0"


def test_compose_routes_match_the_demo_config(compose: dict[str, Any]) -> None:
    """The demo profile's device and server speak sio_mqtt/demo/demo.yaml's routes."""
    demo = load_config(ROOT / "sio_mqtt" / "demo" / "demo.yaml")
    cfg = resolved_config(compose)
    assert [r.model_dump() for r in cfg.socketio_to_mqtt] == [
        r.model_dump() for r in demo.socketio_to_mqtt
    ]
    assert [r.model_dump() for r in cfg.mqtt_to_socketio] == [
        r.model_dump() for r in demo.mqtt_to_socketio
    ]
    assert cfg.mqtt.base_topic == demo.mqtt.base_topic


def test_healthcheck_hits_the_configured_http_port(compose: dict[str, Any]) -> None:
    hc = service(compose, "gateway")["healthcheck"]
    test = as_list(hc["test"])
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "curl" not in test and "wget" not in test  # not in python:*-slim
    url = healthcheck_url(compose)
    cfg = resolved_config(compose)
    assert url.path == "/readyz"
    assert url.hostname in ("127.0.0.1", "localhost")
    assert url.port == cfg.http.port
    published = [str(p) for p in service(compose, "gateway").get("ports", [])]
    assert all(p.rsplit(":", 1)[-1] == str(cfg.http.port) for p in published), published


def test_dockerfile_runs_as_non_root() -> None:
    instr = dockerfile_instructions()
    froms = [a for w, a in instr if w == "FROM"]
    assert froms and re.match(r"python:3\.11-slim", froms[-1].split()[0]), froms
    last_from = max(i for i, (w, _) in enumerate(instr) if w == "FROM")
    users = [a for w, a in instr[last_from:] if w == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    assert exec_form([a for w, a in instr if w == "ENTRYPOINT"][-1]) == ["sio-mqtt"]
    assert exec_form([a for w, a in instr if w == "CMD"][-1]) == [
        "run",
        "-c",
        "/config/gateway.yaml",
    ]
    # the files the image copies exist in the build context
    for word, args in instr:
        if word == "COPY" and not args.startswith("--from"):
            sources = exec_form(args)[:-1] if args.startswith("[") else args.split()[:-1]
            for src in sources:
                if not src.startswith("--"):
                    assert (ROOT / src).exists(), f"COPY source {src} is missing"


# ---------------------------------------------------------------------------------------------
# the compose command, run natively
# ---------------------------------------------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the demo server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on port {port}")


def _stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


@pytest.fixture
def demo_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sio_mqtt.demo", "server", "--port", str(port)],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_port(port, proc)
        yield port
    finally:
        _stop(proc)


def test_compose_command_runs_natively(
    compose: dict[str, Any], mosquitto: Mosquitto, demo_server: int, tmp_path: Path
) -> None:
    argv = gateway_argv(compose)
    assert argv[0] == "sio-mqtt"
    http_port = free_port()
    env = clean_env(
        **environment(service(compose, "gateway")),
        SIO_MQTT_MQTT__HOST="127.0.0.1",
        SIO_MQTT_MQTT__PORT=str(mosquitto.port),
        SIO_MQTT_MQTT__CLIENT_ID=f"sio-mqtt-compose-test-{os.getpid()}",
        SIO_MQTT_SOCKETIO__URL=f"http://127.0.0.1:{demo_server}",
        SIO_MQTT_HTTP__HOST="127.0.0.1",
        SIO_MQTT_HTTP__PORT=str(http_port),
    )
    log = tmp_path / "gateway.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sio_mqtt.cli", *argv[1:]],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{http_port}/readyz"
        status = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, log.read_text()

        # the healthcheck's own command, with the port this run uses
        test = as_list(service(compose, "gateway")["healthcheck"]["test"])
        hc_port = healthcheck_url(compose).port
        cmd = [a.replace(f":{hc_port}/", f":{http_port}/") for a in test[1:]]
        assert cmd[0] == "python"
        hc = subprocess.run([sys.executable, *cmd[1:]], capture_output=True, text=True, timeout=30)
        assert hc.returncode == 0, hc.stdout + hc.stderr
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()

    # and the healthcheck fails once the gateway is gone
    hc = subprocess.run([sys.executable, *cmd[1:]], capture_output=True, text=True, timeout=30)
    assert hc.returncode != 0
