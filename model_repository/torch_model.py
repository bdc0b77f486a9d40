"""Generic Triton Python-backend model of the ``pytorch`` target: runs one served model with PyTorch.

Every model folder of a ``pytorch`` repository holds this file as ``<version>/model.py``, the package
``liveportrait_torch`` (the network code, the serving heads and the runtime) and ``weights.pt`` (the module's state
dict). What it runs comes from ``config.pbtxt``: the model's name and tensors, and the parameters ``profile``,
``precision`` (fp32 | fp16), ``compile`` (none | default | reduce-overhead | max-autotune-no-cudagraphs),
``batch_buckets`` and ``feature_cache_bytes``. ``KIND_GPU`` instances run on their GPU, ``KIND_CPU`` ones on the CPU
(in fp32, for tests). The module is loaded once per instance and every batch bucket is warmed up (compiled) at load.

Torch comes from the environment of the NGC ``tritonserver:<release>-pyt-python-py3`` image, or from the folders
named in ``LIVEPORTRAIT_BACKEND_PYTHONPATH`` (set by the project's launcher).

Render models report their source-feature cache as Triton metrics (``liveportrait_feature_cache_*``).
"""
import json
import os
import sys
import time
from pathlib import Path

for _path in reversed(os.environ.get("LIVEPORTRAIT_BACKEND_PYTHONPATH", "").split(os.pathsep)):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

# torch.compile's worker pool re-runs sys.executable, which in the stub's embedded interpreter need not be a Python
# with torch: compile in this process then (the FX graph cache still shares results across processes).
if "python" not in os.path.basename(sys.executable or ""):
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

TRITON_DTYPES = {"TYPE_FP32": "FP32", "TYPE_UINT8": "UINT8"}


class _CacheMetrics:
    """Counters of the source-feature cache, exported on Triton's /metrics endpoint."""

    def __init__(self, model: str):
        family = pb_utils.MetricFamily
        # the families must outlive their metrics: keep both
        self.families = [
            family("liveportrait_feature_cache_hits_total", "render frames served from a cached appearance volume",
                   family.COUNTER),
            family("liveportrait_feature_cache_misses_total", "appearance volumes computed", family.COUNTER),
            family("liveportrait_feature_cache_evictions_total", "volumes evicted (bytes bound)", family.COUNTER),
            family("liveportrait_feature_cache_bytes", "bytes of cached appearance volumes", family.GAUGE),
        ]
        self.hits, self.misses, self.evictions, self.bytes = (f.Metric({"model": model}) for f in self.families)
        self._last = (0, 0, 0)

    def update(self, cache) -> None:
        s = cache.stats
        now = (s.hits, s.misses, s.evictions)
        for metric, value, before in zip((self.hits, self.misses, self.evictions), now, self._last):
            if value > before:
                metric.increment(value - before)
        self._last = now
        self.bytes.set(cache.bytes)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        sys.path.insert(0, str(version_dir))
        from liveportrait_torch.model_spec import TensorSpec
        from liveportrait_torch.torch_serving import RuntimeOptions, ServedTorchModel, load_module

        import torch

        gpu = args["model_instance_kind"] == "GPU"
        options = RuntimeOptions(
            device=f"cuda:{args['model_instance_device_id']}" if gpu else "cpu",
            precision=params.get("precision", "fp32") if gpu else "fp32",
            compile=params.get("compile", "none") if gpu else "none",
            batch_buckets=tuple(int(b) for b in params.get("batch_buckets", "1,2,4,8,16,32").split(",")),
            feature_cache_bytes=int(params.get("feature_cache_bytes", str(1 << 30))),
        )
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        specs = [TensorSpec(t["name"], tuple(int(d) for d in t["dims"]), TRITON_DTYPES[t["data_type"]])
                 for t in config["input"]]
        started = time.perf_counter()
        module = load_module(version_dir, params.get("profile", "full"), config["name"])
        self.model = ServedTorchModel(module, specs, options, max_batch=max(1, config.get("max_batch_size", 1)))
        warm = self.model.warm_up()
        if self.model.compile_error:
            pb_utils.Logger.log_warn(f"{config['name']}: torch.compile failed, serving eagerly: "
                                     f"{self.model.compile_error}")
        pb_utils.Logger.log_info(
            f"{config['name']}: {options.device}, precision {options.precision}, compile {options.compile} "
            f"(torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}); "
            f"loaded and warmed up in {time.perf_counter() - started:.1f} s "
            f"(per batch bucket: {', '.join(f'{b}: {s:.1f} s' for b, s in warm.items())})")
        self.cache_metrics = _CacheMetrics(config["name"]) if self.model.cache is not None else None

    def execute(self, requests):
        batches = [[pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names]
                   for request in requests]
        sizes = [b[0].shape[0] for b in batches]
        feed = batches[0] if len(batches) == 1 else [np.concatenate(parts) for parts in zip(*batches)]
        try:
            outputs = self.model(feed)
        except Exception as exc:  # report per request; the model stays loaded
            error = pb_utils.TritonError(f"pytorch failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        if self.cache_metrics:
            self.cache_metrics.update(self.model.cache)
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]))
                       for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
