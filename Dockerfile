FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY telemetry ./telemetry
COPY migrations ./migrations
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["telemetry"]
