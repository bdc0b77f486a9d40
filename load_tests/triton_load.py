"""Load sent straight to Triton (no orchestrator): one rendered frame per call through the ``render_i420`` ensemble
(or any batch-1 model), over one gRPC channel that may name several replicas (round_robin)."""
from __future__ import annotations

import time

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.triton_client import TritonConfig, infer_inputs, status_code_name

from .stats import OK, Outcome


def render_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """One frame for render_i420: a 256x256 uint8 source and keypoints inside the warping volume."""
    rng = np.random.default_rng(seed)
    return {
        "source_u8": rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8),
        "kp_source": (rng.random((1, 21, 3), dtype=np.float32) - 0.5) * 0.8,
        "kp_driving": (rng.random((1, 21, 3), dtype=np.float32) - 0.5) * 0.8,
    }


def replicas_target(grpc_urls: list[str]) -> str:
    """One gRPC target naming every replica: ``ipv4:127.0.0.1:P1,127.0.0.1:P2`` (a single URL stays as is)."""
    return grpc_urls[0] if len(grpc_urls) == 1 else "ipv4:" + ",".join(grpc_urls)


def open_client(target: str) -> grpcclient.InferenceServerClient:
    """The orchestrator's complete channel arguments (round_robin, unlimited message size)."""
    return grpcclient.InferenceServerClient(target, channel_args=TritonConfig(target).channel_args())


class TritonCall:
    """One inference per invocation; the single response is also the first result."""

    def __init__(self, client: grpcclient.InferenceServerClient, model: str, inputs: dict[str, np.ndarray],
                 timeout_s: float = 120.0):
        self.client = client
        self.model = model
        self.tensors = infer_inputs(inputs)
        self.frames = int(next(iter(inputs.values())).shape[0])
        self.timeout_s = timeout_s

    async def __call__(self) -> Outcome:
        started = time.perf_counter()
        try:
            await self.client.infer(self.model, self.tensors, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            return Outcome(status_code_name(exc.status()), time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        return Outcome(OK, elapsed, elapsed, self.frames)
