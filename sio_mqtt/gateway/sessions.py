"""One place that turns the ``socketio`` settings into a :class:`Client`: the shared session and
every device session connect with the same URL, transports, TLS and reconnection policy."""

from __future__ import annotations

from sio_mqtt.gateway.config import SocketioConfig
from sio_mqtt.socketio.client import Client
from sio_mqtt.socketio.socket import AuthSource


def session_client(scfg: SocketioConfig, namespace: str, auth: AuthSource) -> Client:
    """A client for ``namespace`` with ``auth`` and the configured connection settings.

    No offline buffer in the client: an emit while disconnected fails at once and the gateway's
    own queue holds it, so retried requests (lost with the connection) go out again before
    anything that came after them (order per namespace and per device).
    """
    rc = scfg.reconnect
    return Client(
        scfg.url,
        namespace=namespace,
        path=scfg.path,
        auth=auth,
        headers=scfg.headers,
        transports=scfg.transports,
        reconnect=True,
        reconnect_delay=rc.delay,
        reconnect_delay_max=rc.delay_max,
        randomization_factor=rc.randomization_factor,
        max_reconnect_attempts=rc.max_attempts,
        connect_timeout=scfg.connect_timeout,
        verify=scfg.verify,
        parser=scfg.parser,
        buffer_size=0,
    )
