# The one image of every stage: `telemetry <stage>` (see docs/deploy.md).
# python:3.11-slim as published on 2026-08-05 (Python 3.11.15, Debian trixie),
# pinned by its multi-platform index digest: see docs/deploy.md for how to move it.
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TELEMETRY_HOST=0.0.0.0 \
    TELEMETRY_METRICS_PORT=9100
WORKDIR /app

# Dependencies first, from the hashed lock CI also installs: this layer is
# rebuilt only when the lock changes, not at every code change.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY telemetry ./telemetry
COPY migrations ./migrations
RUN pip install --no-deps --no-build-isolation .

USER 65534:65534
# /healthz of the HTTP services, /metrics of the workers (TELEMETRY_METRICS_PORT).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "telemetry.healthcheck"]
ENTRYPOINT ["telemetry"]
CMD ["--help"]

# docker compose's AWS emulation (`telemetry emulator`): the same image plus moto,
# its data kept in the /data volume across restarts. Never deployed.
FROM app AS emulator
USER 0
COPY requirements-emulator.lock ./
RUN pip install --require-hashes --no-deps -r requirements-emulator.lock \
    && mkdir /data && chown 65534:65534 /data
USER 65534:65534
HEALTHCHECK --interval=2s --timeout=5s --start-period=10s --retries=60 \
    CMD ["python", "-c", "import os, urllib.request as u; assert os.path.exists('/tmp/telemetry-emulator-ready'); u.urlopen('http://127.0.0.1:5000/moto-api/')"]
CMD ["emulator", "--state-dir", "/data"]

# The default target: every stage.
FROM app
