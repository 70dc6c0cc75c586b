"""An MQTT 3.1.1-only broker for tests: amqtt (the ``demo`` extra), anonymous, on one port.

``python amqtt_broker.py PORT`` prints ``LISTENING <port>`` once it accepts connections (what
:class:`servers.procs.ServerProcess` waits for) and runs until SIGTERM/SIGINT. amqtt differs
from mosquitto where the gateway must notice: it answers an MQTT 5 CONNECT with "unacceptable
protocol version" and takes ``$share/<group>/<filter>`` as a literal filter (granted, never
matched).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any


async def _serve(port: int) -> None:
    from amqtt.broker import Broker

    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    print(f"LISTENING {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
