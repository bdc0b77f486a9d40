"""Write a Triton model repository for one serving target from the model contract.

Three targets, same models and tensor names; they differ in backend and config only:

* ``gpu``: the onnxruntime backend of NVIDIA's Triton container, KIND_GPU, TensorRT (FP16) as execution accelerator
  where the graph allows it, warm-up requests, pinned version.
* ``cpu``: every ONNX model wrapped in a Python-backend model (``model_repository/onnx_model.py``) that runs it with
  onnxruntime, KIND_CPU. This is what the tritonserver of the nvidia-pytriton wheel can serve.
* ``pytorch``: every LivePortrait model run with PyTorch by a Python-backend model (``model_repository/
  torch_model.py`` + the network code + ``weights.pt``), KIND_GPU (``device="cpu"``: KIND_CPU, for tests); the
  ensembles are fused into one model each (same name and tensors), and the render path batches up to 32. The face
  models stay ONNX files run on the CPU as in the ``cpu`` target.

Layout written: ``<output>/<model>/config.pbtxt`` and ``<output>/<model>/1/model.onnx`` (+ ``model.py`` on cpu), or
``<output>/<model>/1/{model.py, liveportrait_torch/, weights.pt}`` on pytorch.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .model_spec import BatchingSpec, EnsembleModel, ServedModel, TensorSpec
from .profiles import Profile
from .served_models import contract_name, repository_models

TARGETS = ("cpu", "gpu", "pytorch")
VERSION = 1
PYTHON_MODEL = Path(__file__).resolve().parents[1] / "model_repository" / "onnx_model.py"
TORCH_MODEL = Path(__file__).resolve().parents[1] / "model_repository" / "torch_model.py"
# What travels into each pytorch model folder as the package ``liveportrait_torch`` (paths relative to this folder).
TORCH_PACKAGE = ("networks", "build.py", "profiles.py", "model_spec.py", "served_models.py", "serving_heads.py",
                 "feature_cache.py", "torch_serving.py", "audio_models.py", "audio_networks.py", "checkpoints.py")
# The contract's model names, which served_models.py takes from the orchestrator's side, travel with it.
MODEL_NAMES = Path(__file__).resolve().parents[1] / "orchestrator" / "model_names.py"
# pytorch target: the per-frame render path batches up to 32 frames (the GPU issue's H200 profile: the time per frame
# keeps falling up to batch 32, e.g. 4.0 -> 3.83 ms compiled) and runs in the fp16 policy; the orchestrator's render model is compiled (set the parameter
# ``compile`` of the others to compile them too: each compiled model adds its compile time to the load); the small
# MLPs stay in fp32.
TORCH_RENDER_PATH = ("warping_spade", "render_u8", "render_i420")
TORCH_COMPILED = ("render_i420",)
TORCH_FP16 = TORCH_RENDER_PATH + ("appearance_feature_extractor", "motion_extractor", "motion_extractor_u8")
TORCH_RENDER_BATCHING = BatchingSpec(max_batch_size=32, preferred_batch_sizes=(16, 32))
TORCH_BATCH_BUCKETS = "1,2,4,8,16,24,32"
FEATURE_CACHE_BYTES = 1 << 30


def _dtype(name: str) -> int:
    return mc.DataType.Value(f"TYPE_{name}")


def _tensor(spec: TensorSpec, cls):
    return cls(name=spec.name, data_type=_dtype(spec.dtype), dims=list(spec.dims))


def _string_parameters(config: mc.ModelConfig, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def torch_served(model: ServedModel | EnsembleModel) -> ServedModel:
    """How the pytorch target serves a model of the contract: ensembles fused into one model, the render path's
    batching widened to 32."""
    if isinstance(model, EnsembleModel):
        model = ServedModel(model.name, model.inputs, model.outputs, model.description + " (one fused PyTorch model)",
                            BatchingSpec(max_batch_size=model.max_batch_size))
    if contract_name(model.name) in TORCH_RENDER_PATH:
        model = replace(model, batching=TORCH_RENDER_BATCHING)
    return model


def torch_parameters(name: str) -> dict[str, str]:
    name = contract_name(name)
    fp16 = name in TORCH_FP16
    parameters = {"precision": "fp16" if fp16 else "fp32",
                  "compile": "reduce-overhead" if name in TORCH_COMPILED else "none",
                  "batch_buckets": TORCH_BATCH_BUCKETS}
    if name.startswith("render_"):
        parameters["feature_cache_bytes"] = str(FEATURE_CACHE_BYTES)
    return parameters


def served_model_config(model: ServedModel, target: str, parameters: dict[str, str],
                        device: str = "cuda") -> mc.ModelConfig:
    """``device`` (pytorch target only): "cuda" -> KIND_GPU, "cpu" -> KIND_CPU (the same backend code, for tests)."""
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
    if target == "cpu" or (target == "pytorch" and not torch_model(model.name)):
        config.backend = "python"
        config.instance_group.append(mc.ModelInstanceGroup(count=model.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU))
        _string_parameters(config, {"onnx_file": "model.onnx", "intra_op_threads": "0", **parameters})
    elif target == "pytorch":
        config.backend = "python"
        kind = mc.ModelInstanceGroup.KIND_GPU if device == "cuda" else mc.ModelInstanceGroup.KIND_CPU
        config.instance_group.append(mc.ModelInstanceGroup(count=model.instance_count, kind=kind))
        _string_parameters(config, {**torch_parameters(model.name), **parameters})
    else:
        config.backend = "onnxruntime"
        config.default_model_filename = "model.onnx"
        config.instance_group.append(mc.ModelInstanceGroup(count=model.instance_count, kind=mc.ModelInstanceGroup.KIND_GPU))
        trt = mc.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator(name="tensorrt")
        trt.parameters.update({"precision_mode": "FP16", "max_workspace_size_bytes": str(4 << 30),
                               "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/tmp/trt_cache",
                               "trt_layer_norm_fp32_fallback": "1"})
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
    if config.HasField("dynamic_batching"):
        header += "# Queue policy: bounded queue; requests waiting past the timeout are rejected (REJECT, the default).\n"
    return header + note + text_format.MessageToString(config)


def torch_model(name: str) -> bool:
    """Whether the pytorch target runs ``name`` with PyTorch (the face models stay ONNX, on the CPU)."""
    from .profiles import FULL
    from .served_models import AUDIO_MODELS, ensembles, served_models

    return contract_name(name) in {m.name for m in served_models(FULL)} | {e.name for e in ensembles(FULL)} | AUDIO_MODELS


def served_model_text(model: ServedModel, target: str, parameters: dict[str, str], device: str = "cuda") -> str:
    note = "".join(f"# {line}\n" for line in model.gpu_note.splitlines()) if target == "gpu" else ""
    return config_text(served_model_config(model, target, parameters, device), model.description, note)


def ensemble_text(model: EnsembleModel, parameters: dict[str, str]) -> str:
    return config_text(ensemble_config(model, parameters), model.description)


def config_texts(models: list[ServedModel], ensembles: list[EnsembleModel], target: str,
                 parameters: dict[str, str]) -> dict[str, str]:
    if target == "pytorch":
        return {m.name: served_model_text(torch_served(m), target, parameters) for m in [*models, *ensembles]}
    texts = {m.name: served_model_text(m, target, parameters) for m in models}
    texts.update({e.name: ensemble_text(e, parameters) for e in ensembles})
    return texts


def export_served_model(output: Path, module, spec: ServedModel, served: ServedModel, target: str,
                        parameters: dict[str, str], log) -> dict:
    """Export ``module`` (the network behind ``spec``) to ONNX, verify it against PyTorch, write its folder under the
    name ``served`` has; returns the manifest row."""
    import time

    from .onnx_export import export_verified

    started = time.perf_counter()
    onnx_path = output / served.name / str(VERSION) / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    check = export_verified(module, spec, onnx_path)
    write_served_model(output, served, onnx_path, target, parameters)
    seconds = time.perf_counter() - started
    size = onnx_path.stat().st_size
    log(f"      {served.name}: worst output {check.worst_output!r} error {check.worst_error:.2e}, "
        f"{size / 1e6:.1f} MB, {seconds:.1f} s")
    return {"model": served.name, "verified_output": check.worst_output, "error": check.worst_error,
            "onnx_bytes": size, "seconds": round(seconds, 2)}


def write_served_model(output: Path, model: ServedModel, onnx_file: Path, target: str,
                       parameters: dict[str, str]) -> None:
    folder = output / model.name
    version_dir = folder / str(VERSION)
    version_dir.mkdir(parents=True, exist_ok=True)
    if onnx_file.resolve() != (version_dir / "model.onnx").resolve():
        shutil.copyfile(onnx_file, version_dir / "model.onnx")
    if target in ("cpu", "pytorch"):  # pytorch: the face models, run by onnxruntime on the CPU
        shutil.copyfile(PYTHON_MODEL, version_dir / "model.py")
    (folder / "config.pbtxt").write_text(served_model_text(model, target, parameters))


def write_torch_model(output: Path, model: ServedModel | EnsembleModel, state_dict: dict, parameters: dict[str, str],
                      device: str = "cuda") -> None:
    """A pytorch-target model folder: config, ``model.py``, the ``liveportrait_torch`` package and ``weights.pt``."""
    import torch

    folder = output / model.name
    version_dir = folder / str(VERSION)
    package = version_dir / "liveportrait_torch"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    source = Path(__file__).resolve().parent
    for name in TORCH_PACKAGE:
        if (source / name).is_dir():
            shutil.copytree(source / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source / name, package / name)
    shutil.copyfile(MODEL_NAMES, package / MODEL_NAMES.name)
    (package / "__init__.py").write_text('"""LivePortrait networks and the PyTorch serving runtime (copied by '
                                         'liveportrait-export from export_scripts/)."""\n')
    shutil.copyfile(TORCH_MODEL, version_dir / "model.py")
    torch.save(state_dict, version_dir / "weights.pt")
    (folder / "config.pbtxt").write_text(served_model_text(torch_served(model), "pytorch", parameters, device))


def write_ensemble(output: Path, model: EnsembleModel, parameters: dict[str, str]) -> None:
    folder = output / model.name
    (folder / str(VERSION)).mkdir(parents=True, exist_ok=True)  # ensembles need an (empty) version folder
    (folder / "config.pbtxt").write_text(ensemble_text(model, parameters))


def write_reference_configs(output: Path, models: list[ServedModel], ensembles: list[EnsembleModel],
                            target: str) -> None:
    """The configs alone (no weights), as committed under model_repository/<target>/ for review."""
    for name, text in config_texts(models, ensembles, target, {}).items():
        (output / name).mkdir(parents=True, exist_ok=True)
        (output / name / "config.pbtxt").write_text(text)


def parse_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt as Triton's ModelConfig (raises on any unknown field or syntax error)."""
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def reference_configs(profile: Profile, target: str) -> dict[str, str]:
    """What ``write_reference_configs`` writes for ``profile``: {model name: config text}."""
    models, ensembles = repository_models(profile, audio=True)
    return config_texts(models, ensembles, target, {})
