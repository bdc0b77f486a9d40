"""Write a Triton model repository for one serving target from the model contract.

Two targets, same models, tensor names and batching:

* ``gpu``: the onnxruntime backend of NVIDIA's Triton container, KIND_GPU, TensorRT (FP16) as execution accelerator
  where the graph allows it, warm-up requests, pinned version.
* ``cpu``: every ONNX model wrapped in a Python-backend model (``model_repository/onnx_model.py``) that runs it with
  onnxruntime, KIND_CPU. This is what the tritonserver of the nvidia-pytriton wheel can serve.

Layout written: ``<output>/<model>/config.pbtxt`` and ``<output>/<model>/1/model.onnx`` (+ ``model.py`` on cpu).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .model_spec import EnsembleModel, ServedModel, TensorSpec

TARGETS = ("cpu", "gpu")
VERSION = 1
PYTHON_MODEL = Path(__file__).resolve().parents[1] / "model_repository" / "onnx_model.py"

GPU_NOTE = """\
# GPU target: onnxruntime backend; TensorRT execution accelerator at FP16 for the subgraphs TensorRT can build.
# TensorRT has no native 5-D GridSample (the warping module samples a 3-D feature volume). This model therefore
# runs on onnxruntime's CUDA execution provider without the TensorRT accelerator: recent onnxruntime releases
# implement 5-D GridSample in CUDA; with an older onnxruntime in the container the GridSample nodes fall back to
# onnxruntime's CPU provider (correct, but slow). The alternative is a TensorRT GridSample-3D plugin engine.
"""


def _dtype(name: str) -> int:
    return mc.DataType.Value(f"TYPE_{name}")


def _tensor(spec: TensorSpec, cls):
    return cls(name=spec.name, data_type=_dtype(spec.dtype), dims=list(spec.dims))


def _string_parameters(config: mc.ModelConfig, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def served_model_config(model: ServedModel, target: str, parameters: dict[str, str]) -> mc.ModelConfig:
    b = model.batching
    config = mc.ModelConfig(
        name=model.name,
        max_batch_size=b.max_batch_size,
        input=[_tensor(t, mc.ModelInput) for t in model.inputs],
        output=[_tensor(t, mc.ModelOutput) for t in model.outputs],
        version_policy=mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=[VERSION])),
        dynamic_batching=mc.ModelDynamicBatching(
            preferred_batch_size=list(b.preferred_batch_sizes),
            max_queue_delay_microseconds=b.max_queue_delay_us,
            default_queue_policy=mc.ModelQueuePolicy(
                timeout_action=mc.ModelQueuePolicy.REJECT,
                default_timeout_microseconds=b.queue_timeout_us,
                allow_timeout_override=True,
                max_queue_size=b.max_queue_size,
            ),
        ),
    )
    if target == "cpu":
        config.backend = "python"
        config.instance_group.append(mc.ModelInstanceGroup(count=model.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU))
        _string_parameters(config, {"onnx_file": "model.onnx", "intra_op_threads": "0", **parameters})
    else:
        config.backend = "onnxruntime"
        config.default_model_filename = "model.onnx"
        config.instance_group.append(mc.ModelInstanceGroup(count=model.instance_count, kind=mc.ModelInstanceGroup.KIND_GPU))
        if model.tensorrt:
            trt = mc.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator(name="tensorrt")
            trt.parameters.update({"precision_mode": "FP16", "max_workspace_size_bytes": str(4 << 30),
                                   "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/tmp/trt_cache"})
            config.optimization.execution_accelerators.gpu_execution_accelerator.append(trt)
        config.model_warmup.extend(_warmups(model))
        _string_parameters(config, parameters)
    return config


def _warmups(model: ServedModel) -> list[mc.ModelWarmup]:
    warmups = []
    for batch in sorted({1, model.batching.max_batch_size}):
        inputs = {t.name: mc.ModelWarmup.Input(data_type=_dtype(t.dtype), dims=list(t.dims), random_data=True)
                  for t in model.inputs}
        warmups.append(mc.ModelWarmup(name=f"random_batch_{batch}", batch_size=batch, inputs=inputs))
    return warmups


def ensemble_config(model: EnsembleModel, parameters: dict[str, str]) -> mc.ModelConfig:
    config = mc.ModelConfig(
        name=model.name, platform="ensemble", max_batch_size=model.max_batch_size,
        input=[_tensor(t, mc.ModelInput) for t in model.inputs],
        output=[_tensor(t, mc.ModelOutput) for t in model.outputs],
    )
    for step in model.steps:
        config.ensemble_scheduling.step.append(mc.ModelEnsembling.Step(
            model_name=step.model, model_version=VERSION,
            input_map=dict(step.input_map), output_map=dict(step.output_map)))
    _string_parameters(config, parameters)
    return config


def config_text(config: mc.ModelConfig, description: str, note: str = "") -> str:
    header = f"# {config.name}: {description}\n# Generated by liveportrait-export; edit export_scripts/, not this file.\n"
    return header + note + text_format.MessageToString(config)


def write_served_model(output: Path, model: ServedModel, onnx_file: Path, target: str,
                       parameters: dict[str, str]) -> None:
    folder = output / model.name
    version_dir = folder / str(VERSION)
    version_dir.mkdir(parents=True, exist_ok=True)
    if onnx_file.resolve() != (version_dir / "model.onnx").resolve():
        shutil.copyfile(onnx_file, version_dir / "model.onnx")
    if target == "cpu":
        shutil.copyfile(PYTHON_MODEL, version_dir / "model.py")
    note = GPU_NOTE if target == "gpu" and not model.tensorrt else ""
    config = served_model_config(model, target, parameters)
    (folder / "config.pbtxt").write_text(config_text(config, model.description, note))


def write_ensemble(output: Path, model: EnsembleModel, parameters: dict[str, str]) -> None:
    folder = output / model.name
    (folder / str(VERSION)).mkdir(parents=True, exist_ok=True)  # ensembles need an (empty) version folder
    (folder / "config.pbtxt").write_text(config_text(ensemble_config(model, parameters), model.description))


def parse_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt as Triton's ModelConfig (raises on any unknown field or syntax error)."""
    return text_format.Parse(path.read_text(), mc.ModelConfig())
