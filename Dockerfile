# job-exporter: the exporter as a container. Runs `serve` by default; the compose demo runs
# `demo` instead. Build: docker build -t job-exporter .
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The extras installed with the server: a PostgreSQL store (several replicas on one
# database) and RQ sources. `--build-arg EXTRAS=` builds without them.
ARG EXTRAS="postgresql rq"

WORKDIR /app

# Never root: the exporter's own user and group (uid and gid 10001, which the Kubernetes
# manifests name too), owning the store's volume.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home exporter \
    && mkdir /data \
    && chown exporter:exporter /data

# The dependencies first, from the two pyproject.toml files alone (client/ holds only its
# metadata: its code is exporter/'s), so an edit of the code reuses this layer and only a
# change of the dependencies or of EXTRAS installs them again.
COPY pyproject.toml ./
COPY client ./client
COPY scripts/image-requirements ./scripts/
RUN python scripts/image-requirements $EXTRAS > /tmp/requirements.txt \
    && pip install --no-compile -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code, installed without touching the dependencies: the client's distribution
# first (the server depends on it), each with no build isolation (the backend is installed
# above), and pip check fails the build if the layer above missed a requirement.
COPY README.md LICENSE ./
COPY exporter ./exporter
RUN pip install --no-compile --no-deps --no-build-isolation ./client . \
    && pip check

# The source revision job_exporter_build_info reports, e.g.
# `docker build --build-arg REVISION="$(git rev-parse HEAD)" .`; declared after the layers
# above, since it changes with every commit. Empty: `unknown`.
ARG REVISION=""
ENV JOB_EXPORTER_REVISION=$REVISION
LABEL org.opencontainers.image.revision=$REVISION

USER 10001:10001
VOLUME ["/data"]

EXPOSE 9188

# Checks the address `serve` listens on, found as serve finds it (its --listen, then
# JOB_EXPORTER_LISTEN, then --config's file, then the default): see `job-exporter healthcheck
# --help`.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["job-exporter", "healthcheck"]

ENTRYPOINT ["job-exporter"]
CMD ["serve", "--listen", "0.0.0.0:9188", "--store", "sqlite:////data/job-exporter.db"]
