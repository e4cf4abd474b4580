# Tooling images: the `tritonforge` CLI with Locust (the loadtest extra), for the load-test Jobs in k8s/jobs, and
# with the monitor extra (target monitor) for the model-health monitor in k8s/monitor.
#
# Build from the repository root; the wheel is built from this checkout in the first stage:
#   docker build -f docker/tools.Dockerfile -t ghcr.io/tritonforge/tritonforge-tools:0.1.0 .
#   docker build -f docker/tools.Dockerfile --target trt -t ghcr.io/tritonforge/tritonforge-tools:0.1.0-trt .
#   docker build -f docker/tools.Dockerfile --target monitor -t ghcr.io/tritonforge/tritonforge-tools:0.1.0-monitor .
# The tools target installs only the loadtest extra: the convert extra would pull torch (GBs) that load tests
# never import.
# The `trt` target (the build-engine Job) starts from NGC's TensorRT image, which brings TensorRT, trtexec
# and CUDA for `tritonforge gpu build-engine`.

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm
# The same NGC release as the serving image (docker/serving.Dockerfile): one release month, one TensorRT version, so
# the engines this image builds deserialise in that Triton.
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:25.04-py3

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tritonforge ./tritonforge
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${TENSORRT_IMAGE} AS trt
ARG VERSION=0.1.0
# 25.04 is Ubuntu 24.04, whose system Python refuses pip installs (PEP 668) unless told otherwise.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    HOME=/tmp
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir "/wheels/tritonforge-${VERSION}-py3-none-any.whl"
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["tritonforge"]
CMD ["--help"]

FROM ${PYTHON_IMAGE} AS tools
ARG VERSION=0.1.0
# HOME=/tmp: the Jobs run with a read-only root filesystem and an emptyDir at /tmp. MPLBACKEND: plots are PNGs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    HOME=/tmp
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir "/wheels/tritonforge-${VERSION}-py3-none-any.whl[loadtest]"
# A fixed uid without a passwd entry is enough for Python; 1000 is the Jobs' runAsUser.
USER 1000:1000
WORKDIR /tmp
# Locust master port (the loadtest-master Service).
EXPOSE 5557
ENTRYPOINT ["tritonforge"]
CMD ["--help"]

FROM ${PYTHON_IMAGE} AS monitor
ARG VERSION=0.1.0
# The model-health monitor (k8s/monitor: `tritonforge monitor serve`): the monitor extra (pyarrow, DuckDB, scipy,
# scikit-learn, fairlearn, prometheus-client), no torch. HOME=/tmp: read-only root filesystem, emptyDir at /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    HOME=/tmp
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir "/wheels/tritonforge-${VERSION}-py3-none-any.whl[monitor]"
USER 1000:1000
WORKDIR /tmp
# The monitor's metrics port (the tritonforge-monitor Service).
EXPOSE 9108
ENTRYPOINT ["tritonforge"]
CMD ["--help"]
