# syntax=docker/dockerfile:1
# The bundle-worker image: `python -m anvil_bundle_worker` (api | work | migrate).
# Build context = the repository root:
#   docker build -f deploy/docker/bundle-worker.Dockerfile -t anvil-bundle-worker:TAG .
# Only this service and the libs it depends on are copied (bundle-worker.Dockerfile.dockerignore
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
COPY services/bundle-worker/ services/bundle-worker/
# Every third-party version comes from constraints.txt; the local paths satisfy anvil-wire and
# anvil-common, so nothing of ours is looked up in a package index.
RUN pip wheel --prefer-binary --wheel-dir /wheels -c constraints.txt \
        ./libs/anvil_wire ./libs/anvil_common ./services/bundle-worker

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="anvil-bundle-worker" \
      org.opencontainers.image.description="Anvil bundle worker: builds, signs and validates bundles; plans and drives imports"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANVIL_DATA_DIR=/tmp/anvil \
    ANVIL_BUNDLE_WORKER_HOST=0.0.0.0 \
    ANVIL_BUNDLE_WORKER_PORT=8010
RUN groupadd --system --gid 10001 anvil \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin anvil
# The wheels are bind-mounted, not copied: no layer keeps them. Installed as root (read-only
# for the runtime user); byte-code is compiled here, so nothing is written at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/constraints.txt,target=/tmp/constraints.txt \
    pip install --no-index --find-links=/wheels -c /tmp/constraints.txt anvil-bundle-worker
# Read-only root filesystem: the process writes only under /tmp (an emptyDir or tmpfs), and
# PYTHONSAFEPATH keeps the working directory off sys.path.
WORKDIR /app
USER 10001:10001
EXPOSE 8010
ENTRYPOINT ["python", "-m", "anvil_bundle_worker"]
CMD ["api"]
