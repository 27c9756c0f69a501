# syntax=docker/dockerfile:1
# Celery workers (control, train, profile.<label> queues) and the Kubernetes executor: the library
# with the extras workers and operator. torch is the CPU build: workers only supervise jobs, but
# finishing some steps (space, budgets) imports torch, and a CUDA torch would add ~3 GB of
# libraries no worker uses (training runs in the trainer image's Job pods).
#   docker build -f images/worker.Dockerfile -t hurricane-worker:0.1.0 .
# Base images are pinned to exact version tags; the release pipeline should pin their digests
# too (name:tag@sha256:...), which cannot be resolved offline where these files were written.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --upgrade pip==26.3 setuptools==80.10.2
# The dependency closure first (its own layer: source edits do not reinstall it); --no-deps with
# a full closure, then `pip check`, makes a missing or conflicting package fail the build.
# torch==2.14.1+cpu / torchvision==0.29.1+cpu exist only on PyTorch's CPU index.
COPY images/requirements-worker.txt /tmp/requirements.txt
RUN pip install --no-deps --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /tmp/requirements.txt \
    && pip check
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hurricane ./hurricane
COPY api ./api
COPY workers ./workers
COPY operator ./operator
# Built with the venv's pinned setuptools (no build isolation: nothing unpinned is fetched).
# The wheel carries api/, workers/, operator/ as hurricane.api/.workers/.operator (package-dir).
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-deps /tmp/wheels/hurricane_nas-*.whl \
    && pip check \
    && cd / \
    && python -c "import hurricane.workers.app, hurricane.operator.executor"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="hurricane-worker" \
      org.opencontainers.image.description="hurricane-nas Celery workers and Kubernetes executor (CPU torch)" \
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
USER 10001
# The chart passes the rest (-Q <queues> -c <concurrency> -n <name>@%h ...); its beat Deployment
# runs `celery -A hurricane.workers.app beat` from this image with a command of its own.
ENTRYPOINT ["celery", "-A", "hurricane.workers.app", "worker"]
