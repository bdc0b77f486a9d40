# syntax=docker/dockerfile:1
# Triton Inference Server with the LivePortrait model repository baked in at /models.
#   GPU (onnxruntime backend + TensorRT EP), synthetic weights:
#     docker build -f helm/docker/triton.Dockerfile -t ghcr.io/liveportrait-serving/triton:0.1.0-gpu .
#   GPU with the official LivePortrait checkpoints (a directory with the .pth files):
#     docker build -f helm/docker/triton.Dockerfile --build-context weights=/path/to/pretrained_weights \
#       --build-arg WEIGHTS=/weights -t ghcr.io/liveportrait-serving/triton:0.1.0-gpu .
#   CPU repository for values-dev-cpu.yaml (Python-backend models running onnxruntime), tiny profile:
#     docker build -f helm/docker/triton.Dockerfile --build-arg TARGET=cpu --build-arg PROFILE=tiny \
#       -t ghcr.io/liveportrait-serving/triton:0.1.0-cpu .
#   GPU with PyTorch in the Python backend (the pytorch target; NGC's image with PyTorch + the Python backend):
#     docker build -f helm/docker/triton.Dockerfile --build-arg TARGET=pytorch \
#       --build-arg TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-pyt-python-py3 \
#       -t ghcr.io/liveportrait-serving/triton:0.1.0-pytorch .
#   The exporter stage alone is an image for the chart's initContainer model source
#   (triton.modelRepository.source=initContainer, command liveportrait-export ... --output /models):
#     docker build -f helm/docker/triton.Dockerfile --target exporter -t ghcr.io/liveportrait-serving/exporter:0.1.0 .
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

# Empty unless overridden with --build-context weights=DIR.
FROM scratch AS weights

FROM python:3.11-slim AS exporter
WORKDIR /src
# The whole repository minus <this Dockerfile>.dockerignore (environments, build outputs, weights).
COPY . .
# The locked export set (requirements/export.lock); torch's CPU build comes from the CPU wheel index: export runs on
# the CPU, no CUDA build needed.
RUN pip install --no-cache-dir --require-hashes --extra-index-url https://download.pytorch.org/whl/cpu \
      -r requirements/export.lock \
 && pip install --no-cache-dir --no-deps .
COPY --from=weights / /weights/
ENV HOME=/tmp

FROM exporter AS export
ARG TARGET=gpu
ARG PROFILE=full
ARG WEIGHTS=synthetic
# true: the audio-to-motion models too (audio_encoder, lmdm; the chart's triton.modelRepository.audio)
ARG AUDIO=false
RUN liveportrait-export --weights "$WEIGHTS" --profile "$PROFILE" --target "$TARGET" --output /models \
      $(if [ "$AUDIO" = true ]; then echo --audio; fi)

FROM ${TRITON_IMAGE}
ARG TARGET=gpu
# The CPU repository's model.py imports numpy + onnxruntime from LIVEPORTRAIT_BACKEND_PYTHONPATH (the Python-backend
# stub ignores PYTHONPATH); the pytorch repository's face models need onnxruntime (CPU) too, its PyTorch models use the
# image's torch; the GPU repository needs nothing extra (onnxruntime backend ships in the image).
# The versions are requirements/triton-python.lock's (the embedded server's lock).
COPY requirements/triton-python.lock /tmp/triton-python.lock
RUN if [ "$TARGET" = "cpu" ] || [ "$TARGET" = "pytorch" ]; then \
      python3 -m pip install --no-cache-dir --no-deps --require-hashes --target /opt/liveportrait/python \
        -r /tmp/triton-python.lock; \
    else mkdir -p /opt/liveportrait/python; fi
ENV LIVEPORTRAIT_BACKEND_PYTHONPATH=/opt/liveportrait/python
COPY --from=export --chown=1000:1000 /models /models
# triton-server (uid 1000) is the non-root user of NGC's image; the chart enforces runAsUser 1000.
USER 1000
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none", "--strict-readiness=true"]
