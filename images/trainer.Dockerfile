# syntax=docker/dockerfile:1
# Training jobs (supernet stages, evolution, retraining) on GPU nodes: CUDA torch, launched by
# the Kubernetes executor as `python -m hurricane job <step> ...` or, for DDP,
# `python -m torch.distributed.run ... -m hurricane job <step> ...` (torchrun, NCCL).
#   docker build -f images/trainer.Dockerfile -t hurricane-trainer:0.1.0 .
# Base: NVIDIA's CUDA image, the `base` flavour. torch==2.14.1 from PyPI is built for CUDA 13.0
# and brings its own cuBLAS, cuDNN, NCCL, ... as nvidia-* wheels (pinned in
# requirements-trainer.txt), so a `cudnn-runtime` base would only duplicate ~3 GB of libraries.
# The base adds what the NVIDIA container toolkit reads (NVIDIA_VISIBLE_DEVICES,
# NVIDIA_DRIVER_CAPABILITIES, NVIDIA_REQUIRE_CUDA=cuda>=13.0: a too-old driver fails at start).
# Python 3.11 is Ubuntu 22.04's python3.11 package; the venv built in the first stage links to
# it, so both stages start from the same image.
# Base images are pinned to exact version tags; the release pipeline should pin their digests
# too (name:tag@sha256:...), which cannot be resolved offline where these files were written.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu22.04

FROM ${CUDA_IMAGE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv \
    && pip install --upgrade pip==26.3 setuptools==80.10.2
# The dependency closure first (its own layer: source edits do not reinstall it); --no-deps with
# a full closure, then `pip check`, makes a missing or conflicting package fail the build.
COPY images/requirements-trainer.txt /tmp/requirements.txt
RUN pip install --no-deps -r /tmp/requirements.txt \
    && pip check
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hurricane ./hurricane
COPY api ./api
COPY workers ./workers
COPY operator ./operator
# Built with the venv's pinned setuptools (no build isolation: nothing unpinned is fetched).
# The wheel carries api/, workers/, operator/ too; this image never imports them.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-deps /tmp/wheels/hurricane_nas-*.whl \
    && pip check \
    && cd / \
    && python -m hurricane job --help >/dev/null \
    && python -m torch.distributed.run --help >/dev/null

FROM ${CUDA_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="hurricane-trainer" \
      org.opencontainers.image.description="hurricane-nas training jobs (CUDA torch, torchrun)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 hurricane \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/hurricane \
       --shell /usr/sbin/nologin hurricane
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/hurricane \
    MPLBACKEND=Agg
COPY --from=builder /opt/venv /opt/venv
WORKDIR /home/hurricane
USER 10001
# `python` is the venv's (PATH): the executor's pod command starts with these words, or
# replaces them with `python -m torch.distributed.run ... -m hurricane job` for DDP.
ENTRYPOINT ["python", "-m", "hurricane", "job"]
