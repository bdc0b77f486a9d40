"""What a served model looks like to Triton: names, tensors and batching, independent of the serving target."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, without the batch dimension. A dim of -1 is variable."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "FP32"  # Triton data type name: FP32, UINT8, INT64, ...


@dataclass(frozen=True)
class BatchingSpec:
    """Dynamic batching and queue policy shared by both targets."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 2000
    max_queue_size: int = 64
    queue_timeout_us: int = 30_000_000  # requests waiting longer are rejected (REJECT on timeout)


@dataclass(frozen=True)
class ServedModel:
    """A model backed by one ONNX file."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str = ""
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    instance_count: int = 1
    # Explanation written into the GPU config, e.g. how nodes TensorRT cannot build are run.
    gpu_note: str = ""


@dataclass(frozen=True)
class EnsembleStep:
    model: str
    input_map: tuple[tuple[str, str], ...]  # (model input name, ensemble tensor name)
    output_map: tuple[tuple[str, str], ...]  # (model output name, ensemble tensor name)


@dataclass(frozen=True)
class EnsembleModel:
    """A Triton ensemble: a chain of served models whose intermediate tensors never leave the server."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: tuple[EnsembleStep, ...]
    description: str = ""
    max_batch_size: int = 8
