# syntax=docker/dockerfile:1
# preview-worker image: build a wheel, install it into a venv, copy only the venv into a slim
# runtime. Contract (the Helm chart relies on it; tests/test_dockerfile.py checks it):
#   * runs as UID/GID 10001 (numeric USER, so runAsNonRoot can verify it);
#   * works with a read-only root filesystem: writes only to /tmp and DATA_DIR=/data;
#   * tini is PID 1: it forwards SIGTERM to the worker and reaps children. The worker drains
#     for PREVIEW_SHUTDOWN_GRACE_SECONDS and exits 0. Override CMD/args, not the ENTRYPOINT.
# The base is pinned by tag (python 3.11, Debian 12 "bookworm"); see docs/deployment.md for
# pinning it by digest once resolved from a registry.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest of the checkout out).
COPY pyproject.toml README.md ./
COPY app ./app
# Binary wheels only: the runtime never needs a compiler, and neither does this stage.
RUN python -m pip wheel --only-binary=:all: --wheel-dir /wheels . \
 && python -m venv /opt/preview-worker \
 && /opt/preview-worker/bin/pip install --no-index --find-links /wheels --only-binary=:all: \
      preview-worker \
 && /opt/preview-worker/bin/pip uninstall --yes pip \
 && /opt/preview-worker/bin/preview-worker --version

# ---------------------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="preview-worker" \
      org.opencontainers.image.description="Renders short preview videos of board-game tutorials from jobs on a Redis queue." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/preview-worker/preview-worker" \
      org.opencontainers.image.documentation="https://github.com/preview-worker/preview-worker/blob/main/docs/deployment.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# tini: signal forwarding and child reaping as PID 1. The apt lists go with the same layer.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends tini=0.19.0-1* \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
 && groupadd --system --gid 10001 preview \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin preview \
 && install --directory --owner 10001 --group 10001 --mode 0750 /data

COPY --from=build /opt/preview-worker /opt/preview-worker

# Nothing writes below / at run time: no .pyc (compiled at install), caches and HOME in /tmp.
ENV PATH=/opt/preview-worker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    DATA_DIR=/data \
    PREVIEW_ASSETS_DIR=/data/assets \
    PREVIEW_HEALTH_PORT=3000 \
    PREVIEW_LOG_FORMAT=json

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["preview-worker", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "preview-worker"]
CMD ["run"]
