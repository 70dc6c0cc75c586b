"""The sio-mqtt command line: check, bad configs, version, logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gw_support import REPO, Env, run_cli

from sio_mqtt import __version__
from sio_mqtt.cli import main


def test_version() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and __version__ in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "sio_mqtt", "--version"], capture_output=True, text=True, cwd=REPO
    )
    assert res.returncode == 0 and __version__ in res.stdout


def test_check_prints_routes_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        "socketio:\n"
        "  url: http://user:urlpass@127.0.0.1:3000/?token=qs-secret\n"
        "  auth: {token: auth-secret-1}\n"
        "  headers: {Authorization: Bearer hdr-secret}\n"
        "mqtt:\n"
        "  username: bob\n"
        "  password: mqtt-secret-pw\n"
        "mqtt_to_socketio:\n"
        "  - name: cmds\n"
        "    topic: devices/{device}/cmd/{event}\n"
        "    ack: true\n"
        "    reply_topic: devices/{device}/reply/{event}\n"
        "socketio_to_mqtt:\n"
        "  - name: tele\n"
        "    event: telemetry\n"
        "    topic: sio/telemetry/{arg0.device}\n"
    )
    res = run_cli("check", "-c", str(cfg), env={"SIO_MQTT_SOCKETIO__AUTH__EXTRA": "env-secret"})
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for secret in ("urlpass", "qs-secret", "auth-secret-1", "hdr-secret", "mqtt-secret-pw"):
        assert secret not in out, secret
    assert "env-secret" not in out
    assert "cmds: devices/{device}/cmd/{event}" in out
    assert "devices/+/cmd/+ (qos 1)" in out
    assert "tele: / event telemetry -> sio/telemetry/{arg0.device}" in out
    assert "***" in out and "bob" in out


def test_bad_configs_exit_2_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("socketio: {url: http://127.0.0.1:1}\nmqtt: {port: 70000}\n")
    for cmd in ("check", "run"):
        res = run_cli(cmd, "-c", str(bad))
        assert res.returncode == 2, (cmd, res.stderr)
        assert str(bad) in res.stderr and "mqtt.port" in res.stderr
    route = tmp_path / "route.yaml"
    route.write_text(
        "socketio: {url: http://127.0.0.1:1}\n"
        "mqtt_to_socketio:\n  - topic: a/{x}\n    event: '{nope}'\n"
    )
    res = run_cli("run", "-c", str(route))
    assert res.returncode == 2 and "mqtt_to_socketio[0].event" in res.stderr
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("socketio:\n  url: [unclosed\n")
    res = run_cli("check", "-c", str(syntax))
    assert res.returncode == 2 and str(syntax) in res.stderr and "line" in res.stderr
    res = run_cli("check", "-c", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "missing.yaml" in res.stderr
    res = run_cli("check")
    assert res.returncode == 2 and "SIO_MQTT_CONFIG" in res.stderr


def test_config_from_env_var(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("socketio: {url: http://127.0.0.1:1}\n")
    res = run_cli("check", env={"SIO_MQTT_CONFIG": str(cfg)})
    assert res.returncode == 0 and "OK" in res.stdout


def test_main_in_process_check(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("socketio: {url: http://127.0.0.1:1}\n")
    assert main(["check", "-c", str(cfg)]) == 0
    assert "resolved configuration" in capsys.readouterr().out
    assert main(["bogus"]) == 2


def test_json_logs_without_secrets(env: Env) -> None:
    env.config["mqtt"]["password"] = "very-secret-pw"
    env.config["socketio"]["auth"] = {"token": "tok-secret-9"}
    gw = env.start(extra_args=["--log-format", "json", "--log-level", "debug"])
    env.device.publish(f"{env.prefix}/json/echo", "{")
    env.device.expect(f"{env.base}/errors")
    assert gw.terminate() == 0
    lines = [line for line in gw.output.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    for rec in records:
        assert {"ts", "level", "logger", "message"} <= set(rec)
    assert any(r["level"] == "WARNING" and "payload" in r["message"] for r in records)
    assert "very-secret-pw" not in gw.output and "tok-secret-9" not in gw.output
