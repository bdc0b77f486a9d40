"""How the face code runs a model: a small async protocol, and an in-process onnxruntime implementation.

The orchestrator implements the same protocol over Triton gRPC. Inputs and outputs are batched arrays keyed by the
tensor names of ``export_scripts.face_models.face_served_models()``.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import numpy as np


class FaceModelRunner(Protocol):
    async def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``model`` on a batch; return every output by name."""
        ...


class OnnxFaceModelRunner:
    """Runs the exported ONNX files with onnxruntime on the CPU, in a worker thread (for tests and benchmarks)."""

    def __init__(self, model_files: dict[str, Path], threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                          for name, path in model_files.items()}

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._sessions)

    def infer_sync(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[model]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))

    async def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return await asyncio.to_thread(self.infer_sync, model, inputs)


async def infer_chunked(runner: FaceModelRunner, model: str, name: str, batch: np.ndarray,
                        max_batch: int) -> dict[str, np.ndarray]:
    """Run a batch of any size in chunks of at most ``max_batch`` (the served models' max_batch_size)."""
    parts = [await runner.infer(model, {name: batch[i:i + max_batch]}) for i in range(0, len(batch), max_batch)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
