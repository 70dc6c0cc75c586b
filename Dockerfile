# sio-mqtt gateway image: slim Python 3.11, runs as a non-root user.
#
#   docker build -t sio-mqtt .                      # the gateway only
#   docker build -t sio-mqtt:demo --build-arg EXTRAS=demo .   # + the demo server/device deps
#   docker run --rm -v "$PWD/config:/config:ro" -p 127.0.0.1:9080:9080 sio-mqtt
#
# The default command runs the gateway with /config/gateway.yaml; mount your config directory
# there (docker-compose.yml does, with config/compose.yaml). Every key can also be set from the
# environment: SIO_MQTT_<SECTION>__<KEY>, e.g. -e SIO_MQTT_MQTT__HOST=broker.example.com.
FROM python:3.11-slim

# Optional extras of the package to install (e.g. "demo" for `python -m sio_mqtt.demo server`).
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package (not editable) and drop the sources afterwards.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sio_mqtt ./sio_mqtt
RUN pip install "/src${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /src

# An unprivileged user; /data is its writable working directory (e.g. for outbox.path).
RUN groupadd --system --gid 10001 sio-mqtt \
    && useradd --system --uid 10001 --gid sio-mqtt --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin sio-mqtt \
    && mkdir -p /data /config \
    && chown sio-mqtt:sio-mqtt /data
WORKDIR /data
USER sio-mqtt:sio-mqtt

# /healthz, /readyz and /metrics (set http.host: 0.0.0.0 in the config to reach them from outside)
EXPOSE 9080

# The gateway stops gracefully on SIGTERM (flushes queued messages, publishes "offline").
STOPSIGNAL SIGTERM
ENTRYPOINT ["sio-mqtt"]
CMD ["run", "-c", "/config/gateway.yaml"]
