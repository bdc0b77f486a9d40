"""Per-model latency: PyTorch eager vs onnxruntime vs Triton (CPU target), with FLOPs and achieved GFLOP/s.

    python -m export_scripts.benchmark [--profiles tiny,full] [--batches 1,4,8] [--repeats 3] [--models a,b]

Prints one table row per (profile, model, batch). Synthetic weights (timings do not depend on the values).
On a GPU machine, ``--cuda`` adds onnxruntime's CUDA provider and torch on the GPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

from .cli import ExportRequest, run_export
from .onnx_export import example_inputs
from .profiles import get_profile
from .served_models import served_models
from .serving_heads import serving_modules
from .synthetic_weights import synthetic_networks

BUILD = Path(__file__).resolve().parents[1] / "build" / "bench"


@dataclass
class Row:
    profile: str
    model: str
    batch: int
    gflop: float
    timings_ms: dict[str, float]

    def gflops(self, path: str) -> float:
        ms = self.timings_ms.get(path)
        return self.gflop / (ms / 1e3) if ms else float("nan")


@dataclass(frozen=True)
class Settings:
    batches: tuple[int, ...] = (1, 4, 8)
    repeats: int = 3
    warmup: bool = True
    models: frozenset[str] | None = None
    cuda: bool = False
    triton: bool = True


def median_ms(fn, settings: Settings) -> float:
    repeats = settings.repeats
    if settings.warmup:
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def count_gflop(module, inputs) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops() / 1e9


def triton_infer(client, spec, feeds):
    import tritonclient.grpc as grpcclient

    from orchestrator.triton_client import infer_inputs

    tensors = infer_inputs({t.name: feeds[t.name] for t in spec.inputs})
    return client.infer(spec.name, tensors, outputs=[grpcclient.InferRequestedOutput(t.name) for t in spec.outputs])


def bench_profile(profile_name: str, settings: Settings) -> list[Row]:
    from orchestrator.triton_process import TritonProcess
    import tritonclient.grpc as grpcclient

    profile = get_profile(profile_name)
    repository = BUILD / f"repo-{profile_name}-cpu"
    run_export(ExportRequest(weights="synthetic", profile=profile_name, target="cpu", output=repository),
               log=lambda *_: None)
    modules = serving_modules(synthetic_networks(profile))
    specs = [s for s in served_models(profile) if settings.models is None or s.name in settings.models]
    server = TritonProcess(repository, log_file=BUILD / f"triton-{profile_name}.log") if settings.triton else None
    rows = []
    try:
        if server:
            server.start()
            client = grpcclient.InferenceServerClient(server.grpc_url)
        for spec in specs:
            session = ort.InferenceSession(str(repository / spec.name / "1" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
            cuda_session = _cuda_session(repository / spec.name / "1" / "model.onnx") if settings.cuda else None
            for batch in settings.batches:
                inputs = example_inputs(spec, batch)
                feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs)}
                timings = {}
                with torch.no_grad():
                    timings["torch"] = median_ms(lambda: modules[spec.name](*inputs), settings)
                timings["onnxruntime"] = median_ms(lambda: session.run(None, feeds), settings)
                if server:
                    timings["triton"] = median_ms(lambda: triton_infer(client, spec, feeds), settings)
                if cuda_session is not None:
                    timings["ort_cuda"] = median_ms(lambda: cuda_session.run(None, feeds), settings)
                    timings["torch_cuda"] = _torch_cuda_ms(modules[spec.name], inputs, settings)
                row = Row(profile_name, spec.name, batch, count_gflop(modules[spec.name], inputs), timings)
                rows.append(row)
                print_row(row, flush=True)
    finally:
        if server:
            server.stop()
    return rows


def _cuda_session(path: Path):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    return ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def _torch_cuda_ms(module, inputs, settings: Settings) -> float:
    if not torch.cuda.is_available():
        return float("nan")
    module = module.cuda()
    inputs = [x.cuda() for x in inputs]

    def run():
        module(*inputs)
        torch.cuda.synchronize()

    with torch.no_grad():
        ms = median_ms(run, settings)
    module.cpu()
    return ms


PATHS = ("torch", "onnxruntime", "triton", "ort_cuda", "torch_cuda")


def header() -> str:
    cols = " ".join(f"{p + ' ms':>14}" for p in PATHS)
    return f"{'profile':<7} {'model':<29} {'batch':>5} {'GFLOP':>9} {cols} {'ORT GFLOP/s':>12} {'triton/ORT':>11}"


def print_row(row: Row, flush: bool = False) -> None:
    cols = " ".join(f"{row.timings_ms[p]:>14.1f}" if p in row.timings_ms else f"{'-':>14}" for p in PATHS)
    ratio = row.timings_ms["triton"] / row.timings_ms["onnxruntime"] if "triton" in row.timings_ms else float("nan")
    print(f"{row.profile:<7} {row.model:<29} {row.batch:>5} {row.gflop:>9.2f} {cols} "
          f"{row.gflops('onnxruntime'):>12.1f} {ratio:>11.2f}", flush=flush)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="tiny,full")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--no-triton", action="store_true")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up call (full size: saves minutes)")
    parser.add_argument("--cuda", action="store_true", help="also time onnxruntime CUDA and torch on the GPU")
    a = parser.parse_args(argv)
    settings = Settings(
        batches=tuple(int(b) for b in a.batches.split(",")), repeats=a.repeats, warmup=not a.no_warmup,
        models=frozenset(a.models.split(",")) if a.models else None, cuda=a.cuda, triton=not a.no_triton)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
          f"median of {a.repeats}{' after one warm-up' if settings.warmup else ''}; synthetic weights")
    print(header())
    for profile in a.profiles.split(","):
        bench_profile(profile, settings)


if __name__ == "__main__":
    main()
