"""TLS: https/wss to a Node server with a certificate made by the tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from servers.procs import NodeServer
from support import client_threads, wait_until

from sio_mqtt import Client, ConnectError


@pytest.mark.parametrize("transports", [("polling", "websocket"), ("websocket",), ("polling",)])
def test_tls_with_ca_bundle(
    node_server: Callable[..., NodeServer],
    tls_files: dict[str, str],
    transports: tuple[str, ...],
) -> None:
    server = node_server(tls=tls_files)
    assert server.url.startswith("https://")
    client = Client(server.url, transports=transports, verify=tls_files["cert"])
    try:
        client.connect()
        assert client.call("echo_ack", "secure", b"\x00", timeout=5) == ("secure", b"\x00")
        expected = "polling" if transports == ("polling",) else "websocket"
        # the upgrade runs in the background after connect(): over TLS it can take longer
        # than the round trip above (as in test_transport_property_follows_the_mode)
        wait_until(lambda: client.transport == expected, 5, f"transport {expected}")
        assert client.call("get_transport", timeout=5) == expected
    finally:
        client.disconnect()
    assert client_threads() == []


@pytest.mark.parametrize("transports", [("polling",), ("websocket",)])
def test_tls_verification_on_by_default(
    node_server: Callable[..., NodeServer],
    tls_files: dict[str, str],
    transports: tuple[str, ...],
) -> None:
    server = node_server(tls=tls_files)
    client = Client(server.url, transports=transports, connect_timeout=5)
    with pytest.raises(ConnectError, match=r"(?i)certificate"):
        client.connect()
    assert client_threads() == []


# urllib3 warns on every unverified HTTPS request: what verify=False asked for here
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("transports", [("polling", "websocket"), ("websocket",)])
def test_tls_verify_false_accepts_self_signed(
    node_server: Callable[..., NodeServer],
    tls_files: dict[str, str],
    transports: tuple[str, ...],
) -> None:
    server = node_server(tls=tls_files)
    client = Client(server.url, transports=transports, verify=False)
    try:
        client.connect()
        assert client.call("echo_ack", 1, timeout=5) == 1
    finally:
        client.disconnect()


def test_tls_wrong_host_name_fails(node_server: Callable[..., NodeServer], tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=other.example", "-addext", "subjectAltName=DNS:other.example",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = node_server(tls={"key": str(key), "cert": str(cert)})
    for transports in (("polling",), ("websocket",)):
        client = Client(server.url, transports=transports, verify=str(cert), connect_timeout=5)
        with pytest.raises(ConnectError, match=r"(?i)mismatch|doesn't match|not valid for"):
            client.connect()
