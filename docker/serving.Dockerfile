# Serving image: the NGC Triton release that k8s/base pins, plus what our models need, run as non-root.
#
# Release 25.04 (Triton 2.57.0) is the first with both fixes for the gRPC request-cancellation crash (SIGSEGV under
# overload when clients cancel or time out): server#7840 (issue #7368, in 24.12 = 2.53) and server#8078 (issue #8034,
# in 25.04 = 2.57; 25.01-25.03 still crash). 25.04 needs a driver >= 575 (or a data-center R470/R525/R535/R545) and a
# GPU of compute capability >= 7.5 (Turing or newer; no V100). The embedded server the tests run is 2.51 (24.10):
# tests/unit/k8s/test_k8s_contract.py checks every flag against both.
#
# Two targets, one file (build from the repository root; .dockerignore keeps the context to what is copied):
#   storage  repository-from-storage at start: no models inside, MODEL_REPOSITORY names an s3://, gs://, as://
#            URL or a mounted folder (small image, one image for every model release; what compose.yaml runs)
#              docker build -f docker/serving.Dockerfile --target storage -t ghcr.io/tritonforge/tritonforge-serving:0.1.0-storage .
#              docker run -p 8000-8002:8000-8002 -e MODEL_REPOSITORY=s3://bucket/model_repository \
#                -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... -e AWS_DEFAULT_REGION=us-east-1 \
#                ghcr.io/tritonforge/tritonforge-serving:0.1.0-storage
#   bundled  (default) the model repository copied in at /models: an immutable release, nothing to download
#              docker build -f docker/serving.Dockerfile -t ghcr.io/tritonforge/tritonforge-serving:0.1.0 .
#              docker run --gpus all -p 8000-8002:8000-8002 ghcr.io/tritonforge/tritonforge-serving:0.1.0
# The server flags (CMD) are the Deployment's (k8s/base/deployment.yaml); tests/unit/k8s/test_k8s_containers.py
# checks that they stay equal.

FROM nvcr.io/nvidia/tritonserver:25.04-py3 AS storage

# The python-backend tokenizer model (model_repository/minilm_tokenizer) imports `tokenizers`; the NGC image has
# numpy but not tokenizers. Installed into the image's python 3.12 (Ubuntu 24.04), which the python backend stub runs;
# the image sets PIP_BREAK_SYSTEM_PACKAGES=1 (Triton's build.py), so pip may install into the system Python.
RUN pip3 install --no-cache-dir tokenizers==0.23.3

# The NGC image's non-root user (Triton's build.py creates triton-server with uid/gid 1000; the Deployment's
# runAsUser matches). HOME=/tmp: a read-only root filesystem leaves /tmp (an emptyDir in Kubernetes) writable.
ENV MODEL_REPOSITORY=/models \
    HOME=/tmp
USER 1000:1000
WORKDIR /tmp

EXPOSE 8000 8001 8002

# Exec form through sh only to expand $MODEL_REPOSITORY (exec-form CMD does not expand variables); `exec` keeps
# tritonserver as PID 1 so SIGTERM reaches it and --exit-timeout-secs applies. CMD supplies the other flags
# ("$@"); a `docker run IMAGE --log-verbose=1` replaces them, so pass the full list when overriding.
ENTRYPOINT ["/bin/sh", "-c", "exec tritonserver --model-repository=\"$MODEL_REPOSITORY\" \"$@\"", "tritonserver"]
CMD ["--model-control-mode=none", \
     "--grpc-max-connection-age=60000", \
     "--grpc-max-connection-age-grace=10000", \
     "--grpc-keepalive-permit-without-calls=true", \
     "--grpc-http2-min-recv-ping-interval-without-data=10000", \
     "--exit-timeout-secs=45", \
     "--strict-readiness=true", \
     "--metrics-config=summary_latencies=true", \
     "--http-port=8000", \
     "--grpc-port=8001", \
     "--metrics-port=8002", \
     "--allow-metrics=true", \
     "--log-format=ISO8601"]

HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/v2/health/ready"]

FROM storage AS bundled

# Config and version folders only (see .dockerignore): the ONNX files `make demo` writes, no caches.
COPY --chown=1000:1000 model_repository /models
