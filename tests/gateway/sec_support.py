"""Helpers of the security and scale-out tests (test_security_*.py, test_scaleout.py).

* :class:`SecureDevice`: the paho test "device" of gw_support, but able to log in with a
  username/password and/or TLS (CA + client certificate) before connecting.
* :func:`start_gateway`: write a config dict to a file and run the CLI, with extra environment
  variables (secrets come from the environment in several tests).
* :func:`wait_output`: wait until the gateway's output contains a text (or it exits).
* :func:`make_password_file`: a mosquitto password file (``mosquitto_passwd`` if available,
  else the PBKDF2-SHA512 ``$7$`` format written here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from gw_support import Device, GatewayProc
from servers.pki import CertPair


class SecureDevice(Device):
    """A recording paho client (see :class:`gw_support.Device`) with credentials and TLS."""

    def __init__(
        self,
        port: int,
        protocol: int | str = 5,
        client_id: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_cert: Path | None = None,
        client_cert: CertPair | None = None,
    ) -> None:
        def log_in(client: paho.Client) -> None:
            if username is not None:
                client.username_pw_set(username, password)
            if ca_cert is not None:
                ctx = ssl.create_default_context(cafile=str(ca_cert))
                if client_cert is not None:
                    ctx.load_cert_chain(str(client_cert.cert), str(client_cert.key))
                client.tls_set_context(ctx)

        super().__init__(port, protocol, client_id, before_connect=log_in)


def start_gateway(
    tmp_path: Path,
    config: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    name: str = "gateway",
    extra_args: list[str] | None = None,
) -> GatewayProc:
    """Write ``config`` to ``tmp_path/<name>.yaml`` and start ``sio-mqtt run`` with ``env``
    added to its environment (not waiting for readiness)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return GatewayProc(path, int(config["http"]["port"]), extra_args, env=env)


def wait_output(gw: GatewayProc, text: str, timeout: float = 15.0, exited_ok: bool = False) -> str:
    """Wait until the gateway's stdout+stderr contains ``text``; returns the output.

    There is no event to wait on in another process's log: poll it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = gw.output
        if text in out:
            return out
        if gw.proc.poll() is not None and not exited_ok:
            for t in gw._threads:
                t.join(2)
            out = gw.output
            if text in out:
                return out
            raise AssertionError(f"gateway exited ({gw.proc.returncode}) without {text!r}:\n{out}")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the gateway's output within {timeout}s:\n{gw.output}")


def readyz(gw: GatewayProc) -> dict[str, Any]:
    code, body = gw.get("/readyz")
    data: dict[str, Any] = json.loads(body)
    assert (code == 200) == data["ready"]
    return data


def wait_readyz(gw: GatewayProc, timeout: float = 15.0, **expected: bool) -> dict[str, Any]:
    """Poll ``/readyz`` until its body has the ``expected`` values (e.g. ``mqtt=True``)."""
    deadline = time.monotonic() + timeout
    while True:
        state = readyz(gw)
        if all(state.get(k) == v for k, v in expected.items()):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never showed {expected}: {state}\n{gw.output}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# mosquitto password files
# --------------------------------------------------------------------------------------------


def _pbkdf2_line(user: str, password: str, iterations: int = 101) -> str:
    """mosquitto 2's ``$7$`` format: PBKDF2-HMAC-SHA512, 12-byte salt, base64 salt and hash."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{user}:$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def make_password_file(path: Path, users: Mapping[str, str]) -> Path:
    """Write a mosquitto password file for ``users`` (name -> clear-text password)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        path.write_text("".join(_pbkdf2_line(u, p) + "\n" for u, p in users.items()))
        return path
    path.unlink(missing_ok=True)
    for i, (user, password) in enumerate(users.items()):
        flags = ["-b", "-c"] if i == 0 else ["-b"]
        subprocess.run([tool, *flags, str(path), user, password], check=True, capture_output=True)
    return path
