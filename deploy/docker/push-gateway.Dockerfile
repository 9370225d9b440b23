# syntax=docker/dockerfile:1
# The push-gateway image: `python -m anvil_push_gateway` (serve | migrate).
# Build context = the repository root:
#   docker build -f deploy/docker/push-gateway.Dockerfile -t anvil-push-gateway:TAG .
# Only this service and the libs it depends on are copied (push-gateway.Dockerfile.dockerignore
# narrows the context the same way). Never built on our machines: see deploy/README.md.

# Pin the minor version and the Debian release; pin a digest in your pipeline
# (--build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
COPY libs/anvil_wire/ libs/anvil_wire/
COPY libs/anvil_common/ libs/anvil_common/
COPY services/push-gateway/ services/push-gateway/
# Every third-party version comes from constraints.txt; the local paths satisfy anvil-wire and
# anvil-common, so nothing of ours is looked up in a package index.
RUN pip wheel --prefer-binary --wheel-dir /wheels -c constraints.txt \
        ./libs/anvil_wire ./libs/anvil_common ./services/push-gateway

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="anvil-push-gateway" \
      org.opencontainers.image.description="Anvil push gateway: WebSocket and HTTP fan-out of signed config revisions"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANVIL_DATA_DIR=/tmp/anvil \
    ANVIL_PUSH_GATEWAY_HOST=0.0.0.0 \
    ANVIL_PUSH_GATEWAY_PORT=8020
RUN groupadd --system --gid 10001 anvil \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin anvil
# The wheels are bind-mounted, not copied: no layer keeps them. Installed as root (read-only
# for the runtime user); byte-code is compiled here, so nothing is written at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/constraints.txt,target=/tmp/constraints.txt \
    pip install --no-index --find-links=/wheels -c /tmp/constraints.txt anvil-push-gateway
# Read-only root filesystem: the process writes only under /tmp (an emptyDir or tmpfs), and
# PYTHONSAFEPATH keeps the working directory off sys.path.
WORKDIR /app
USER 10001:10001
EXPOSE 8020
ENTRYPOINT ["python", "-m", "anvil_push_gateway"]
CMD ["serve"]
