# syntax=docker/dockerfile:1
# Measuring jobs on device pools (profile, predictor, transfer, export): onnxruntime and OpenVINO
# run the operators and networks, CPU torch builds them and exports ONNX.
#   docker build -f images/profiler.Dockerfile -t hurricane-profiler:0.1.0 .
# The wheels cover CPU execution (onnxruntime's CPU provider, OpenVINO's CPU plugin). A pool
# with other hardware (OpenVINO GPU/NPU, a vendor onnxruntime provider) needs its runtime and
# drivers in an image derived from this one.
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
COPY images/requirements-profiler.txt /tmp/requirements.txt
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
# The wheel carries api/, workers/, operator/ too; this image never imports them.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-deps /tmp/wheels/hurricane_nas-*.whl \
    && pip check \
    && cd / \
    && python -m hurricane job --help >/dev/null \
    && python -c "import onnxruntime, openvino"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="hurricane-profiler" \
      org.opencontainers.image.description="hurricane-nas measuring jobs (onnxruntime, OpenVINO, CPU torch)" \
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
# The executor's pod command is `python -m hurricane job <step> --search ... --store ... --device ...`.
ENTRYPOINT ["python", "-m", "hurricane", "job"]
