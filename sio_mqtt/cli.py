"""``sio-mqtt``: run the gateway, check a configuration, run the demo, print the version.

::

    sio-mqtt run -c config/gateway.yaml [--log-level INFO] [--log-format text|json]
    sio-mqtt check -c config/gateway.yaml
    sio-mqtt demo [...]
    sio-mqtt --version

``-c`` defaults to the environment variable ``SIO_MQTT_CONFIG``; the log level comes from
``--log-level``, else ``SIO_MQTT_LOG_LEVEL``, else the config's ``logging.level`` (the format
likewise from ``--log-format``, else ``logging.format``). Exit codes: 0 success (also after
SIGINT/SIGTERM, which stop the gateway gracefully), 2 invalid configuration or usage,
1 another start-up failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from sio_mqtt import __version__

__all__ = ["JsonFormatter", "main", "setup_logging"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``message``
    (+ ``exc_info`` when there is an exception), so log shippers need no parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger to stderr (text or JSON lines)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # paho logs every packet at DEBUG; keep it quieter unless asked for explicitly
    logging.getLogger("sio_mqtt.gateway.paho").setLevel(max(logging.INFO, root.level))
    # urllib3 logs every request URL at DEBUG, and a Socket.IO URL may carry a token
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))


def _level(value: str) -> str:
    up = value.upper()
    if up not in LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LEVELS)}")
    return up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sio-mqtt", description="MQTT <-> Socket.IO gateway and Socket.IO v5 client"
    )
    parser.add_argument("--version", action="version", version=f"sio-mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("-c", "--config", help="YAML config file (default: $SIO_MQTT_CONFIG)")
    run.add_argument("--log-level", type=_level, help="DEBUG|INFO|WARNING|ERROR|CRITICAL")
    run.add_argument("--log-format", choices=("text", "json"))
    run.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="seconds to flush queued messages on shutdown (default 10)",
    )

    check = sub.add_parser("check", help="validate a config and print the resolved routes")
    check.add_argument("-c", "--config", help="YAML config file (default: $SIO_MQTT_CONFIG)")

    sub.add_parser(
        "demo", help="run the local demo (broker, server, gateway, device)", add_help=False
    )
    return parser


def _config_path(arg: str | None) -> str | None:
    return arg or os.environ.get("SIO_MQTT_CONFIG") or None


def _print_errors(errors: Sequence[str]) -> None:
    for line in errors:
        print(f"error: {line}", file=sys.stderr)


def _cmd_check(path: str) -> int:
    from sio_mqtt.gateway.config import ConfigError, all_namespaces, load_config, redacted_dump
    from sio_mqtt.gateway.routes import RouteTable

    try:
        cfg = load_config(path)
        table = RouteTable.from_config(cfg)
    except ConfigError as exc:
        _print_errors(exc.errors)
        return EXIT_CONFIG
    out = sys.stdout
    print(f"{path}: OK", file=out)
    print(f"namespaces: {', '.join(all_namespaces(cfg))}", file=out)
    print("mqtt subscriptions:", file=out)
    for flt, qos in table.subscriptions:
        print(f"  {flt} (qos {qos})", file=out)
    print("mqtt_to_socketio routes:", file=out)
    for r in table.inbound:
        extra = ""
        if r.ack:
            extra = f", ack (timeout {r.ack_timeout:g} s"
            if r.reply_template is not None:
                extra += f", reply_topic {r.reply_template.template}"
            extra += ")"
        print(
            f"  {r.name}: {r.pattern.pattern} -> {r.namespace} event {r.event_template.template}"
            f" [payload {r.payload_mode}{', spread' if r.spread else ''}{extra}"
            f"{'' if r.ignore_retained else ', retained delivered'}]",
            file=out,
        )
    print("socketio_to_mqtt routes:", file=out)
    for o in table.outbound:
        print(
            f"  {o.name}: {o.namespace} event {o.event} -> {o.topic_template.template}"
            f" [qos {o.qos}{', retain' if o.retain else ''}"
            f"{f', reply (timeout {o.ack_timeout:g} s)' if o.reply else ''}"
            f"{f', reply_envelope {o.reply_envelope}' if o.reply_envelope != 'auto' else ''}]",
            file=out,
        )
    print("resolved configuration (secrets redacted):", file=out)
    print(json.dumps(redacted_dump(cfg), indent=2, default=str), file=out)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace, path: str) -> int:
    from sio_mqtt.gateway.bridge import Gateway
    from sio_mqtt.gateway.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _print_errors(exc.errors)
        return EXIT_CONFIG
    env_level = os.environ.get("SIO_MQTT_LOG_LEVEL")
    level = args.log_level or (_level(env_level) if env_level else None) or cfg.logging.level
    setup_logging(level, args.log_format or cfg.logging.format)
    log = logging.getLogger("sio_mqtt.cli")
    log.info("sio-mqtt %s starting with %s", __version__, path)
    try:
        gateway = Gateway(cfg)
    except (ValueError, ConfigError) as exc:
        log.error("cannot build the gateway: %s", exc)
        return EXIT_CONFIG

    def on_signal(signum: int, frame: FrameType | None) -> None:
        gateway.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        gateway.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        gateway.stop(1.0)
        return EXIT_FAILURE
    if gateway.http_port is not None:
        log.info("http endpoint on port %d", gateway.http_port)
    gateway.run_forever(stop_timeout=args.stop_timeout)
    # a broker the configuration cannot work with (e.g. shared_group without shared
    # subscriptions): the gateway said why and stopped by itself
    return EXIT_CONFIG if gateway.fatal else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        import importlib

        demo: Any = importlib.import_module("sio_mqtt.demo")  # written separately
        return int(demo.main(argv[1:]) or 0)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code) if isinstance(exc.code, int) else EXIT_CONFIG
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    path = _config_path(args.config)
    if path is None:
        print("error: no config file: pass -c FILE or set SIO_MQTT_CONFIG", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        try:
            return _cmd_check(path)
        except BrokenPipeError:  # `sio-mqtt check ... | head`: the reader left, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
    return _cmd_run(args, path)


if __name__ == "__main__":
    sys.exit(main())
