"""Every paho-mqtt the project allows (``>=2.0,<3``) imports and runs the gateway: the fast
path's one version-checked seam (``sio_mqtt.gateway.paho_fast``) turns it off, never fails,
when paho's internals are not those of 2.2. ``make test`` runs this file (and the gateway
tests) with the newest and the oldest allowed paho."""

from __future__ import annotations

import subprocess
import sys

import paho.mqtt
import paho.mqtt.client as mqtt

from sio_mqtt.gateway import paho_fast
from sio_mqtt.gateway.paho_fast import FAST_OK, FAST_PROBLEMS, FastClient


def _version() -> tuple[int, ...]:
    return tuple(int(x) for x in paho.mqtt.__version__.split(".")[:2])


def test_fast_path_is_on_exactly_where_paho_has_what_it_needs() -> None:
    if _version() >= (2, 2):
        assert FAST_OK, FAST_PROBLEMS
    else:
        assert not FAST_OK
        assert any("_packet" in p for p in FAST_PROBLEMS), FAST_PROBLEMS
    client = FastClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert client._fast is FAST_OK
    assert paho_fast.MalformedPacket is not None


def test_the_cli_imports_the_gateway_with_this_paho() -> None:
    """What died at import with paho 2.0/2.1 (``from paho.mqtt import _packet``)."""
    code = "import sio_mqtt.gateway.bridge, sio_mqtt.cli; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "Traceback" not in out.stderr
