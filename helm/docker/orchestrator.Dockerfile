# syntax=docker/dockerfile:1
# LivePortrait orchestrator (CPU): asyncio gRPC server liveportrait.v1.PortraitAnimator on 50051, metrics on 9100,
# plus the `liveportrait` client CLI (used by the chart's `helm test` pod) and its web page (Gradio: the chart's
# optional web Deployment runs `liveportrait web`) and the WebRTC gateway (aiortc: the optional gateway Deployment runs
# `liveportrait gateway`). No torch: the locked runtime + web and webrtc extras only (requirements/{web,webrtc}.lock,
# the same pins where they overlap).
#   docker build -f helm/docker/orchestrator.Dockerfile -t ghcr.io/liveportrait-serving/orchestrator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
# The whole repository minus <this Dockerfile>.dockerignore (environments, build outputs, weights).
COPY . .
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/web.lock \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/webrtc.lock \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Non-root (the chart runs it as 10001 with a read-only root filesystem and /tmp as an emptyDir).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp liveportrait
USER 10001
EXPOSE 50051 9100
ENTRYPOINT ["liveportrait-orchestrator"]
