"""python-socketio reference server for the sio_mqtt test suite.

Usage: python tests/servers/py_server.py '{"port": 0, ...}'

Accepts the same JSON options as ``tests/servers/node/server.js`` where
python-socketio supports them (times in milliseconds, like the Node server):

    port, host, transports, pingInterval, pingTimeout, maxHttpBufferSize,
    parser ("default" | "msgpack"), cookie (bool), tls ({key, cert}), path,
    welcome (event name), serverOptions (extra AsyncServer kwargs)

``connectionStateRecovery`` is not supported by python-socketio: asking for it
is an error (exit code 2). Namespaces: "/", "/chat", "/admin" (auth.token must
be "secret"). Dynamic namespaces are not served. Prints ``LISTENING <port>``
once uvicorn accepts connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any
from urllib.parse import parse_qs

import socketio
import uvicorn

NAMESPACES = ("/", "/chat", "/admin")


def _fail(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
    sys.exit(2)


def _as_data(args: list[Any] | tuple[Any, ...]) -> Any:
    """python-socketio emit(): a tuple is sent as several arguments."""
    return tuple(args)


def build(config: dict[str, Any]) -> tuple[socketio.AsyncServer, Any]:
    if config.get("connectionStateRecovery"):
        _fail("connectionStateRecovery is not supported by python-socketio")

    kwargs: dict[str, Any] = {
        "async_mode": "asgi",
        "namespaces": list(NAMESPACES),
        "transports": config.get("transports") or ["polling", "websocket"],
        "cors_allowed_origins": "*",
        # handle each client's events in order, like the Node server does
        "async_handlers": False,
    }
    if "websocket" not in kwargs["transports"]:
        # python-engineio would still advertise the websocket upgrade
        kwargs["allow_upgrades"] = False
    if "pingInterval" in config:
        kwargs["ping_interval"] = config["pingInterval"] / 1000.0
    if "pingTimeout" in config:
        kwargs["ping_timeout"] = config["pingTimeout"] / 1000.0
    if "maxHttpBufferSize" in config:
        kwargs["max_http_buffer_size"] = config["maxHttpBufferSize"]
    parser = config.get("parser", "default")
    if parser == "msgpack":
        kwargs["serializer"] = "msgpack"
    elif parser != "default":
        _fail(f"unknown parser: {parser}")
    if config.get("cookie"):
        kwargs["cookie"] = {"name": "io", "path": "/", "HttpOnly": True, "SameSite": "Lax"}
    kwargs.update(config.get("serverOptions") or {})

    sio = socketio.AsyncServer(**kwargs)
    welcome = config.get("welcome")

    # per-namespace statistics and per-(namespace, sid) handshake data
    stats: dict[str, dict[str, Any]] = {
        ns: {
            "namespace": ns,
            "connections": 0,
            "disconnections": 0,
            "connected": 0,
            "recovered": 0,
            "count": 0,
        }
        for ns in NAMESPACES
    }
    handshakes: dict[tuple[str, str], dict[str, Any]] = {}
    cookies_by_eio_sid: dict[str, list[str | None]] = {}
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    class Handlers(socketio.AsyncNamespace):  # type: ignore[misc]
        def _st(self) -> dict[str, Any]:
            return stats[self.namespace]

        async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            ns = self.namespace
            if ns == "/admin" and not (isinstance(auth, dict) and auth.get("token") == "secret"):
                raise socketio.exceptions.ConnectionRefusedError(
                    "not authorized", {"reason": "bad token"}
                )
            headers: dict[str, str] = {}
            for key, value in environ.items():
                if key.startswith("HTTP_"):
                    headers[key[5:].replace("_", "-").lower()] = value
            if "CONTENT_TYPE" in environ:
                headers["content-type"] = environ["CONTENT_TYPE"]
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            handshakes[(ns, sid)] = {
                "auth": auth if auth is not None else {},
                "headers": headers,
                "query": query,
            }
            st = self._st()
            st["connections"] += 1
            st["connected"] += 1
            if welcome:
                # emitted after the CONNECT packet has been sent
                async def _welcome() -> None:
                    await asyncio.sleep(0)
                    await self.emit(welcome, {"id": sid, "nsp": ns, "recovered": False}, to=sid)

                spawn(_welcome())

        async def on_disconnect(self, sid: str, reason: Any = None) -> None:
            st = self._st()
            st["disconnections"] += 1
            st["connected"] -= 1
            handshakes.pop((self.namespace, sid), None)

        async def on_echo(self, sid: str, *args: Any) -> None:
            await self.emit("echo", _as_data(args), to=sid)

        async def on_echo_ack(self, sid: str, *args: Any) -> Any:
            return _as_data(args)

        async def on_ack_nothing(self, sid: str, *args: Any) -> None:
            return None

        async def trigger_event(self, event: str, *args: Any) -> Any:
            if event == "no_ack":
                # python-socketio acks whatever a handler returns (None included); only
                # "not handled" leaves the ack unanswered, as the Node server's no_ack does
                return self.server.not_handled
            return await super().trigger_event(event, *args)

        async def on_count(self, sid: str, *args: Any) -> None:
            self._st()["count"] += 1

        async def on_get_count(self, sid: str, *args: Any) -> int:
            return int(self._st()["count"])

        async def on_reset_count(self, sid: str, *args: Any) -> int:
            self._st()["count"] = 0
            return 0

        async def on_get_stats(self, sid: str, *args: Any) -> dict[str, Any]:
            return dict(self._st())

        async def on_flood(self, sid: str, spec: Any = None, *args: Any) -> int:
            spec = spec or {}
            n = int(spec.get("n") or 0)
            event = spec.get("event") or "flood"
            payload = spec.get("payload", "x")
            for _ in range(n):
                await self.emit(event, payload, to=sid)
            await self.emit("flood_done", n, to=sid)
            return n

        async def on_server_emit_with_ack(self, sid: str, spec: Any = None, *a: Any) -> None:
            spec = spec or {}
            args = spec.get("args") or []
            timeout = (spec.get("timeout") or 5000) / 1000.0
            event = spec.get("event") or "server_ack"

            async def _call() -> None:
                # emit + callback (rather than sio.call) keeps the raw ack args
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[tuple[Any, ...]] = loop.create_future()

                def _cb(*res: Any) -> None:
                    if not fut.done():
                        fut.set_result(res)

                err: str | None = None
                res: list[Any] = []
                try:
                    await self.emit(event, _as_data(args), to=sid, callback=_cb)
                    res = list(await asyncio.wait_for(fut, timeout))
                except asyncio.TimeoutError:
                    err = "operation has timed out"
                except Exception as exc:
                    err = str(exc) or type(exc).__name__
                await self.emit("client_ack_result", {"err": err, "res": res}, to=sid)

            spawn(_call())

        async def on_server_disconnect(self, sid: str, close: Any = None, *a: Any) -> None:
            if close is True:
                await sio.eio.disconnect(sio.manager.eio_sid_from_sid(sid, self.namespace))
            else:
                await self.disconnect(sid)

        async def on_close_transport(self, sid: str, *args: Any) -> None:
            eio_sid = sio.manager.eio_sid_from_sid(sid, self.namespace)
            if eio_sid is not None:
                await sio.eio.disconnect(eio_sid)

        async def on_get_handshake(self, sid: str, *args: Any) -> dict[str, Any]:
            hs = dict(handshakes.get((self.namespace, sid), {}))
            hs.update(
                transport=sio.transport(sid, self.namespace),
                recovered=False,
                id=sid,
                nsp=self.namespace,
            )
            return hs

        async def on_get_transport(self, sid: str, *args: Any) -> str:
            return str(sio.transport(sid, self.namespace))

        async def on_get_cookies(self, sid: str, *args: Any) -> dict[str, Any]:
            hs = handshakes.get((self.namespace, sid), {})
            eio_sid = sio.manager.eio_sid_from_sid(sid, self.namespace)
            return {
                "handshake": hs.get("headers", {}).get("cookie"),
                "requests": list(cookies_by_eio_sid.get(eio_sid or "", [])),
            }

        async def on_join(self, sid: str, room: Any = None, *args: Any) -> bool:
            await self.enter_room(sid, room)
            return True

        async def on_leave(self, sid: str, room: Any = None, *args: Any) -> bool:
            await self.leave_room(sid, room)
            return True

        async def on_broadcast(self, sid: str, spec: Any = None, *a: Any) -> bool:
            spec = spec or {}
            args = spec.get("args") or []
            event = spec.get("event") or "broadcast"
            await self.emit(event, _as_data(args), to=spec.get("room"))
            return True

    for ns in NAMESPACES:
        sio.register_namespace(Handlers(ns))

    path = (config.get("path") or "/socket.io/").strip("/")
    sio_app = socketio.ASGIApp(sio, socketio_path=path)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # record the Cookie header of every engine.io request, keyed by its sid
        if scope["type"] in ("http", "websocket"):
            qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            eio_sid = qs.get("sid", [None])[-1]
            if eio_sid:
                cookie = None
                for k, v in scope.get("headers", []):
                    if k == b"cookie":
                        cookie = v.decode("latin-1")
                lst = cookies_by_eio_sid.setdefault(eio_sid, [])
                if len(lst) < 1000:
                    lst.append(cookie)
        await sio_app(scope, receive, send)

    return sio, app


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    host = config.get("host", "127.0.0.1")
    port = int(config.get("port") or 0)
    _, app = build(config)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        _fail(f"cannot bind {host}:{port}: {exc}")
    actual_port = sock.getsockname()[1]

    tls = config.get("tls") or {}
    uv_config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws="wsproto",
        lifespan="off",
        timeout_graceful_shutdown=1,
        ssl_keyfile=tls.get("key"),
        ssl_certfile=tls.get("cert"),
    )
    server = uvicorn.Server(uv_config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.01)
        print(f"LISTENING {actual_port}", flush=True)

    async def run() -> None:
        task = asyncio.ensure_future(announce())
        try:
            await server.serve(sockets=[sock])
        finally:
            task.cancel()

    asyncio.run(run())


if __name__ == "__main__":
    main()
