"""``FastClient`` (sio_mqtt/gateway/paho_fast.py) against a real mosquitto, side by side with stock
paho: a stock and a fast subscriber on the same topics receive the same 20,000 messages from one
publisher (MQTT 3.1.1 and 5, QoS 0/1/2, paho's auto-acks and manual acks from another thread --
queued, or written by that thread with ``writing_now`` --, MQTT 5 properties, payloads from 0
bytes to 64 KiB), in the publisher's order; afterwards the broker has nothing left to redeliver
to either (every QoS 1/2 message was acknowledged). Also: a FastClient publishing from several
threads with and without ``writing_now``, TLS, and reconnecting after a broker restart."""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from servers.pki import Pki, mosquitto_tls_listener
from servers.procs import Mosquitto

from sio_mqtt.gateway.paho_fast import FAST_OK, FastClient

HOST = "127.0.0.1"
N = 5_000
E_ACUTE = "\u00e9"
CHUNK = 250  # publish this many, then wait for both subscribers (mosquitto queues 1000 at most)

pytestmark = pytest.mark.skipif(not FAST_OK, reason="paho_fast disabled for this paho")

Received = tuple[str, bytes, int, bool, Any]


class Sub:
    """A subscriber on ``pf/<id>/#``, recording what it receives; ``manual``: acks from a
    worker thread (what the gateway does)."""

    def __init__(
        self,
        cls: type[mqtt.Client],
        port: int,
        prefix: str,
        v5: bool,
        qos: int,
        manual: bool,
        client_id: str,
        tls_ca: Path | None = None,
        subscribe: bool = True,
        now: bool = False,
    ) -> None:
        self.v5 = v5
        self.manual = manual
        self.now = now and isinstance(cls, type) and issubclass(cls, FastClient)
        self.client = cls(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=manual,
        )
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca), cert_reqs=ssl.CERT_REQUIRED)
        self.msgs: list[Received] = []
        self.cond = threading.Condition()
        self.acks: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self.acked = 0
        self.connected = threading.Event()
        self.connects = 0
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
            self.connects += 1
            self.connected.set()
            if subscribe:
                c.subscribe(f"{prefix}/#", qos=qos)

        self.client.on_connect = on_connect
        self.worker = threading.Thread(target=self._acker, daemon=True)
        self.worker.start()
        props = None
        kwargs: dict[str, Any] = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 300
            kwargs = {"clean_start": False, "properties": props}
        self.client.connect(HOST, port, **kwargs)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("no CONNACK")

    def _acker(self) -> None:
        while True:
            item = self.acks.get()
            if item is None:
                return
            if self.now:
                with self.client.writing_now():  # type: ignore[attr-defined]
                    self.client.ack(*item)
            else:
                self.client.ack(*item)
            self.acked += 1

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties.json() if msg.properties is not None else None
        with self.cond:
            self.msgs.append((msg.topic, msg.payload, msg.qos, msg.retain, props))
            self.cond.notify_all()
        if self.manual and msg.qos:
            self.acks.put((msg.mid, msg.qos))

    def wait_count(self, n: int, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.msgs) >= n, timeout)

    def close(self) -> None:
        if self.manual:  # every queued ack handed to paho first
            deadline = time.monotonic() + 10
            while self.acked < sum(1 for m in self.msgs if m[2]) and time.monotonic() < deadline:
                time.sleep(0.01)
        self.acks.put(None)
        self.client.disconnect()
        self.client.loop_stop()


def message(k: int, v5: bool, prefix: str) -> tuple[str, bytes, Properties | None]:
    topic = f"{prefix}/{k % 7}/{E_ACUTE if k % 11 == 0 else 'x'}"
    if k % 997 == 0:
        payload = bytes(range(256)) * 256  # 64 KiB: more than one recv
    elif k % 13 == 0:
        payload = b""
    else:
        payload = b"m%d:" % k + b"p" * (k % 50)
    props = None
    if v5 and k % 3 == 0:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = f"reply/{k}"
        props.CorrelationData = k.to_bytes(4, "big")
        props.UserProperty = [("k", str(k)), ("x", "y")]
    return topic, payload, props


def expected_props(props: Properties | None, v5: bool) -> Any:
    if not v5:
        return None
    if props is None:
        return {}
    return props.json()  # type: ignore[no-untyped-call]


def run_case(
    port: int,
    v5: bool,
    qos: int,
    manual: bool,
    n: int = N,
    tls_ca: Path | None = None,
    now: bool = False,
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"pf/{run}"
    ids = {"stock": f"pf-stock-{run}", "fast": f"pf-fast-{run}"}
    subs = {
        "stock": Sub(mqtt.Client, port, prefix, v5, qos, manual, ids["stock"], tls_ca),
        "fast": Sub(FastClient, port, prefix, v5, qos, manual, ids["fast"], tls_ca, now=now),
    }
    pub = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"pf-pub-{run}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if tls_ca is not None:
        pub.tls_set(ca_certs=str(tls_ca), cert_reqs=ssl.CERT_REQUIRED)
    pub.max_inflight_messages_set(20)  # mosquitto drops QoS 2 beyond its 20 in flight
    pub.connect(HOST, port)
    pub.loop_start()
    try:
        for s in subs.values():
            assert s.subscribed.wait(10)
        expected: list[Received] = []
        for start in range(0, n, CHUNK):
            for k in range(start, min(n, start + CHUNK)):
                topic, payload, props = message(k, v5, prefix)
                pub.publish(topic, payload, qos=qos, properties=props)
                expected.append((topic, payload, qos, False, expected_props(props, v5)))
            for name, s in subs.items():
                assert s.wait_count(len(expected)), f"{name}: {len(s.msgs)}/{len(expected)}"
        time.sleep(0.2)  # nothing more arrives
        for name, s in subs.items():
            assert len(s.msgs) == n, name
            assert s.msgs == expected, name
    finally:
        pub.disconnect()
        pub.loop_stop()
        for s in subs.values():
            s.close()
    if qos == 0:
        return
    # the persistent sessions: nothing left to redeliver (all acknowledged), nothing lost
    for name in ("stock", "fast"):
        cls: type[mqtt.Client] = FastClient if name == "fast" else mqtt.Client
        again = Sub(cls, port, prefix, v5, qos, False, ids[name], tls_ca, subscribe=False)
        try:
            time.sleep(1.0)
            assert again.msgs == [], f"{name}: {len(again.msgs)} redelivered"
        finally:
            again.close()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
@pytest.mark.parametrize(
    ("qos", "manual", "now"),
    [
        (0, False, False),
        (1, False, False),
        (1, True, False),
        (1, True, True),
        (2, False, False),
        (2, True, False),
        (2, True, True),
    ],
    ids=[
        "qos0",
        "qos1-auto",
        "qos1-manual",
        "qos1-manual-now",
        "qos2-auto",
        "qos2-manual",
        "qos2-manual-now",
    ],
)
def test_same_delivery_as_stock(
    mosquitto: Mosquitto, v5: bool, qos: int, manual: bool, now: bool
) -> None:
    run_case(mosquitto.port, v5, qos, manual, now=now)


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_publishing_threads_with_writing_now(mosquitto: Mosquitto, v5: bool) -> None:
    """A FastClient under loop_start, published to by four threads at once -- two writing their
    packets themselves (``writing_now``), two queueing -- QoS 0, 1 and 2 mixed: a stock
    subscriber gets every message once and whole, over one connection; every QoS 1/2 publish is
    acknowledged (paho's in-flight bookkeeping intact)."""
    run = uuid.uuid4().hex[:8]
    prefix = f"pf/{run}"
    per = 1500  # a multiple of CHUNK // 4
    sub = Sub(mqtt.Client, mosquitto.port, prefix, v5, 2, False, f"pf-wn-sub-{run}")
    pub = FastClient(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"pf-wn-pub-{run}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    pub.max_inflight_messages_set(20)  # mosquitto drops QoS 2 beyond its 20 in flight
    pub.max_queued_messages_set(0)
    acked: list[int] = []
    pub.on_publish = lambda c, u, mid, rc, p: acked.append(mid)
    connected = threading.Event()
    pub_connects = [0]

    def on_connect(*a: Any) -> None:
        pub_connects[0] += 1
        connected.set()

    pub.on_connect = on_connect
    written_now = [0]
    send_now = pub._fast_send_now

    def counting(mpkt: Any) -> bool | None:
        done = send_now(mpkt)
        written_now[0] += done is True
        return done

    pub._fast_send_now = counting  # type: ignore[method-assign]
    pub.connect(HOST, mosquitto.port)
    pub.loop_start()

    step = CHUNK // 4  # per thread, then all wait for the subscriber (mosquitto's queue)
    rounds = [0]

    def caught_up() -> None:
        rounds[0] += 1
        assert sub.wait_count(4 * step * rounds[0]), len(sub.msgs)

    barrier = threading.Barrier(4, action=caught_up, timeout=60)

    def publisher(t: int) -> None:
        for k in range(per):
            if k and k % step == 0:
                barrier.wait()
            topic, payload, props = message(k, v5, f"{prefix}/{t}")
            qos = (0, 1, 1, 2)[k % 4]
            time.sleep(0.0005)  # room in the in-flight window (else paho holds them back)
            if t % 2 == 0:
                with pub.writing_now():
                    pub.publish(topic, payload, qos=qos, properties=props)
            else:
                pub.publish(topic, payload, qos=qos, properties=props)

    try:
        assert connected.wait(10) and sub.subscribed.wait(10)
        threads = [threading.Thread(target=publisher, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert sub.wait_count(4 * per, 60), len(sub.msgs)
        # every message once and whole (a packet interleaved with another would be malformed:
        # the broker would drop the connection, and messages with it)
        got = sorted((m[0], m[1], m[2]) for m in sub.msgs)
        want = sorted(
            (*message(k, v5, f"{prefix}/{t}")[:2], (0, 1, 1, 2)[k % 4])
            for t in range(4)
            for k in range(per)
        )
        assert got == want
        assert pub_connects == [1]
        assert written_now[0] > 100  # the writing threads did write
        # each thread's QoS 0 messages in order (QoS 1/2 go through paho's and the broker's
        # in-flight windows, which reorder across QoS levels and threads with stock paho too)
        for t in range(4):
            seq = [m[1] for m in sub.msgs if m[0].startswith(f"{prefix}/{t}/") and m[2] == 0]
            assert seq == [message(k, v5, "")[1] for k in range(0, per, 4)], t
        deadline = time.monotonic() + 10
        c: Any = pub
        while (c._out_messages or c._out_packet) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not c._out_messages and not c._out_packet and c._inflight_messages == 0
        assert len(acked) == 4 * per  # on_publish: QoS 0 written, QoS 1/2 acknowledged
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.close()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, Path]]:
    pki = Pki(tmp_path_factory.mktemp("pf-pki"))
    extra = mosquitto_tls_listener(pki.ca_cert, pki.server("server"))
    with Mosquitto(config_extra=extra) as broker:
        yield broker, pki.ca_cert


@pytest.mark.parametrize("manual", [False, True], ids=["auto", "manual"])
def test_same_delivery_over_tls(tls_broker: tuple[Mosquitto, Path], manual: bool) -> None:
    broker, ca = tls_broker
    run_case(broker.port, True, 1, manual, n=5000, tls_ca=ca)


def test_reconnects_after_broker_restart(
    mosquitto_factory: Any,
) -> None:
    broker = mosquitto_factory(persistent=True)
    run = uuid.uuid4().hex[:8]
    sub = Sub(FastClient, broker.port, f"pf/{run}", True, 1, True, f"pf-re-{run}")
    sub.client.reconnect_delay_set(1, 1)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        assert sub.subscribed.wait(10)
        pub.connect(HOST, broker.port)
        pub.loop_start()
        pub.publish(f"pf/{run}/a", b"before", qos=1).wait_for_publish(5)
        assert sub.wait_count(1, 5)
        # on_message runs before the PUBACK is written: a QoS 1 round trip on the same
        # connection proves the broker has that PUBACK before it restarts (else it redelivers)
        sub.client.publish(f"pf-sync/{run}", b"sync", qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        broker.restart()
        deadline = time.monotonic() + 15
        while sub.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sub.connects == 2
        pub.connect(HOST, broker.port)
        pub.loop_start()
        for k in range(500):
            pub.publish(f"pf/{run}/b", b"after %d" % k, qos=1)
        assert sub.wait_count(501, 15)
        assert [m[1] for m in sub.msgs] == [b"before"] + [b"after %d" % k for k in range(500)]
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.close()


@pytest.mark.parametrize("cls", [mqtt.Client, FastClient], ids=["stock", "fast"])
def test_loop_round_after_a_clean_disconnect(
    mosquitto: Mosquitto, cls: type[mqtt.Client], caplog: pytest.LogCaptureFixture
) -> None:
    """paho's loop_forever can run ``_loop`` once more after writing the DISCONNECT that
    ``disconnect()`` asked for (before ``loop_stop()`` takes effect). Stock paho logs that
    round as an error; FastClient returns the same code without the log."""
    client = cls(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.enable_logger(logging.getLogger("paho-under-test"))
    gone = threading.Event()
    connected = threading.Event()
    client.on_disconnect = lambda *a: gone.set()
    client.on_connect = lambda *a: connected.set()
    client.connect(HOST, mosquitto.port)
    client.loop_start()
    try:
        # wait for the CONNACK: paho's CONNACK handler sets the state to "connected" even after
        # disconnect() set "disconnecting", so a CONNACK read after disconnect() (one run in four)
        # leaves a closed client that paho takes for a lost connection, not a clean disconnect
        assert connected.wait(5)
        client.disconnect()
        assert gone.wait(5)
        client.loop_stop()
        with caplog.at_level(logging.DEBUG, logger="paho-under-test"):
            rc = client._loop(0.01)
        assert rc == mqtt.MQTT_ERR_NO_CONN
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        if cls is FastClient:
            assert errors == []
        else:
            assert any("not connected" in m for m in errors)
    finally:
        client.loop_stop()
