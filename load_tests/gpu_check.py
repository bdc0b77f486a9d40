"""The device check of the ``pytorch`` target: one command, one report (``scripts/gpu_check.sh`` runs it).

    python -m load_tests.gpu_check --device cuda --profile full --out build/gpu-check [--golden inputs.npz]
    python -m load_tests.gpu_check --device cpu --profile tiny --out build/gpu-check-cpu     # CI: cannot rot

1. exports the synthetic (seed 1) repository of the pytorch target (LivePortrait models only);
2. in-process references on the device, from the exported weights (``gpu_studies``): warping + decoder ms per frame in fp32 eager
   (TF32 off), the fp16 policy eager and fused (torch.compile + CUDA graphs) at batch 1/8/32, appearance and motion
   extractors, the FLOP floor against a measured bf16 matrix-product rate; fidelity of each precision variant
   against fp32 on golden case A and a random batch (float image rel-L2, uint8 levels), ablating the policy's
   float32 islands to show where the error comes from;
3. starts the real tritonserver on that repository, checks every model READY and on the device, compares served
   frames with the in-process fp32 ones, reads the source-feature cache counters, and drives the render path
   (``render_i420``, one frame per request, one source per client) at each concurrency: frames/s, p50/p99;
4. writes ``report.json`` and ``report.md`` (tables) under ``--out``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from export_scripts.cli import ExportRequest, run_export
from export_scripts.onnx_export import relative_l2
from export_scripts.torch_serving import RuntimeOptions, ServedTorchModel, load_module

from .engine import Bounds, ClosedLoop, run_level
from .gpu_studies import (LEVEL_TOLERANCE, extractor_study, flop_floor, load_golden, precision_study, render_batch,
                          speed_study)

SEED = 1  # golden case A's weights


# --- through Triton ----------------------------------------------------------------------------------------------


def triton_env(device: str) -> dict[str, str]:
    """The stub's embedded Python must find its standard library and libpython (a venv's python is not enough)."""
    return {} if device == "cpu" else {"PYTHONHOME": sys.base_prefix}


def cache_counters(metrics_url: str, model: str = "render_i420") -> dict[str, float]:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    found = re.findall(r'^(liveportrait_feature_cache_\w+)\{model="%s"\} ([0-9.e+]+)$' % model, text, re.M)
    return {name: float(value) for name, value in found}


def gpu_processes() -> list[str]:
    try:
        result = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                                 "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


async def load_levels(grpc_url: str, levels: list[int], seconds: float, rows: dict, save, deadline: float) -> None:
    """render_i420, one frame per request; client i always sends source i (the feature cache's steady state)."""
    import itertools

    from .triton_load import TritonCall, open_client, render_inputs

    client = open_client(grpc_url)
    try:
        for concurrency in levels:
            if time.monotonic() + seconds + 20 > deadline:
                rows[f"c{concurrency}"] = {"skipped": "the run's deadline"}
                continue
            calls = [TritonCall(client, "render_i420", render_inputs(seed=i)) for i in range(concurrency)]
            await asyncio.gather(*(call() for call in calls))  # first sight of each source: a cache miss
            order = itertools.cycle(calls)
            stats, _ = await run_level(lambda: next(order)(), ClosedLoop(concurrency),
                                       Bounds(duration_s=seconds, drain_s=60))
            rows[f"c{concurrency}"] = {"frames_per_s": stats.frames_per_s, "p50_ms": stats.latency_ms["p50"],
                                       "p99_ms": stats.latency_ms["p99"], "requests": stats.requests,
                                       "errors": stats.errors}
            save()
    finally:
        await client.close()


def served_study(repo: Path, profile: str, device: str, out: Path, cases: dict, expected: dict, levels: list[int],
                 seconds: float, result: dict, save, deadline: float) -> dict:
    """Fills ``result`` step by step (``save`` after each), so a run cut short still reports what it measured."""
    import tritonclient.grpc as grpcclient

    from orchestrator.triton_client import infer_inputs
    from orchestrator.triton_process import TritonProcess

    started = time.perf_counter()
    server = TritonProcess(repo, log_file=out / "tritonserver.log",
                           startup_timeout_s=max(60.0, deadline - time.monotonic() - 60), extra_env=triton_env(device))
    with server:
        result["ready_after_s"] = round(time.perf_counter() - started, 1)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        index = client.get_model_repository_index().models
        kinds = {m.name: grpcclient.model_config_pb2.ModelInstanceGroup.Kind.Name(
            client.get_model_config(m.name).config.instance_group[0].kind) for m in index}
        result["models"] = {m.name: f"{m.state} {kinds[m.name]}" for m in index}
        on_device = "KIND_CPU" if device == "cpu" else "KIND_GPU"
        result["all_ready"] = all(m.state == "READY" for m in index) and all(
            kinds[m.name] == on_device for m in index)  # every model ready, and on the device checked
        result["gpu_processes"] = gpu_processes()
        save()
        served = {}
        fp32 = ServedTorchModel(load_module(repo / "render_u8" / "1", profile, "render_u8"), [],
                                RuntimeOptions(device=device))  # warping_spade's input: the fp32 appearance volume
        for case, (source, kp_s, kp_d) in ((c, cases[c]) for c in expected):
            feed = {"source_u8": source, "kp_source": kp_s, "kp_driving": kp_d}
            frames = client.infer("render_u8", infer_inputs(feed)).as_numpy("image_u8")
            reference = np.floor(np.clip(expected[case], 0, 1) * 255).transpose(0, 2, 3, 1).astype(np.int32)
            within = float(np.mean(np.abs(frames.astype(np.int32) - reference) <= LEVEL_TOLERANCE))
            image = client.infer("warping_spade", infer_inputs({
                "feature_3d": fp32.features(source).float().cpu().numpy(), "kp_source": kp_s,
                "kp_driving": kp_d})).as_numpy("image")
            served[case] = {"render_u8 within 2 levels": within,
                            "warping_spade rel_l2 vs fp32": relative_l2(image, expected[case])}
        result["fidelity"] = served
        save()
        before = cache_counters(server.metrics_url)
        feed = dict(zip(("source_u8", "kp_source", "kp_driving"), render_batch(1, 11)))
        for _ in range(2):
            client.infer("render_i420", infer_inputs(feed))
        after = cache_counters(server.metrics_url)
        result["feature_cache"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        save()
        result["audio"] = audio_study(client)
        save()
        result["load"] = {}
        asyncio.run(load_levels(server.grpc_url, levels, seconds, result["load"], save, deadline))
        result["feature_cache_after_load"] = cache_counters(server.metrics_url)
    return result


def audio_study(client, repeats: int = 10) -> dict:
    """The audio models with 16 streams in each call: one DDIM step of 16 windows (``lmdm``) and 16 encoder windows
    (``audio_encoder``), the fastest of ``repeats`` calls; scaled to the motion of one second of speech of each of
    the 16 streams (streaming as Ditto online: 2.5 windows x 10 steps and 5 encoder windows per second; offline:
    25/70 windows x 50 steps)."""
    from orchestrator.triton_client import infer_inputs

    rng = np.random.default_rng(0)
    feeds = {"lmdm": {"x_t": rng.standard_normal((16, 80, 265)), "kp_cond": rng.standard_normal((16, 265)),
                      "cond": rng.standard_normal((16, 80, 1103)), "t": np.full((16, 1), 999.0)},
             "audio_encoder": {"audio": 0.1 * rng.standard_normal((16, 6480))}}
    ms = {}
    for model, feed in feeds.items():
        tensors = infer_inputs({k: v.astype(np.float32) for k, v in feed.items()})
        client.infer(model, tensors)  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.infer(model, tensors)
            times.append(time.perf_counter() - started)
        ms[model] = 1e3 * min(times)
    return {"lmdm batch 16 ms": round(ms["lmdm"], 2), "audio_encoder batch 16 ms": round(ms["audio_encoder"], 2),
            "streaming ms per second of speech, 16 streams": round(25 * ms["lmdm"] + 5 * ms["audio_encoder"], 1),
            "offline ms per second of speech, 16 streams": round(25 / 70 * 50 * ms["lmdm"]
                                                                 + 5 * ms["audio_encoder"], 1)}


# --- report --------------------------------------------------------------------------------------------------------


def environment(device: str) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "device": device}
    if device != "cpu":
        env.update({"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                    "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))})
    return env


def markdown(report: dict) -> str:
    lines = [f"# Device check ({report['environment'].get('gpu', 'CPU')}, profile {report['profile']})", ""]
    for section in ("environment", "export", "flops", "extractors"):
        if section in report:
            lines.append(f"**{section}**: `{json.dumps(report[section])}`")
            lines.append("")
    if isinstance(report.get("speed"), dict):
        columns = sorted({k for row in report["speed"].values() if isinstance(row, dict) for k in row})
        lines += ["| warping + decoder + I420, ms per frame | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for name, row in report["speed"].items():
            if isinstance(row, dict):
                lines.append(f"| {name} | " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
        lines.append("")
    if isinstance(report.get("precision"), dict):
        lines += ["| precision variant | case | image rel-L2 vs fp32 | uint8 within 2 levels | max levels | ok |",
                  "|---|---|---|---|---|---|"]
        for name, cases in report["precision"].items():
            if isinstance(cases, dict):
                for case, f in cases.items():
                    lines.append(f"| {name} | {case} | {f['rel_l2']:.2e} | {100 * f['uint8_within_2_levels']:.2f}% | "
                                 f"{f['max_levels']} | {f['ok']} |")
        lines.append("")
    served = report.get("served")
    if isinstance(served, dict) and isinstance(served.get("load"), dict):
        lines += ["| render_i420 through Triton | frames/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
        for level, row in served["load"].items():
            lines.append(f"| {level} | {row.get('frames_per_s')} | {row.get('p50_ms')} | {row.get('p99_ms')} | {row.get('errors', row.get('skipped'))} |")
        lines.append("")
    if isinstance(served, dict):
        rest = {k: v for k, v in served.items() if k != "load"}
        lines.append(f"**served**: `{json.dumps(rest)}`")
    for key, value in report.items():
        if key.endswith("_error"):
            lines.append(f"**{key}**: {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--profile", choices=["full", "tiny"], default=None, help="default: full on cuda, tiny on cpu")
    parser.add_argument("--out", type=Path, default=Path("build/gpu-check"))
    parser.add_argument("--golden", type=Path, help="npz with source_u8 [256,256,3], kp_source, kp_driving [1,21,3]")
    parser.add_argument("--concurrency", default=None, help="default: 1,4,16,64 on cuda, 1,4 on cpu")
    parser.add_argument("--seconds", type=float, default=None, help="per load level (default 8 on cuda, 3 on cpu)")
    parser.add_argument("--repo", type=Path, help="where to export the repository (default: OUT/repo)")
    parser.add_argument("--deadline-s", type=float, default=3600.0,
                        help="wall-clock budget: the load levels that would end past it are skipped")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: speed,precision,served,...")
    a = parser.parse_args(argv)
    cuda = a.device == "cuda"
    profile = a.profile or ("full" if cuda else "tiny")
    device = "cuda:0" if cuda else "cpu"
    levels = [int(c) for c in (a.concurrency or ("1,4,16,64" if cuda else "1,4")).split(",")]
    seconds = a.seconds or (8.0 if cuda else 3.0)
    skip = set(filter(None, a.skip.split(",")))
    a.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + a.deadline_s
    report: dict = {"profile": profile, "environment": environment(device)}

    def save() -> None:
        (a.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        (a.out / "report.md").write_text(markdown(report))

    def section(name: str, fn) -> object:
        if name in skip:
            return None
        started = time.perf_counter()
        print(f"== {name} ...", flush=True)
        try:
            report[name] = fn()
        except Exception as exc:  # one section failing must not lose the others
            report[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            print(f"!! {name}: {report[f'{name}_error']}", flush=True)
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 1)
        save()
        print(f"   {name}: {json.dumps(report.get(name, report.get(name + '_error')), default=str)[:2000]}", flush=True)
        return report.get(name)

    repo = a.repo or a.out / "repo"
    section("export", lambda: run_export(ExportRequest(
        weights="synthetic", profile=profile, target="pytorch", output=repo, seed=SEED, device=a.device,
        face_models=False, audio=True), log=lambda *_: None)["fingerprint"]["weights"])
    golden = load_golden(a.golden)
    section("flops", lambda: flop_floor(repo, profile, device))
    cases = {"random": render_batch(8, 7), **({"golden_A": render_batch(1, 0, golden)} if golden else {})}
    expected = {}

    def precision():
        study, references = precision_study(repo, profile, device, golden)
        expected.update(references)
        return study

    section("precision", precision)
    section("extractors", lambda: extractor_study(repo, profile, device, 32 if cuda else 2, 10 if cuda else 2))
    section("speed", lambda: speed_study(repo, profile, device, [1, 8, 32] if cuda else [1, 2], 5 if cuda else 2))
    report["served"] = {}
    section("served", lambda: served_study(repo, profile, device, a.out, cases, expected, levels, seconds, report["served"],
                                           save, deadline))
    text = markdown(report)
    print(text)
    failed = [k for k in report if k.endswith("_error")]
    return 1 if failed or not report.get("served", {}).get("all_ready", "served" in skip) else 0


if __name__ == "__main__":
    sys.exit(main())
