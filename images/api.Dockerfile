# syntax=docker/dockerfile:1
# The REST API (FastAPI under uvicorn), without torch: hurricane.api never imports it.
#   docker build -f images/api.Dockerfile -t hurricane-api:0.1.0 .
# Base images are pinned to exact version tags; the release pipeline should pin their digests
# too (name:tag@sha256:...), which cannot be resolved offline where these files were written.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# The dashboard's assets (dashboard/: TypeScript, Vite, ECharts) from its lockfile.
FROM ${NODE_IMAGE} AS ui
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/index.html dashboard/vite.config.ts dashboard/tsconfig.json ./
COPY dashboard/src ./src
COPY examples/*.yaml /src/examples/
RUN npm run build && test -f /src/api/ui/index.html

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --upgrade pip==26.3 setuptools==80.10.2
# The dependency closure first (its own layer: source edits do not reinstall it); --no-deps with
# a full closure, then `pip check`, makes a missing or conflicting package fail the build.
COPY images/requirements-api.txt /tmp/requirements.txt
RUN pip install --no-deps -r /tmp/requirements.txt \
    && pip check
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hurricane ./hurricane
COPY api ./api
COPY workers ./workers
COPY operator ./operator
# The web dashboard, built in the `ui` stage below (Node only there): package data of hurricane.api.
COPY --from=ui /src/api/ui ./api/ui
# Built with the venv's pinned setuptools (no build isolation: nothing unpinned is fetched).
# The wheel carries api/, workers/, operator/ as hurricane.api/.workers/.operator (package-dir).
# --no-deps: the project's torch, onnxruntime, openvino, typer, kubernetes stay out of this image.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-deps /tmp/wheels/hurricane_nas-*.whl \
    && cd / \
    && python -c "import hurricane.api.app"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="hurricane-api" \
      org.opencontainers.image.description="hurricane-nas REST API (FastAPI, no torch)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/hurricane \
    MPLBACKEND=Agg
RUN groupadd --gid 10001 hurricane \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/hurricane \
       --shell /usr/sbin/nologin hurricane
COPY --from=builder /opt/venv /opt/venv
WORKDIR /home/hurricane
EXPOSE 8000
# Liveness of the process only (/readyz also needs Redis and the store: the chart probes that).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
USER 10001
# The chart appends --workers N (and may add --proxy-headers, --forwarded-allow-ips) as args.
ENTRYPOINT ["uvicorn", "hurricane.api.app:app", "--host", "0.0.0.0", "--port", "8000"]
