"""``python -m sio_mqtt.demo [server|device|broker] ...``: see :mod:`sio_mqtt.demo`."""

import sys

from sio_mqtt.demo import main

sys.exit(main())
