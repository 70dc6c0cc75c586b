// Many socket.io-client sessions in one Node process (the peer of benchmarks/many_sessions.py).
//   NODE_PATH=tests/servers/node/node_modules node benchmarks/many_sessions.js URL N HOLD_S
// Prints one "RESULT {json}" line with the same figures as the Python side.
"use strict";
const fs = require("fs");
const { io } = require("socket.io-client");

const [url, nArg, holdArg] = process.argv.slice(2);
const n = parseInt(nArg, 10);
const holdMs = parseFloat(holdArg) * 1000;

function status() {
  const text = fs.readFileSync("/proc/self/status", "utf8");
  const rss = parseInt(/VmRSS:\s+(\d+)/.exec(text)[1], 10) / 1024;
  const threads = parseInt(/Threads:\s+(\d+)/.exec(text)[1], 10);
  return [rss, threads];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
  let connected = 0;
  let got = 0;
  let disconnects = 0;
  let onAllConnected;
  let onAllGot;
  const allConnected = new Promise((r) => (onAllConnected = r));
  const allGot = new Promise((r) => (onAllGot = r));
  const sockets = [];
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const s = io(url, { transports: ["websocket"], forceNew: true });
    s.on("connect", () => {
      connected += 1;
      if (connected === n) onAllConnected();
    });
    s.on("bcast", () => {
      got += 1;
      if (got === n) onAllGot();
    });
    s.on("disconnect", () => (disconnects += 1));
    sockets.push(s);
  }
  await allConnected;
  const connectS = now() - t0;
  await sleep(3000); // steady state, as on the Python side
  const [rss1, threads1] = status();
  const t1 = now();
  sockets[0].emit("broadcast", { event: "bcast", args: [1] });
  await allGot;
  const broadcastS = now() - t1;
  await sleep(holdMs);
  const [rss2, threads2] = status();
  const alive = sockets.filter((s) => s.connected).length;
  const lost = disconnects;
  const t2 = now();
  for (const s of sockets) s.disconnect();
  const result = {
    connect_s: connectS,
    rss_mb: Math.max(rss1, rss2),
    threads: Math.max(threads1, threads2),
    broadcast_s: broadcastS,
    connected_after_hold: alive,
    disconnects: lost,
    disconnect_all_s: now() - t2,
    threads_after_disconnect: status()[1],
  };
  process.stdout.write("RESULT " + JSON.stringify(result) + "\n", () => process.exit(0));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
