"""The hand-written MQTT <-> Socket.IO bridge the gateway is measured against: python-socketio's
Client + paho-mqtt, written the way a user would (kept deliberately naive; do not optimise it).

    python -m benchmarks.naive_bridge --url http://127.0.0.1:3000 --mqtt-port 1883

bench/in/<event>  -> sio.emit(event, payload)
bench/req/<event> -> sio.call(event, payload), reply to the MQTT v5 response topic
any Socket.IO event -> bench/out/<event> (QoS 1)
"""

import argparse
import json

import paho.mqtt.client as mqtt
import socketio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--mqtt-host", default="127.0.0.1")
ap.add_argument("--mqtt-port", type=int, default=1883)
args = ap.parse_args()

sio = socketio.Client()
mq = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)


def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe([("bench/in/+", 1), ("bench/req/+", 1)])


def on_message(client, userdata, msg):
    _, kind, event = msg.topic.split("/", 2)
    try:
        data = json.loads(msg.payload)
    except ValueError:
        data = msg.payload.decode()
    if kind == "req":
        result = sio.call(event, data, timeout=5)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        reply = json.dumps({"status": "ok", "args": [result]})
        mq.publish(msg.properties.ResponseTopic, reply, qos=1, properties=props)
    else:
        sio.emit(event, data)


@sio.on("*")
def any_event(event, *data):
    mq.publish(f"bench/out/{event}", json.dumps(data[0] if len(data) == 1 else data), qos=1)


mq.on_connect = on_connect
mq.on_message = on_message
sio.connect(args.url)
mq.connect(args.mqtt_host, args.mqtt_port)
mq.loop_start()
print("READY", flush=True)
sio.wait()
