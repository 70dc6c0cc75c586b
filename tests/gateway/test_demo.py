"""`sio-mqtt demo` end to end: the real CLI as a subprocess, with mosquitto and with the
pure-Python broker (amqtt). The demo prints every message both ways; these tests read that
output, and check that every process the demo started is gone after it exits."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from sio_mqtt.demo import find_mosquitto

ROOT = Path(__file__).resolve().parents[2]
DURATION = 8
PID_RE = re.compile(r"\(pid (\d+)\)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead (only its parent's wait() is missing)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _kill_pids(text: str) -> None:
    for pid in map(int, PID_RE.findall(text)):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def run_demo(*extra: str, cwd: Path = ROOT, pythonpath: Path | None = None) -> tuple[int, str]:
    """The demo for ``DURATION`` s; ``pythonpath``: import ``sio_mqtt`` from there (an installed
    copy) instead of this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIO_MQTT_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    argv = [sys.executable, "-m", "sio_mqtt.cli", "demo", "--duration", str(DURATION), *extra]
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=DURATION + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        _kill_pids(out)
        pytest.fail(f"the demo did not stop by itself; output:\n{out}")
    return proc.returncode, out


def check_common(code: int, out: str) -> None:
    assert code == 0, out
    # Socket.IO -> MQTT: the server's telemetry reaches the device
    assert re.search(r"server\s+-> telemetry \{", out), out
    assert re.search(r'device\s+<- demo/telemetry/d[12]: \{"device": "d[12]", "temperature"', out)
    # MQTT -> Socket.IO: the device's command reaches the server, which acks it ...
    assert re.search(r'server\s+<- reboot \{"device": "d1", "delay": 1\}; ack ->', out), out
    # ... and the ack comes back to the device on a reply topic
    assert re.search(
        r'device\s+<- reply on \S+.*: status ok \{"status": "ok", "args": \[\{"accepted": true',
        out,
    ), out
    # the server's own request (ack) is answered by the device through MQTT
    assert re.search(r"device\s+<- request on devices/d1/ask: ", out), out
    assert re.search(r"device\s+-> answer on sio-mqtt/reply/", out), out
    assert re.search(r'server\s+<- ack for ask_device: \{"device": "d1", "battery"', out), out
    # availability topics seen by the device
    assert re.search(r"device\s+<- sio-mqtt/status.*: online", out), out
    assert "Traceback" not in out, out
    running = out.split("gateway: stopping", 1)[0]  # before the gateway's shutdown
    assert not re.search(r"^\S+ \S+\s+(error|ERROR)\b|^error:", running, re.M), out
    assert "stopped; every process it started has ended" in out, out

    pids = [int(p) for p in PID_RE.findall(out)]
    assert len(pids) == 3, out  # broker, server, gateway
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in pids if _alive(p)]
    if survivors:
        _kill_pids(out)
    assert not survivors, f"processes still running after the demo: {survivors}\n{out}"


def test_demo_with_mosquitto() -> None:
    code, out = run_demo()
    check_common(code, out)
    assert "broker: mosquitto" in out, out
    assert re.search(r"device\s+d1 connected .*\(MQTT 5\)", out), out
    # MQTT 5: the first command names its own Response Topic + Correlation Data ...
    assert re.search(r"device\s+<- reply on demo/d1/inbox \[correlation cmd-1\]: status ok", out)
    # ... the second relies on the route's reply_topic
    assert re.search(r"device\s+<- reply on devices/d1/reply/get_status: status ok", out), out


def test_demo_with_python_broker() -> None:
    code, out = run_demo("--no-mosquitto")
    check_common(code, out)
    assert "broker: amqtt (pure Python, MQTT 3.1.1)" in out, out
    assert re.search(r"device\s+d1 connected .*\(MQTT 3\.1\.1\)", out), out
    # MQTT 3.1.1 has no Response Topic: replies use the route's reply_topic
    assert re.search(r"device\s+<- reply on devices/d1/reply/reboot: status ok", out), out


def test_demo_cleans_up_after_a_start_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("socketio:\n  url: http://127.0.0.1:1\nmqtt:\n  bogus: 1\n")
    extra = [] if find_mosquitto() is not None else ["--no-mosquitto"]
    code, out = run_demo("--config", str(bad), *extra)
    assert code == 2, out
    assert "mqtt.bogus" in out, out
    pids = [int(p) for p in PID_RE.findall(out)]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], out


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the sources (building in the checkout would leave build/ there),
    offline: setuptools and wheel come from the test extra."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "sio_mqtt", src / "sio_mqtt", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        timeout=120,
    )
    (wheel,) = out.glob("sio_mqtt-*.whl")
    return wheel


def test_demo_from_an_installed_wheel(tmp_path: Path) -> None:
    """``pip install`` (not editable) + ``sio-mqtt demo`` away from any checkout: the demo finds
    its packaged config and the whole loop runs (dependencies from this venv)."""
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"sio_mqtt/demo/demo.yaml", "sio_mqtt/demo/__main__.py", "sio_mqtt/py.typed"} <= names
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        timeout=120,
    )
    elsewhere = tmp_path / "cwd"  # no config/ directory around
    elsewhere.mkdir()
    extra = [] if find_mosquitto() is not None else ["--no-mosquitto"]
    code, out = run_demo(*extra, cwd=elsewhere, pythonpath=site)
    check_common(code, out)
    assert f"gateway config: {site / 'sio_mqtt' / 'demo' / 'demo.yaml'}" in out, out


def test_make_demo_installs_only_the_demo_extra(tmp_path: Path) -> None:
    """``make demo`` on a fresh clone installs the package with the demo extra alone (no test,
    lint or benchmark tools such as matplotlib); ``make test`` installs everything."""
    venv = tmp_path / "venv"

    def installs(target: str) -> list[str]:
        dry = subprocess.run(
            ["make", "-n", "-B", target, f"VENV={venv}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return [line for line in dry.stdout.splitlines() if "pip install" in line]

    assert installs("demo") == [f"{venv}/bin/python -m pip install -q -e '.[demo]'"]
    (full,) = installs("install")
    assert all(extra in full for extra in ("test", "bench", "demo")), full
