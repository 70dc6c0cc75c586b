#!/usr/bin/env node
// Reference socket.io 4.8 server for the sio_mqtt test suite.
//
// Usage: node server.js '{"port": 0, "transports": ["polling", "websocket"], ...}'
//
// Options (all optional):
//   port                     0 = let the OS pick a free port (default 0)
//   host                     bind address (default "127.0.0.1")
//   transports               default ["polling", "websocket"]
//   pingInterval, pingTimeout (ms)
//   maxHttpBufferSize        bytes
//   connectionStateRecovery  bool -> {maxDisconnectionDuration: 60000, skipMiddlewares: true}
//   parser                   "default" | "msgpack"
//   cookie                   bool -> engine.io affinity cookie named "io"
//   tls                      {key, cert} file paths -> https server
//   path                     default "/socket.io/"
//   welcome                  event name; if set, every new socket is sent
//                            (welcome, {id, nsp, recovered}) right after connecting
//   serverOptions            extra raw options merged into the Server options
//
// When listening, prints exactly one line "LISTENING <port>" to stdout.
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");
const { URL } = require("url");
const { Server } = require("socket.io");

let config = {};
if (process.argv[2]) {
  try {
    config = JSON.parse(process.argv[2]);
  } catch (e) {
    process.stderr.write(`invalid JSON config: ${e.message}\n`);
    process.exit(2);
  }
}

const host = config.host || "127.0.0.1";
const port = config.port || 0;

const opts = {
  path: config.path || "/socket.io/",
  transports: config.transports || ["polling", "websocket"],
  serveClient: false,
};
if (config.pingInterval !== undefined) opts.pingInterval = config.pingInterval;
if (config.pingTimeout !== undefined) opts.pingTimeout = config.pingTimeout;
if (config.maxHttpBufferSize !== undefined) opts.maxHttpBufferSize = config.maxHttpBufferSize;
if (config.connectionStateRecovery) {
  opts.connectionStateRecovery = { maxDisconnectionDuration: 60000, skipMiddlewares: true };
}
if (config.parser === "msgpack") {
  opts.parser = require("socket.io-msgpack-parser");
} else if (config.parser && config.parser !== "default") {
  process.stderr.write(`unknown parser: ${config.parser}\n`);
  process.exit(2);
}
if (config.cookie) {
  opts.cookie = { name: "io", path: "/", httpOnly: true, sameSite: "lax" };
}
if (config.serverOptions) Object.assign(opts, config.serverOptions);

let httpServer;
if (config.tls) {
  httpServer = https.createServer({
    key: fs.readFileSync(config.tls.key),
    cert: fs.readFileSync(config.tls.cert),
  });
} else {
  httpServer = http.createServer();
}

// Cookie headers seen on every engine.io request (handshake, polls, upgrade),
// keyed by engine.io session id (requests without a sid are the handshake).
const cookiesBySid = new Map();
function recordCookies(req) {
  try {
    const sid = new URL(req.url, "http://x").searchParams.get("sid");
    if (!sid) return;
    let list = cookiesBySid.get(sid);
    if (!list) {
      list = [];
      cookiesBySid.set(sid, list);
    }
    if (list.length < 1000) list.push(req.headers.cookie === undefined ? null : req.headers.cookie);
    recordQuery(sid, req);
  } catch (e) {
    // ignore
  }
}
// the query string of every engine.io request after the handshake (polls, posts, upgrade),
// keyed by engine.io session id, without the per-request keys (t, sid)
const queriesBySid = new Map();
function recordQuery(sid, req) {
  const params = new URL(req.url, "http://x").searchParams;
  params.delete("t");
  params.delete("sid");
  let list = queriesBySid.get(sid);
  if (!list) {
    list = [];
    queriesBySid.set(sid, list);
  }
  if (list.length < 1000) list.push(Object.fromEntries(params));
}
const io = new Server(httpServer, opts);
// after attaching: engine.io re-registers the "request" listeners it finds
httpServer.prependListener("request", recordCookies);
httpServer.prependListener("upgrade", recordCookies);

io.engine.on("connection_error", (err) => {
  process.stderr.write(`engine connection_error: ${err.code} ${err.message}\n`);
});

// per-namespace statistics, keyed by namespace name
const stats = new Map();
function statsFor(name) {
  let s = stats.get(name);
  if (!s) {
    s = { connections: 0, disconnections: 0, connected: 0, recovered: 0, count: 0 };
    stats.set(name, s);
  }
  return s;
}

function isFn(x) {
  return typeof x === "function";
}

// the reason the server saw for each socket's disconnect, keyed by socket id (namespace sid)
const disconnectReasons = new Map();
function recordDisconnect(id, reason) {
  disconnectReasons.set(id, reason);
  if (disconnectReasons.size > 10000) disconnectReasons.delete(disconnectReasons.keys().next().value);
}

function setup(nsp) {
  nsp.on("connection", (socket) => {
    const name = socket.nsp.name;
    const st = statsFor(name);
    st.connections += 1;
    st.connected += 1;
    if (socket.recovered) st.recovered += 1;
    const engineId = socket.conn.id;

    socket.on("disconnect", (reason) => {
      st.disconnections += 1;
      st.connected -= 1;
      recordDisconnect(socket.id, reason);
    });

    // conformance tests: what the server saw of another socket, raw engine.io writes
    socket.on("get_disconnect_reason", (id, cb) => {
      if (isFn(cb)) cb(disconnectReasons.has(id) ? disconnectReasons.get(id) : null);
    });

    socket.on("engine_has", (sid, cb) => {
      if (isFn(cb)) cb(Object.prototype.hasOwnProperty.call(io.engine.clients, sid));
    });

    socket.on("send_raw", (data) => {
      socket.conn.write(String(data)); // one engine.io message, not a valid socket.io packet
    });

    socket.on("get_query", (cb) => {
      if (isFn(cb)) cb({ handshake: socket.handshake.query, requests: queriesBySid.get(engineId) || [] });
    });

    socket.on("error", (err) => {
      process.stderr.write(`socket error ${name} ${socket.id}: ${err && err.message}\n`);
    });

    socket.on("echo", (...args) => {
      socket.emit("echo", ...args);
    });

    socket.on("echo_ack", (...args) => {
      const cb = args.pop();
      if (isFn(cb)) cb(...args);
    });

    socket.on("ack_nothing", (cb) => {
      if (isFn(cb)) cb();
    });

    socket.on("no_ack", () => {});

    socket.on("count", () => {
      st.count += 1;
    });

    socket.on("get_count", (cb) => {
      if (isFn(cb)) cb(st.count);
    });

    socket.on("reset_count", (cb) => {
      st.count = 0;
      if (isFn(cb)) cb(0);
    });

    socket.on("get_stats", (cb) => {
      if (isFn(cb)) cb(Object.assign({ namespace: name }, st));
    });

    socket.on("flood", (spec, cb) => {
      spec = spec || {};
      const n = spec.n || 0;
      const event = spec.event || "flood";
      const payload = spec.payload === undefined ? "x" : spec.payload;
      for (let i = 0; i < n; i++) socket.emit(event, payload);
      socket.emit("flood_done", n);
      if (isFn(cb)) cb(n);
    });

    socket.on("server_emit_with_ack", (spec) => {
      spec = spec || {};
      const args = Array.isArray(spec.args) ? spec.args : [];
      const timeout = spec.timeout || 5000;
      socket.timeout(timeout).emit(spec.event || "server_ack", ...args, (err, ...res) => {
        socket.emit("client_ack_result", {
          err: err ? String(err.message || err) : null,
          res,
        });
      });
    });

    socket.on("server_disconnect", (close) => {
      // close === true also closes the underlying engine.io connection
      socket.disconnect(close === true);
    });

    socket.on("close_transport", (spec) => {
      socket.conn.close();
      // {broadcast: {event, args}}: broadcast in the same tick, so it is certainly missed by the
      // closed connection (the engine drops writes once closing) and the client cannot have
      // reconnected yet: connection-state recovery must replay it
      const b = spec && spec.broadcast;
      if (b) socket.nsp.emit(b.event, ...(Array.isArray(b.args) ? b.args : []));
    });

    socket.on("get_handshake", (cb) => {
      if (!isFn(cb)) return;
      cb({
        auth: socket.handshake.auth,
        headers: socket.handshake.headers,
        query: socket.handshake.query,
        transport: socket.conn.transport.name,
        recovered: socket.recovered,
        id: socket.id,
        nsp: name,
      });
    });

    socket.on("get_transport", (cb) => {
      if (isFn(cb)) cb(socket.conn.transport.name);
    });

    socket.on("get_cookies", (cb) => {
      if (!isFn(cb)) return;
      cb({
        handshake: socket.handshake.headers.cookie === undefined ? null : socket.handshake.headers.cookie,
        requests: cookiesBySid.get(engineId) || [],
      });
    });

    socket.on("join", (room, cb) => {
      socket.join(room);
      if (isFn(cb)) cb(true);
    });

    socket.on("leave", (room, cb) => {
      socket.leave(room);
      if (isFn(cb)) cb(true);
    });

    socket.on("broadcast", (spec, cb) => {
      spec = spec || {};
      const args = Array.isArray(spec.args) ? spec.args : [];
      const target = spec.room ? socket.nsp.to(spec.room) : socket.nsp;
      target.emit(spec.event || "broadcast", ...args);
      if (isFn(cb)) cb(true);
    });

    if (config.welcome) {
      socket.emit(config.welcome, { id: socket.id, nsp: name, recovered: socket.recovered });
    }
  });
}

setup(io.of("/"));
setup(io.of("/chat"));
const admin = io.of("/admin");
admin.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (auth.token === "secret") return next();
  const err = new Error("not authorized");
  err.data = { reason: "bad token" };
  next(err);
});
setup(admin);
setup(io.of(/^\/dyn-\w+$/));

io.engine.on("connection", (conn) => {
  // engine connection closed: keep its cookie records for a short while only
  conn.once("close", () => {
    setTimeout(() => {
      cookiesBySid.delete(conn.id);
      queriesBySid.delete(conn.id);
    }, 60000).unref();
  });
});

httpServer.on("error", (err) => {
  process.stderr.write(`server error: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.listen(port, host, () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});

// raw TCP connections, so that shutdown does not wait for peers that keep a
// socket open after a close frame
const rawSockets = new Set();
httpServer.on("connection", (sock) => {
  rawSockets.add(sock);
  sock.once("close", () => rawSockets.delete(sock));
});
httpServer.on("secureConnection", (sock) => {
  rawSockets.add(sock);
  sock.once("close", () => rawSockets.delete(sock));
});

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  setTimeout(() => process.exit(0), 2000).unref();
  // graceful: disconnect packets / close frames first, then drop what is left
  io.close(() => process.exit(0));
  setTimeout(() => {
    for (const sock of rawSockets) sock.destroy();
  }, 200).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
process.on("uncaughtException", (err) => {
  process.stderr.write(`uncaught: ${err.stack || err}\n`);
});

// ---------------------------------------------------------------------------
// Fault-injection support (tests/faults): a durable recorder and a sequenced stream.
//
// Options:
//   recordFile   path: every "record" event is appended to it as one JSON line
//                {"nsp", "event", "args"} (synchronously, before the ack), so the record
//                survives a SIGKILL; lines already in the file are loaded at start
//   recordRate   "record" events processed (recorded and acked) per second, in order
//                (0 = at once): a slow server
//
// Events (namespaces "/" and "/chat"):
//   record(...args, cb)      record (nsp, "record", args), then ack true; with recordRate > 0
//                            both happen later, recordRate events per second, in order
//   get_recorded(cb)         cb([{event, args}, ...]) for this namespace
//   clear_recorded(cb)       forget this namespace's record (memory and file)
//   set_record_rate(r, cb)   change recordRate at run time
//   stream(spec, cb)         broadcast spec.event (default "seq") with {seq, stream, pad} for
//                            seq = spec.start (default 0) .. spec.n - 1 to every other socket of
//                            the namespace, spec.rate events per second (0 = as fast as
//                            possible); "stream_done" {stream, n} to the sender at the end
//   stream_stop(cb)          stop this namespace's stream
// ---------------------------------------------------------------------------
const recorded = new Map(); // nsp -> [{event, args}]
function recordedFor(name) {
  let list = recorded.get(name);
  if (!list) {
    list = [];
    recorded.set(name, list);
  }
  return list;
}
if (config.recordFile && fs.existsSync(config.recordFile)) {
  for (const line of fs.readFileSync(config.recordFile, "utf8").split("\n")) {
    if (!line) continue;
    try {
      const entry = JSON.parse(line);
      recordedFor(entry.nsp).push({ event: entry.event, args: entry.args });
    } catch (e) {
      // a torn last line: ignore
    }
  }
}
let recordRate = config.recordRate || 0;
const backlog = []; // record events waiting for the slow server (recordRate > 0)
let pumpTimer = null;
let credit = 0;
function pump() {
  if (recordRate <= 0) {
    while (backlog.length) backlog.shift()();
  } else {
    credit += recordRate / 100;
    while (credit >= 1 && backlog.length) {
      credit -= 1;
      backlog.shift()();
    }
    if (!backlog.length) credit = 0;
  }
  if (!backlog.length && pumpTimer) {
    clearInterval(pumpTimer);
    pumpTimer = null;
  }
}
// a slow server processes (records and acks) recordRate events per second, in order
function processLater(fn) {
  if (recordRate <= 0 && !backlog.length) {
    fn();
    return;
  }
  backlog.push(fn);
  if (!pumpTimer) pumpTimer = setInterval(pump, 10);
}
const streams = new Map(); // nsp -> {stopped}

function setupFaults(nsp) {
  nsp.on("connection", (socket) => {
    const name = socket.nsp.name;
    socket.on("record", (...args) => {
      const cb = isFn(args[args.length - 1]) ? args.pop() : null;
      const process = () => {
        recordedFor(name).push({ event: "record", args });
        if (config.recordFile) {
          fs.appendFileSync(config.recordFile, JSON.stringify({ nsp: name, event: "record", args }) + "\n");
        }
        if (cb) cb(true);
      };
      processLater(process);
    });
    socket.on("get_recorded", (cb) => {
      if (isFn(cb)) cb(recordedFor(name));
    });
    socket.on("clear_recorded", (cb) => {
      recorded.set(name, []);
      if (config.recordFile && fs.existsSync(config.recordFile)) {
        const keep = fs
          .readFileSync(config.recordFile, "utf8")
          .split("\n")
          .filter((line) => line && !line.startsWith(JSON.stringify({ nsp: name }).slice(0, -1) + ","));
        fs.writeFileSync(config.recordFile, keep.map((l) => l + "\n").join(""));
      }
      if (isFn(cb)) cb(true);
    });
    socket.on("set_record_rate", (rate, cb) => {
      recordRate = Number(rate) || 0;
      if (isFn(cb)) cb(recordRate);
    });
    socket.on("stream", (spec, cb) => {
      spec = spec || {};
      const n = spec.n || 0;
      const event = spec.event || "seq";
      const id = spec.stream || "s";
      const pad = "x".repeat(spec.padding || 0);
      const perTick = spec.rate ? Math.max(1, Math.round(spec.rate / 100)) : 500;
      const old = streams.get(name);
      if (old) old.stopped = true;
      const state = { stopped: false };
      streams.set(name, state);
      let seq = spec.start || 0;
      const tick = () => {
        if (state.stopped) return;
        for (let i = 0; i < perTick && seq < n; i++, seq++) {
          socket.broadcast.emit(event, { seq, stream: id, pad });
        }
        if (seq < n) {
          if (spec.rate) setTimeout(tick, 10);
          else setImmediate(tick);
        } else {
          socket.emit("stream_done", { stream: id, n });
        }
      };
      tick();
      if (isFn(cb)) cb(true);
    });
    socket.on("stream_stop", (cb) => {
      const st = streams.get(name);
      if (st) st.stopped = true;
      if (isFn(cb)) cb(true);
    });
  });
}
setupFaults(io.of("/"));
setupFaults(io.of("/chat"));

// ---------------------------------------------------------------------------
// Device sessions (gateway devices.enabled): namespace "/devices", one socket per MQTT device.
// Its auth middleware accepts a device (handshake auth {device}) unless it was denied, or its id
// contains "intruder" and it was not allowed: refused with Error("unknown device <id>").
// Control events on "/" (the test's own client):
//   devices_list(prefix, cb)        cb([{device, id, rooms}]) of connected device sockets
//   devices_count(cb)               cb(number of connected device sockets)
//   devices_log(prefix, cb)         cb([{device, type: "connect"|"disconnect"|"refused", reason}])
//   devices_allow(device, cb) / devices_deny(device, cb)
//   devices_join({device, room}, cb)
//   devices_emit({device | room, event, args, ack}, cb)  emit to one socket (io.to(socket.id))
//                                   or a room; ack: cb(the device's ack args), else cb(true)
//   devices_broadcast({event, args}, cb)   emit to the whole namespace
//   devices_disconnect(device, cb)  socket.disconnect() ("io server disconnect" on the client)
//   devices_events(prefix, cb)      cb([{device, event, args}]) events the devices emitted
// A device's own events are recorded and acked with {device, event, args}.
// ---------------------------------------------------------------------------
const devicesNsp = io.of("/devices");
const deviceAllowed = new Set();
const deviceDenied = new Set();
const deviceLog = [];
const deviceEvents = [];
function devicesOf(prefix) {
  const out = [];
  for (const [id, sock] of devicesNsp.sockets) {
    const d = sock.data.device;
    if (!prefix || d.startsWith(prefix)) out.push({ device: d, id, rooms: [...sock.rooms].filter((r) => r !== id) });
  }
  return out;
}
function deviceSocket(device) {
  for (const sock of devicesNsp.sockets.values()) if (sock.data.device === device) return sock;
  return null;
}
devicesNsp.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const d = typeof auth.device === "string" ? auth.device : "";
  const known = d && !deviceDenied.has(d) && (!d.includes("intruder") || deviceAllowed.has(d));
  if (known) {
    socket.data.device = d;
    return next();
  }
  deviceLog.push({ device: d, type: "refused", reason: "unknown device" });
  next(new Error(`unknown device ${d}`));
});
devicesNsp.on("connection", (socket) => {
  const d = socket.data.device;
  deviceLog.push({ device: d, type: "connect", reason: null, token: (socket.handshake.auth || {}).token || null });
  socket.on("disconnect", (reason) => deviceLog.push({ device: d, type: "disconnect", reason }));
  socket.onAny((event, ...args) => {
    const cb = isFn(args[args.length - 1]) ? args.pop() : null;
    deviceEvents.push({ device: d, event, args });
    if (deviceEvents.length > 100000) deviceEvents.shift();
    if (cb) cb({ device: d, event, args });
  });
});
function setupDeviceControl(nsp) {
  nsp.on("connection", (socket) => {
    const filt = (list, prefix) => list.filter((e) => !prefix || (e.device || "").startsWith(prefix));
    socket.on("devices_list", (prefix, cb) => isFn(cb) && cb(devicesOf(prefix)));
    socket.on("devices_count", (cb) => isFn(cb) && cb(devicesNsp.sockets.size));
    socket.on("devices_log", (prefix, cb) => isFn(cb) && cb(filt(deviceLog, prefix)));
    socket.on("devices_events", (prefix, cb) => isFn(cb) && cb(filt(deviceEvents, prefix)));
    socket.on("devices_allow", (d, cb) => {
      deviceAllowed.add(d);
      deviceDenied.delete(d);
      if (isFn(cb)) cb(true);
    });
    socket.on("devices_deny", (d, cb) => {
      deviceDenied.add(d);
      if (isFn(cb)) cb(true);
    });
    socket.on("devices_join", (spec, cb) => {
      const sock = deviceSocket(spec.device);
      if (sock) sock.join(spec.room);
      if (isFn(cb)) cb(!!sock);
    });
    socket.on("devices_emit", (spec, cb) => {
      const args = Array.isArray(spec.args) ? spec.args : [];
      if (spec.room) {
        devicesNsp.to(spec.room).emit(spec.event, ...args);
        if (isFn(cb)) cb(true);
        return;
      }
      const sock = deviceSocket(spec.device);
      if (!sock) {
        if (isFn(cb)) cb({ error: "no such device" });
        return;
      }
      if (spec.ack) {
        sock.timeout(spec.timeout || 5000).emit(spec.event, ...args, (err, ...res) => {
          if (isFn(cb)) cb(err ? { error: String(err.message || err) } : { res });
        });
      } else {
        devicesNsp.to(sock.id).emit(spec.event, ...args);
        if (isFn(cb)) cb(true);
      }
    });
    socket.on("devices_broadcast", (spec, cb) => {
      devicesNsp.emit(spec.event, ...(Array.isArray(spec.args) ? spec.args : []));
      if (isFn(cb)) cb(true);
    });
    socket.on("devices_disconnect", (d, cb) => {
      const sock = deviceSocket(d);
      if (sock) sock.disconnect();
      if (isFn(cb)) cb(!!sock);
    });
  });
}
setupDeviceControl(io.of("/"));
