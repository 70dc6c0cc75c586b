"""A throw-away PKI for TLS tests: a CA, server and client certificates (openssl CLI).

Standard library + the ``openssl`` command only, like :mod:`servers.procs`::

    pki = Pki(tmp_path / "pki")                       # creates the CA
    srv = pki.server("server")                        # SAN IP:127.0.0.1, DNS:localhost
    cli = pki.client("gateway")                       # CN=gateway, clientAuth
    NodeServer(tls=srv.node_tls)                      # {"key": ..., "cert": ...}
    Mosquitto(config_extra=mosquitto_tls_listener(pki.ca_cert, srv, require_certificate=True))

Every certificate carries the extensions strict verifiers ask for (basicConstraints,
keyUsage, subject/authority key identifiers, extendedKeyUsage), so the chain also verifies
with ``VERIFY_X509_STRICT`` (Python >= 3.13 default) and with Node. Keys are EC P-256 (fast
to make), valid for 2 days.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertPair", "Pki", "mosquitto_tls_listener"]

OPENSSL = shutil.which("openssl") or "openssl"
DAYS = "2"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path

    @property
    def node_tls(self) -> dict[str, str]:
        """The ``tls`` option of ``NodeServer`` / ``PySocketIOServer``."""
        return {"key": str(self.key), "cert": str(self.cert)}


def _run(*args: str) -> None:
    proc = subprocess.run([OPENSSL, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed:\n{proc.stderr}")


def _san(hosts: tuple[str, ...]) -> str:
    parts = []
    for h in hosts:
        is_ip = h.replace(".", "").isdigit() or ":" in h
        parts.append(f"{'IP' if is_ip else 'DNS'}:{h}")
    return ",".join(parts)


class Pki:
    """A test CA in ``directory`` (``ca.pem``/``ca.key``) that issues leaf certificates."""

    def __init__(self, directory: str | Path, name: str = "sio-mqtt test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca_cert = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self._serial = 0
        _run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(self.ca_key), "-out", str(self.ca_cert), "-days", DAYS,
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
        )  # fmt: skip

    @property
    def ca(self) -> CertPair:
        return CertPair(self.ca_cert, self.ca_key)

    def _issue(self, name: str, cn: str, extensions: list[str]) -> CertPair:
        key = self.dir / f"{name}.key"
        csr = self.dir / f"{name}.csr"
        cert = self.dir / f"{name}.pem"
        ext = self.dir / f"{name}.ext"
        if cert.exists():
            raise ValueError(f"a certificate called {name!r} was issued already")
        ext.write_text(
            "\n".join(
                [
                    "basicConstraints=critical,CA:FALSE",
                    "subjectKeyIdentifier=hash",
                    "authorityKeyIdentifier=keyid:always",
                    *extensions,
                ]
            )
            + "\n"
        )
        _run(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}",
        )  # fmt: skip
        self._serial += 1
        _run(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-set_serial", str(1000 + self._serial), "-out", str(cert), "-days", DAYS,
            "-extfile", str(ext),
        )  # fmt: skip
        csr.unlink()
        return CertPair(cert, key)

    def server(self, name: str = "server", hosts: tuple[str, ...] = DEFAULT_HOSTS) -> CertPair:
        """A server certificate valid for ``hosts`` (IP and DNS subject alternative names)."""
        return self._issue(
            name,
            hosts[0] if hosts else name,
            [
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                f"subjectAltName={_san(hosts)}" if hosts else "",
            ],
        )

    def client(self, cn: str, name: str | None = None) -> CertPair:
        """A client certificate with common name ``cn`` (mosquitto's identity with
        ``use_identity_as_username``)."""
        return self._issue(
            name or f"client-{cn}",
            cn,
            ["keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
        )


def mosquitto_tls_listener(
    ca_cert: str | Path,
    server: CertPair,
    *,
    require_certificate: bool = False,
    use_identity_as_username: bool = False,
) -> str:
    """``config_extra`` for :class:`servers.procs.Mosquitto`: TLS on its (only) listener.

    The lines follow the ``listener`` line procs.py writes, so they configure that listener.
    """
    lines = [
        f"cafile {ca_cert}",
        f"certfile {server.cert}",
        f"keyfile {server.key}",
        f"require_certificate {'true' if require_certificate else 'false'}",
    ]
    if use_identity_as_username:
        lines.append("use_identity_as_username true")
    return "\n".join(lines) + "\n"
