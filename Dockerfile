# job-exporter: the exporter as a container. Runs `serve` by default; the compose demo runs
# `demo` instead. Build: docker build -t job-exporter .
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Metadata first, so the dependency layer is rebuilt only when it changes.
COPY pyproject.toml README.md LICENSE ./
COPY client ./client
COPY exporter ./exporter
# The client is its own distribution (client/), which the server depends on.
RUN pip install --no-compile ./client . \
    && useradd --system --uid 10001 --no-create-home exporter

# Never root: the store lives in a volume the exporter user owns.
RUN mkdir /data && chown exporter /data
USER 10001
VOLUME ["/data"]

EXPOSE 9188

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9188/healthz', timeout=2)"]

ENTRYPOINT ["job-exporter"]
CMD ["serve", "--listen", "0.0.0.0:9188", "--store", "sqlite:////data/job-exporter.db"]
