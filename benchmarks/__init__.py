"""Benchmarks of the sio_mqtt client and gateway against the alternatives users would pick.

Run ``python -m benchmarks.run`` (``make bench``) or ``python -m benchmarks.run --smoke``
(``make bench-smoke``); see BENCHMARKS.md.
"""
