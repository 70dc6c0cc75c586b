"""``python -m sio_mqtt``: the ``sio-mqtt`` command line (see :mod:`sio_mqtt.cli`)."""

from __future__ import annotations

import sys

from sio_mqtt.cli import main

if __name__ == "__main__":
    sys.exit(main())
