"""Export the served models to ONNX (opset 20, dynamic batch) and check each file against PyTorch before keeping it."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from .model_spec import ServedModel

OPSET = 20  # GridSample on 5-D inputs needs opset >= 20
REL_TOLERANCE = 1e-4
UINT8_TOLERANCE = 1  # truncation after float noise may move a pixel by one level


class ExportVerificationError(RuntimeError):
    """An exported ONNX file does not reproduce the PyTorch module."""


@dataclass(frozen=True)
class Verification:
    model: str
    batch: int
    worst_output: str
    worst_error: float  # rel-L2 for float outputs, max abs difference for uint8


def example_inputs(spec: ServedModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Plausible random inputs: images in [0, 1], keypoints inside the warping volume, ratios in [0, 0.5]."""
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for t in spec.inputs:
        shape = (batch, *t.dims)
        if t.dtype == "UINT8":
            tensors.append(torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8))
        elif t.name.startswith("kp_") and t.dims == (21, 3):
            tensors.append(0.5 * torch.rand(shape, generator=gen) - 0.25 + _kp_base(gen, batch))
        elif t.name.endswith("_ratio"):
            tensors.append(0.5 * torch.rand(shape, generator=gen))
        elif t.name == "feature_3d":
            tensors.append(torch.randn(shape, generator=gen))
        else:
            tensors.append(torch.rand(shape, generator=gen))
    return tuple(tensors)


def _kp_base(gen: torch.Generator, batch: int) -> torch.Tensor:
    return 1.2 * torch.rand((batch, 21, 3), generator=gen) - 0.6


def export_onnx(module: nn.Module, spec: ServedModel, path: Path) -> None:
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    dynamic = {name: {0: "batch"} for name in names_in + names_out}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and instance-norm training-mode notes
        torch.onnx.export(module, example_inputs(spec, 2), str(path), input_names=names_in, output_names=names_out,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def export_verified(module: nn.Module, spec: ServedModel, path: Path) -> Verification:
    """Export to a temporary file, check it against PyTorch, and only then move it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        export_onnx(module, spec, tmp)
        verification = verify_onnx(module, spec, tmp)
        tmp.replace(path)
        return verification
    finally:
        tmp.unlink(missing_ok=True)


def run_onnx(path: Path, spec: ServedModel, inputs: tuple[torch.Tensor, ...], threads: int = 0) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([t.name for t in spec.outputs], {t.name: x.numpy() for t, x in zip(spec.inputs, inputs)})


def relative_l2(ours: np.ndarray, reference: np.ndarray) -> float:
    ours = np.asarray(ours, np.float64)
    reference = np.asarray(reference, np.float64)
    denominator = np.linalg.norm(reference)
    return float(np.linalg.norm(ours - reference) / (denominator if denominator > 0 else 1.0))


def verify_onnx(module: nn.Module, spec: ServedModel, path: Path, batch: int = 1, seed: int = 1) -> Verification:
    """Compare the ONNX file with the module on a random batch; raise past the tolerance. ``export_onnx`` traces at
    batch 2 and the check runs at batch 1 by default: a size the trace did not see, so a batch size the trace fixed
    in the graph fails here (and the full-size warping + decoder graph is checked in half the time)."""
    inputs = example_inputs(spec, batch, seed)
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    try:
        got = run_onnx(path, spec, inputs)
    except Exception as exc:  # onnxruntime's own errors (e.g. a shape fixed at the traced batch size)
        raise ExportVerificationError(f"{spec.name}: the ONNX file does not run at batch {batch}: "
                                      f"{str(exc)[:300]}; the file {path} was not kept") from exc
    worst = ("", 0.0)
    for t, want, have in zip(spec.outputs, expected, got):
        if have.shape != tuple(want.shape):
            raise ExportVerificationError(
                f"{spec.name}: ONNX output {t.name!r} has the shape {list(have.shape)} at batch {batch}, PyTorch's "
                f"{list(want.shape)} (a size fixed when the graph was traced?); the file {path} was not kept")
        if t.dtype == "UINT8":
            error = float(np.abs(have.astype(np.int32) - want.numpy().astype(np.int32)).max())
            limit = UINT8_TOLERANCE
        else:
            error = relative_l2(have, want.numpy())
            limit = REL_TOLERANCE
        if not np.isfinite(error) or error > limit:
            raise ExportVerificationError(
                f"{spec.name}: ONNX output {t.name!r} differs from PyTorch by {error:.3g} (limit {limit:g}); "
                f"the file {path} was not kept")
        if error >= worst[1]:
            worst = (t.name, error)
    return Verification(spec.name, batch, worst[0], worst[1])
