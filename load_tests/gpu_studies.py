"""The device check's in-process studies (``gpu_check``, step 2): the served PyTorch modules run in this process on
the device, from the exported weights: warping + decoder speed per precision and batch, the extractors, the FLOP
floor against a measured matrix-product rate, and the fidelity of each precision variant against fp32."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from export_scripts.onnx_export import relative_l2
from export_scripts.torch_serving import FP32_ISLANDS, RuntimeOptions, ServedTorchModel, load_module

IMAGE_TOLERANCE = 5e-3  # rel-L2 of the float image against fp32
LEVEL_TOLERANCE = 2  # uint8 levels, on >= 99% of pixels


def render_batch(batch: int, seed: int, golden: dict | None = None) -> list[np.ndarray]:
    """source_u8, kp_source, kp_driving: golden case A's (repeated) or random ones inside the warping volume."""
    rng = np.random.default_rng(seed)
    if golden is not None:
        return [np.repeat(golden["source_u8"][None], batch, axis=0),
                *(np.repeat(golden[k].reshape(1, 21, 3).astype(np.float32), batch, axis=0)
                  for k in ("kp_source", "kp_driving"))]
    return [rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8),
            ((rng.random((batch, 21, 3)) - 0.5) * 0.8).astype(np.float32),
            ((rng.random((batch, 21, 3)) - 0.5) * 0.8).astype(np.float32)]


def render_specs(profile: str):
    from export_scripts.profiles import get_profile
    from export_scripts.served_models import ensembles

    return list(next(e for e in ensembles(get_profile(profile)) if e.name == "render_i420").inputs)


def load_golden(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_item(fn, batch: int, device: torch.device, repeats: int) -> float:
    fn()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - started) / repeats / batch * 1e3


class Variant:
    """A render model (render_u8) of the exported weights on the device with one precision setting."""

    def __init__(self, repo: Path, profile: str, device: str, precision: str, islands=FP32_ISLANDS,
                 compile_mode: str = "none", model: str = "render_u8", half: bool = False):
        module = load_module(repo / model / "1", profile, model)
        if half:  # plain .half(): the whole network in float16, for contrast
            module = module.half()
        options = RuntimeOptions(device=device, precision=precision, compile=compile_mode, islands=tuple(islands))
        self.served = ServedTorchModel(module, render_specs(profile), options)
        self.renderer = self.served.renderer
        self.half = half
        self.device = torch.device(device)

    def features(self, source_u8: np.ndarray) -> torch.Tensor:
        if self.half:
            with torch.inference_mode():
                image = self.renderer.preprocess(self.served.to_device(source_u8)).half()
                return self.renderer.appearance(image)
        return self.served.features(source_u8)

    def image(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The float image of warping + decoder (before the uint8 postprocess)."""
        source, kp_s, kp_d = arrays
        feature = self.features(source)
        kps = [self.served.to_device(k) for k in (kp_s, kp_d)]
        if self.half:
            kps = [k.half() for k in kps]
        with torch.inference_mode(), self.served.autocast():
            return self.renderer.warping_spade(feature, *kps).float().cpu().numpy()


def fidelity(image: np.ndarray, reference: np.ndarray) -> dict:
    u8 = np.floor(np.clip(image, 0, 1) * 255).astype(np.int32)
    ref = np.floor(np.clip(reference, 0, 1) * 255).astype(np.int32)
    within = float(np.mean(np.abs(u8 - ref) <= LEVEL_TOLERANCE))
    return {"rel_l2": relative_l2(image, reference), "uint8_within_2_levels": within,
            "max_levels": int(np.abs(u8 - ref).max()),
            "ok": relative_l2(image, reference) <= IMAGE_TOLERANCE and within >= 0.99}


def precision_study(repo: Path, profile: str, device: str, golden: dict | None) -> tuple[dict, dict]:
    """Fidelity of each precision variant against fp32 on golden case A (when given) and a random batch of 8;
    also the fp32 images (the served frames are compared with them)."""
    cases = {"random": render_batch(8, 7)}
    if golden is not None:
        cases["golden_A"] = render_batch(1, 0, golden)
    reference = Variant(repo, profile, device, "fp32")
    expected = {name: reference.image(arrays) for name, arrays in cases.items()}
    del reference
    variants = {
        "fp16 policy (served)": dict(precision="fp16"),
        "autocast fp16, no fp32 islands": dict(precision="fp16", islands=()),
        "policy without normalization island": dict(precision="fp16", islands=("output",)),
        "policy without output island": dict(precision="fp16", islands=("normalization",)),
        "plain .half()": dict(precision="fp32", half=True),
    }
    if device == "cpu":  # float16 convolutions are a GPU matter; on the CPU the check only exercises the code
        variants = {"fp16 policy (served)": dict(precision="fp32")}
    study = {}
    for name, settings in variants.items():
        variant = Variant(repo, profile, device, **settings)
        study[name] = {case: fidelity(variant.image(arrays), expected[case]) for case, arrays in cases.items()}
        del variant
        if device != "cpu":
            torch.cuda.empty_cache()
    return study, expected


def speed_study(repo: Path, profile: str, device: str, batches: list[int], repeats: int) -> dict:
    """ms per frame of warping + decoder + I420 postprocess on the device (features cached, as served)."""
    dev = torch.device(device)
    rows = {}
    settings = {"fp32 eager": dict(precision="fp32"), "fp16 policy eager": dict(precision="fp16"),
                "fp16 policy fused": dict(precision="fp16", compile_mode="reduce-overhead")}
    if device == "cpu":
        settings = {"fp32 eager": dict(precision="fp32")}
    for name, options in settings.items():
        variant = Variant(repo, profile, device, model="render_i420", **options)
        row = {}
        if options.get("compile_mode"):
            row["compile_s"] = round(sum(variant.served.warm_up(repeats=2).values()), 1)
            row["compile_error"] = variant.served.compile_error
        for batch in batches:
            source, kp_s, kp_d = render_batch(batch, batch)
            feature = variant.features(source)
            kps = [variant.served.to_device(k) for k in (kp_s, kp_d)]

            def run():
                with torch.inference_mode(), variant.served.autocast():
                    variant.served.hot(feature, *kps)

            row[f"batch {batch}"] = round(ms_per_item(run, batch, dev, repeats), 3)
        served = variant.served  # the whole in-process call (numpy in/out, cache hits), largest batch
        arrays = render_batch(batches[-1], 3)
        served(arrays)
        row["in-process call, frames/s"] = round(1e3 / ms_per_item(lambda: served(arrays), batches[-1], dev, repeats), 1)
        served.cache.clear()
        served.cache.max_bytes = 0  # every frame recomputes its source's appearance volume, as the ONNX targets do
        row["same, appearance per frame, frames/s"] = round(
            1e3 / ms_per_item(lambda: served(arrays), batches[-1], dev, repeats), 1)
        rows[name] = row
    return rows


def extractor_study(repo: Path, profile: str, device: str, batch: int, repeats: int) -> dict:
    dev = torch.device(device)
    out = {}
    precision = "fp16" if device != "cpu" else "fp32"
    for model, inputs in (("appearance_feature_extractor", lambda: [np.random.default_rng(0).random(
            (batch, 3, 256, 256), dtype=np.float32)]),
                          ("motion_extractor", lambda: [np.random.default_rng(1).random(
                              (batch, 3, 256, 256), dtype=np.float32)])):
        served = ServedTorchModel(load_module(repo / model / "1", profile, model), [], RuntimeOptions(
            device=device, precision=precision))
        reference = ServedTorchModel(load_module(repo / model / "1", profile, model), [], RuntimeOptions(
            device=device, precision="fp32"))
        arrays = inputs()
        tensors = [served.to_device(a) for a in arrays]

        def run():
            with torch.inference_mode(), served.autocast():
                served.hot(*tensors)

        errors = [relative_l2(a, b) for a, b in zip(served(arrays), reference(arrays))]
        out[model] = {"precision": precision, f"ms per image (batch {batch})": round(ms_per_item(run, batch, dev, repeats), 3),
                      "worst output rel_l2 vs fp32": max(errors)}
    return out


def flop_floor(repo: Path, profile: str, device: str) -> dict:
    """FLOPs of one frame of warping + decoder, and the floor they set at the measured bf16 matrix-product rate."""
    from export_scripts.profiles import get_profile

    module = load_module(repo / "warping_spade" / "1", profile, "warping_spade").to(device)
    feature = torch.randn((1, *get_profile(profile).feature_3d_dims), device=device)
    kps = [torch.from_numpy(k).to(device) for k in render_batch(1, 0)[1:]]
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(feature, *kps)
    gflop = counter.get_total_flops() / 1e9
    result = {"gflop_per_frame": round(gflop, 1)}
    if device != "cpu":
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        ms = ms_per_item(lambda: a @ b, 1, torch.device(device), 10)
        tflops = 2 * 8192**3 / (ms / 1e3) / 1e12
        result.update({"bf16_matmul_tflops": round(tflops, 1), "floor_ms_per_frame": round(gflop / tflops, 3)})
    return result
