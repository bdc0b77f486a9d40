"""Reference comparison: per-frame time of the served path (Triton, render_i420 and warping_spade) vs the same
networks in plain PyTorch eager, in-process, the way the official pipeline runs them (feature volume once per
source, ``warp_decode`` per frame), same machine, same run, interleaved; and the floor: FLOPs per frame divided
by the machine's measured GFLOP/s (a large fp32 matmul in torch)."""
from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export_scripts.benchmark import count_gflop
from export_scripts.build import build_networks
from export_scripts.synthetic_weights import synthetic_networks
from export_scripts.onnx_export import example_inputs
from export_scripts.profiles import get_profile
from export_scripts.served_models import served_models
from export_scripts.serving_heads import serving_modules

from .replicas import BUILD, tiny_cpu_repository, triton_replicas
from .report import new_report
from .triton_load import render_inputs

FRAME_MODELS = ("appearance_feature_extractor", "warping_spade")


@dataclass(frozen=True)
class ReferenceConfig:
    repeats: int = 10
    repository: Path | None = None
    work_dir: Path = BUILD / "reference"
    matmul_size: int = 2048


def frame_gflop(profile_name: str) -> dict[str, float]:
    """FLOPs of one frame per model, counted on the meta device (no compute, any profile in seconds)."""
    profile = get_profile(profile_name)
    with torch.device("meta"):
        modules = serving_modules(build_networks(profile))
    specs = {s.name: s for s in served_models(profile)}
    return {m: round(count_gflop(modules[m], tuple(x.to("meta") for x in example_inputs(specs[m], 1))), 3)
            for m in FRAME_MODELS}


def machine_gflops(size: int, repeats: int = 5) -> float:
    """Achieved fp32 GFLOP/s of a ``size`` x ``size`` matmul (median), with torch's default threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        samples.append(time.perf_counter() - started)
    return round(2 * size**3 / statistics.median(samples) / 1e9, 2)


class Timer:
    """Median ms of named callables, run round-robin so that load from elsewhere hits all of them alike."""

    def __init__(self, fns: dict):
        self.fns = fns

    def run(self, repeats: int) -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in self.fns}
        for fn in self.fns.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in self.fns.items():
                started = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - started) * 1e3)
        return {name: round(statistics.median(s), 2) for name, s in samples.items()}


def triton_fn(client, model: str, inputs: dict[str, np.ndarray]):
    from orchestrator.triton_client import infer_inputs

    tensors = infer_inputs(inputs)
    return lambda: client.infer(model, tensors)


def run_reference(config: ReferenceConfig, log=print) -> dict:
    import tritonclient.grpc as grpcclient

    repository = config.repository or tiny_cpu_repository()
    profile = get_profile("tiny")
    modules = serving_modules(synthetic_networks(profile))
    specs = {s.name: s for s in served_models(profile)}
    source = example_inputs(specs["appearance_feature_extractor"], 1)
    warp_in = example_inputs(specs["warping_spade"], 1)
    with torch.no_grad():
        feature = modules["appearance_feature_extractor"](*source)
    render = render_inputs()
    warp_feeds = {t.name: x.numpy() for t, x in zip(specs["warping_spade"].inputs, (feature, *warp_in[1:]))}

    def eager_official():  # per frame: warp_decode only, F ran once for the source
        with torch.no_grad():
            modules["warping_spade"](feature, *warp_in[1:])

    def eager_render():  # per frame: F + W + G, what render_i420 computes
        with torch.no_grad():
            modules["warping_spade"](modules["appearance_feature_extractor"](*source), *warp_in[1:])

    with triton_replicas(repository, 1, config.work_dir) as (server,):
        client = grpcclient.InferenceServerClient(server.grpc_url)
        timer = Timer({"eager_warp_decode": eager_official, "eager_render": eager_render,
                       "triton_warping_spade": triton_fn(client, "warping_spade", warp_feeds),
                       "triton_render_i420": triton_fn(client, "render_i420", render)})
        ms = timer.run(config.repeats)
    gflops = machine_gflops(config.matmul_size)
    report = new_report("reference", repeats=config.repeats, torch_threads=torch.get_num_threads())
    report["per_frame_ms"] = ms
    report["ratios"] = {
        "served_render_i420_vs_eager_official": round(ms["triton_render_i420"] / ms["eager_warp_decode"], 3),
        "served_render_i420_vs_eager_render": round(ms["triton_render_i420"] / ms["eager_render"], 3),
        "served_warping_spade_vs_eager_official": round(ms["triton_warping_spade"] / ms["eager_warp_decode"], 3),
    }
    report["machine_gflops"] = gflops
    report["floor"] = {}
    for name in ("tiny", "full"):
        per_model = frame_gflop(name)
        official = per_model["warping_spade"]
        served = sum(per_model.values())
        report["floor"][name] = {"gflop_per_frame_models": per_model, "gflop_per_frame_official": official,
                                 "gflop_per_frame_served": round(served, 3),
                                 "floor_ms_official": round(official / gflops * 1e3, 2),
                                 "floor_ms_served": round(served / gflops * 1e3, 2)}
    log(reference_table(report))
    return report


def reference_table(report: dict) -> str:
    out = io.StringIO()
    ms, floor = report["per_frame_ms"], report["floor"]
    out.write(f"machine: {report['machine']['cpu']} x{report['machine']['cores']}, "
              f"matmul {report['machine_gflops']:.1f} GFLOP/s\n")
    for name, value in ms.items():
        out.write(f"  {name:<24} {value:>9.1f} ms/frame\n")
    for name, value in report["ratios"].items():
        out.write(f"  {name:<40} {value:>6.2f}x\n")
    for name, f in floor.items():
        out.write(f"  floor {name}: {f['gflop_per_frame_official']:.1f} GFLOP/frame (official warp_decode) -> "
                  f"{f['floor_ms_official']:.1f} ms; served path {f['gflop_per_frame_served']:.1f} GFLOP -> "
                  f"{f['floor_ms_served']:.1f} ms\n")
    return out.getvalue()
