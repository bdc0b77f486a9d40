"""Calls to Triton over gRPC (``tritonclient.grpc.aio``): complete channel arguments, deadlines, cancellation,
tensor byte accounting and per-model latency metrics.

Cancellation: a call is a coroutine awaiting the gRPC call; when the orchestrator's request task is cancelled (the
client cancelled or disconnected) the awaiting coroutine is cancelled and grpc.aio cancels the RPC, which Triton
honours, and no further call is made for that request.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from .metrics import Metrics
from .model_names import LIVEPORTRAIT_MODELS, model_set_suffix

NP_TO_TRITON = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}


def infer_inputs(arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    """Triton request tensors from named uint8 / float32 arrays (the sync and aio clients share the class)."""
    tensors = []
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        tensor = grpcclient.InferInput(name, list(value.shape), NP_TO_TRITON[value.dtype])
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


def status_code_name(status: str | None) -> str:
    """'StatusCode.UNAVAILABLE' -> 'UNAVAILABLE'."""
    return (status or "UNKNOWN").rsplit(".", 1)[-1]


class TritonError(RuntimeError):
    """A Triton call failed; ``code`` is the gRPC status name (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...)."""

    def __init__(self, model: str, code: str, message: str):
        super().__init__(f"Triton call to {model!r} failed: {code}: {message}")
        self.model = model
        self.code = code


@dataclass(frozen=True)
class TritonConfig:
    url: str = "127.0.0.1:8001"  # any gRPC target: host:port, dns:///headless-service:8001, ipv4:a:p,b:p
    call_timeout_s: float = 120.0  # deadline of one inference call (bounded further by the request's deadline)
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 20_000
    ssl: bool = False
    root_certificates: str | None = None  # PEM file for TLS to Triton
    # Reconnect quickly once Triton is back (gRPC's default backoff grows to 120 s: SERVING came back ~47 s late)
    max_reconnect_backoff_ms: int = 2_000

    def channel_args(self) -> list[tuple[str, int | str]]:
        """Complete channel arguments: tritonclient drops all its defaults once any are given."""
        return [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 2),
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", self.max_reconnect_backoff_ms),
        ]


@dataclass
class Traffic:
    """Tensor bytes sent to and received from Triton (one request)."""

    sent: int = 0
    received: int = 0

    def add(self, sent: int, received: int) -> None:
        self.sent += sent
        self.received += received


# Models called on their own channel. round_robin picks the next replica per call on each channel; a request makes
# a fixed sequence of calls (e.g. stitching then render for every chunk), so on one shared channel the heavy render
# call could land on the same replica every time. With its own channel, consecutive render calls alternate.
DEDICATED_CHANNEL_MODELS = ("render_i420", "render_u8", "motion_extractor_u8")


class TritonRunner:
    """Channels to Triton shared by all requests: one for the heavy models each, one for everything else."""

    def __init__(self, config: TritonConfig, metrics: Metrics):
        self.config = config
        self.metrics = metrics
        self.client = self._new_client()
        self.dedicated = {model: self._new_client() for model in DEDICATED_CHANNEL_MODELS}

    def _new_client(self) -> grpcclient.InferenceServerClient:
        root = open(self.config.root_certificates, "rb").read() if self.config.root_certificates else None
        return grpcclient.InferenceServerClient(self.config.url, ssl=self.config.ssl, root_certificates=root,
                                                channel_args=self.config.channel_args())

    async def close(self) -> None:
        for client in (self.client, *self.dedicated.values()):
            await client.close()

    async def infer(self, model: str, inputs: dict[str, np.ndarray], traffic: Traffic | None = None,
                    timeout_s: float | None = None) -> dict[str, np.ndarray]:
        tensors = infer_inputs(inputs)
        sent = sum(value.nbytes for value in inputs.values())
        timeout = self.config.call_timeout_s if timeout_s is None else min(timeout_s, self.config.call_timeout_s)
        started = time.perf_counter()
        try:
            client = self.dedicated.get(model, self.client)
            result = await client.infer(model, tensors, client_timeout=max(timeout, 0.001))
        except InferenceServerException as exc:
            self.metrics.triton_errors.labels(model).inc()
            raise TritonError(model, status_code_name(exc.status()), exc.message() or str(exc)) from None
        finally:
            self.metrics.triton_latency.labels(model).observe(time.perf_counter() - started)
        response = result.get_response()
        outputs = {out.name: result.as_numpy(out.name) for out in response.outputs}
        received = sum(v.nbytes for v in outputs.values())
        self.metrics.triton_bytes.labels("sent").inc(sent)
        self.metrics.triton_bytes.labels("received").inc(received)
        if traffic is not None:
            traffic.add(sent, received)
        return outputs

    async def ready(self, models: tuple[str, ...], timeout_s: float = 5.0) -> tuple[bool, str]:
        """(ready, reason): the server is ready and every model is loaded."""
        try:
            if not await self.client.is_server_ready(client_timeout=timeout_s):
                return False, "Triton is not ready"
            for model in models:
                if not await self.client.is_model_ready(model, client_timeout=timeout_s):
                    return False, f"model {model!r} is not ready"
        except InferenceServerException as exc:
            return False, f"Triton is unreachable: {status_code_name(exc.status())}"
        return True, "ready"

    async def model_parameter(self, model: str, key: str, timeout_s: float = 5.0) -> str | None:
        try:
            config = await self.client.get_model_config(model, as_json=True, client_timeout=timeout_s)
        except InferenceServerException:
            return None
        return config.get("config", {}).get("parameters", {}).get(key, {}).get("string_value")


class RequestRunner:
    """The face stage's ``FaceModelRunner`` protocol for one request: counts its traffic, honours its deadline."""

    def __init__(self, runner: TritonRunner, traffic: Traffic, deadline: float | None):
        self.runner = runner
        self.traffic = traffic
        self.deadline = deadline  # time.monotonic() value, or None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    async def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise TritonError(model, "DEADLINE_EXCEEDED", "the request's deadline passed")
        return await self.runner.infer(model, inputs, self.traffic, remaining)


class ModelSetRunner(RequestRunner):
    """A request's runner that calls the LivePortrait models of another model set: ``render_i420`` ->
    ``render_i420_animal`` (the suffix ``liveportrait-export --model-set`` gives them); the face models are shared.
    Same traffic counter and deadline as the request's runner. A model Triton does not know is reported as
    ``missing`` (a FAILED_PRECONDITION naming the export command, raised by the caller's ``missing`` factory)."""

    def __init__(self, base: RequestRunner, model_set: str, missing):
        super().__init__(base.runner, base.traffic, base.deadline)
        self.model_set = model_set
        self.suffix = model_set_suffix(model_set)
        self.names = LIVEPORTRAIT_MODELS
        self.missing = missing

    async def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = model + self.suffix if model in self.names else model
        try:
            return await super().infer(name, inputs)
        except TritonError as exc:
            text = str(exc).lower()
            if name != model and ("unknown model" in text or "not found" in text):
                raise self.missing(name) from None
            raise
