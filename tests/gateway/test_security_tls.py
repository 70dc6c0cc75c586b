"""TLS on both sides of the gateway, with a CA made by the tests (tests/servers/pki.py).

* Socket.IO: ``https://`` (polling, then the upgrade to ``wss``) and ``wss://`` (websocket only)
  to the Node server serving a certificate of the test CA, ``socketio.verify`` = the CA file.
* MQTT: ``mqtt.tls`` to a mosquitto listener with ``require_certificate true`` and
  ``use_identity_as_username true``: the gateway logs in with its client certificate (the
  broker sees the certificate's CN as the user name).
* Verification is on by default (no CA configured = the system store, which does not know the
  test CA), and a wrong CA or a certificate for another host name fails with the cause in the
  log and ``/readyz`` naming the side that is down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw_support import base_config, payload_json
from sec_support import SecureDevice, readyz, start_gateway, wait_output, wait_readyz
from servers.pki import CertPair, Pki, mosquitto_tls_listener
from servers.procs import Mosquitto, NodeServer, free_port

GW_CN = "gw-client"


class TlsWorld:
    def __init__(self, root: Path) -> None:
        self.pki = Pki(root / "ca")
        self.other = Pki(root / "other-ca", "another CA")  # knows nobody here
        self.server = self.pki.server("server")
        self.wrong_host = self.pki.server("wrong-host", ("wrong.example",))
        self.gw_client = self.pki.client(GW_CN)
        self.dev_client = self.pki.client("device")
        self.stranger = self.other.client("stranger")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TlsWorld:
    return TlsWorld(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(world: TlsWorld) -> Iterator[Mosquitto]:
    extra = mosquitto_tls_listener(
        world.pki.ca_cert, world.server, require_certificate=True, use_identity_as_username=True
    )
    with Mosquitto(config_extra=extra, verbose=True) as broker:
        yield broker


@pytest.fixture(scope="module")
def tls_node(world: TlsWorld) -> Iterator[NodeServer]:
    with NodeServer(tls=world.server.node_tls) as srv:
        yield srv


@pytest.fixture(scope="module")
def wrong_host_node(world: TlsWorld) -> Iterator[NodeServer]:
    with NodeServer(tls=world.wrong_host.node_tls) as srv:
        yield srv


@pytest.fixture
def device(world: TlsWorld, tls_broker: Mosquitto) -> Iterator[SecureDevice]:
    dev = SecureDevice(tls_broker.port, ca_cert=world.pki.ca_cert, client_cert=world.dev_client)
    yield dev
    dev.close()


def tls_config(
    world: TlsWorld,
    broker: Mosquitto,
    sio_url: str,
    prefix: str,
    *,
    verify: Any = None,
    mqtt_ca: Path | None = None,
    client_cert: CertPair | None = None,
) -> dict[str, Any]:
    cfg = base_config(prefix, broker.port, sio_url, 5, free_port())
    cfg["socketio"]["verify"] = str(world.pki.ca_cert) if verify is None else verify
    cert = world.gw_client if client_cert is None else client_cert
    cfg["mqtt"]["tls"] = {
        "enabled": True,
        "ca_file": str(mqtt_ca or world.pki.ca_cert),
        "cert_file": str(cert.cert),
        "key_file": str(cert.key),
    }
    return cfg


@pytest.mark.parametrize("scheme", ["https", "wss"])
def test_tls_both_sides_with_client_certificate(
    tmp_path: Path,
    world: TlsWorld,
    tls_broker: Mosquitto,
    tls_node: NodeServer,
    device: SecureDevice,
    scheme: str,
) -> None:
    p = f"tls-{scheme}"
    url = tls_node.url if scheme == "https" else tls_node.ws_url
    assert url.startswith(f"{scheme}://")
    cfg = tls_config(world, tls_broker, url, p)
    if scheme == "wss":
        cfg["socketio"]["transports"] = ["websocket"]
    device.subscribe(f"{p}/#")
    gw = start_gateway(tmp_path, cfg)
    gw.wait_ready()
    # both directions over the two TLS connections: device -> mqtts -> gateway -> https/wss ->
    # Node (echo) -> gateway -> mqtts -> device
    device.publish(f"{p}/in/echo", json.dumps({"over": "tls"}))
    assert payload_json(device.expect(f"{p}/out/echo")) == {"over": "tls"}
    # request/ack/reply, and the transport the server sees
    device.publish(f"{p}/req/d1/echo_ack", '"tls"')
    assert payload_json(device.expect(f"{p}/reply/d1/echo_ack")) == {
        "status": "ok",
        "args": ["tls"],
    }
    # the broker authenticated the gateway by its client certificate: its CN is the user name
    assert f"as gw-{p} (p5, c1, k10, u'{GW_CN}')" in tls_broker.stderr_text
    assert gw.terminate() == 0


def test_sio_verification_is_on_by_default(
    tmp_path: Path, world: TlsWorld, tls_broker: Mosquitto, tls_node: NodeServer
) -> None:
    cfg = tls_config(world, tls_broker, tls_node.url, "tls-def-sio")
    del cfg["socketio"]["verify"]  # default: verify against the system store
    gw = start_gateway(tmp_path, cfg)
    wait_output(gw, "certificate verify failed: unable to get local issuer certificate")
    assert wait_readyz(gw, mqtt=True) == {"ready": False, "mqtt": True, "socketio": False}
    assert gw.terminate() == 0


def test_mqtt_verification_is_on_by_default(
    tmp_path: Path, world: TlsWorld, tls_broker: Mosquitto, tls_node: NodeServer
) -> None:
    cfg = tls_config(world, tls_broker, tls_node.url, "tls-def-mqtt")
    del cfg["mqtt"]["tls"]["ca_file"]  # default: verify against the system store
    gw = start_gateway(tmp_path, cfg)
    out = wait_output(gw, "certificate verify failed")
    line = next(x for x in out.splitlines() if "certificate verify failed" in x)
    assert "MQTT: cannot connect to" in line and "(TLS)" in line
    gw.wait_http("/readyz", 503)
    assert readyz(gw)["mqtt"] is False
    assert gw.terminate() == 0  # stops cleanly although MQTT never connected


def test_wrong_ca_fails_clearly_on_both_sides(
    tmp_path: Path, world: TlsWorld, tls_broker: Mosquitto, tls_node: NodeServer
) -> None:
    cfg = tls_config(
        world,
        tls_broker,
        tls_node.url,
        "tls-wrong-ca",
        verify=str(world.other.ca_cert),
        mqtt_ca=world.other.ca_cert,
    )
    gw = start_gateway(tmp_path, cfg)
    out = wait_output(gw, "Socket.IO: cannot connect namespace /")
    out = wait_output(gw, "MQTT: cannot connect to")
    lines = out.splitlines()
    mqtt_line = next(x for x in lines if "MQTT: cannot connect to" in x)
    sio_line = next(x for x in lines if "Socket.IO: cannot connect namespace /" in x)
    assert "CERTIFICATE_VERIFY_FAILED" in mqtt_line, mqtt_line
    assert "CERTIFICATE_VERIFY_FAILED" in sio_line, sio_line
    assert readyz(gw) == {"ready": False, "mqtt": False, "socketio": False}
    assert gw.terminate() == 0


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_sio_wrong_host_name_fails_clearly(
    tmp_path: Path,
    world: TlsWorld,
    tls_broker: Mosquitto,
    wrong_host_node: NodeServer,
    transport: str,
) -> None:
    """The server's certificate is from the right CA but for wrong.example, not 127.0.0.1."""
    url = wrong_host_node.url if transport == "polling" else wrong_host_node.ws_url
    cfg = tls_config(world, tls_broker, url, f"tls-host-{transport}")
    cfg["socketio"]["transports"] = [transport]
    gw = start_gateway(tmp_path, cfg)
    out = wait_output(gw, "Socket.IO: cannot connect namespace /")
    line = next(x for x in out.splitlines() if "Socket.IO: cannot connect namespace /" in x)
    assert "certificate is not valid for '127.0.0.1'" in line, line
    assert wait_readyz(gw, mqtt=True) == {"ready": False, "mqtt": True, "socketio": False}
    assert gw.terminate() == 0


def test_mqtt_wrong_host_name_fails_clearly(
    tmp_path: Path, world: TlsWorld, tls_node: NodeServer
) -> None:
    extra = mosquitto_tls_listener(world.pki.ca_cert, world.wrong_host)
    with Mosquitto(config_extra=extra) as broker:
        cfg = tls_config(world, broker, tls_node.url, "tls-mqtt-host")
        gw = start_gateway(tmp_path, cfg)
        out = wait_output(gw, "MQTT: cannot connect to")
        line = next(x for x in out.splitlines() if "MQTT: cannot connect to" in x)
        assert "certificate is not valid for '127.0.0.1'" in line, line
        assert readyz(gw)["mqtt"] is False
        assert gw.terminate() == 0


def assert_broker_refuses(tmp_path: Path, cfg: dict[str, Any], alert: str) -> None:
    """The broker aborts the gateway's TLS handshake with ``alert`` (paho logs it and
    reconnects): MQTT stays down, and the gateway still stops cleanly."""
    gw = start_gateway(tmp_path, cfg)
    out = wait_output(gw, alert)
    line = next(x for x in out.splitlines() if alert in x)
    assert "WARNING" in line and "MQTT:" in line, line  # the gateway's own line names it
    assert "may speak only MQTT 3.1.1" not in out  # a TLS alert is no protocol mismatch
    assert readyz(gw)["mqtt"] is False
    assert gw.terminate() == 0


def test_broker_refuses_a_client_certificate_of_another_ca(
    tmp_path: Path, world: TlsWorld, tls_broker: Mosquitto, tls_node: NodeServer
) -> None:
    cfg = tls_config(world, tls_broker, tls_node.url, "tls-stranger", client_cert=world.stranger)
    assert_broker_refuses(tmp_path, cfg, "alert unknown ca")


def test_broker_refuses_a_gateway_without_client_certificate(
    tmp_path: Path, world: TlsWorld, tls_broker: Mosquitto, tls_node: NodeServer
) -> None:
    cfg = tls_config(world, tls_broker, tls_node.url, "tls-nocert")
    del cfg["mqtt"]["tls"]["cert_file"], cfg["mqtt"]["tls"]["key_file"]
    assert_broker_refuses(tmp_path, cfg, "certificate required")


def test_key_not_matching_the_certificate_is_a_config_error(
    tmp_path: Path, world: TlsWorld, tls_broker: Mosquitto, tls_node: NodeServer
) -> None:
    cfg = tls_config(world, tls_broker, tls_node.url, "tls-mismatch")
    cfg["mqtt"]["tls"]["key_file"] = str(world.dev_client.key)
    gw = start_gateway(tmp_path, cfg)
    assert gw.proc.wait(15) == 2
    out = wait_output(gw, "cannot build the gateway", exited_ok=True)
    assert "mqtt.tls: cannot load the CA/certificate/key files" in out
    assert "KEY_VALUES_MISMATCH" in out
    assert "Traceback" not in out
