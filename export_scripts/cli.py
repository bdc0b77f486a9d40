"""``liveportrait-export``: networks -> verified ONNX files -> a Triton model repository for one target.

    liveportrait-export --weights DIR|synthetic --profile full|tiny --target cpu|gpu --output DIR

Idempotent: a repository whose manifest matches the request is left as it is (``--force`` rebuilds it).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import model_repository as repo
from .build import build_networks
from .checkpoints import CheckpointError, CheckpointPaths, load_official_checkpoints
from .onnx_export import ExportVerificationError
from .profiles import get_profile
from .serving_heads import serving_modules
from .face_models import export_face_models, face_served_models
from .face_models.cache import default_cache_dir
from .face_models.official import OFFICIAL_FILES, official_files_present
from .served_models import ensembles, for_model_set, repository_models, served_models
from .synthetic_weights import synthetic_networks

MANIFEST = "export_manifest.json"
MEDIAPIPE_FACE_LABEL = "mediapipe 0.10.14 BlazeFace short range + FaceMesh (Apache-2.0)"
OFFICIAL_FACE_LABEL = "official InsightFace buffalo_l + LivePortrait landmark (user-supplied)"
OFFICIAL_FACE_MODELS = ("official_face_detector", "official_landmarks_106", "official_landmarks_203")


@dataclass(frozen=True)
class ExportRequest:
    weights: str  # a directory in the official layout, or "synthetic"
    profile: str
    target: str
    output: Path
    seed: int = 0
    model_set: str = "human"
    force: bool = False
    configs_only: bool = False
    face_weights: str | None = None  # where the official face stack files are; default: the weights directory
    device: str = "cuda"  # pytorch target: "cuda" (KIND_GPU) or "cpu" (KIND_CPU, the same backend code for tests)
    face_models: bool = True  # False: the LivePortrait models only (e.g. a machine that cannot fetch MediaPipe)
    grid_sampler: str | None = None  # warping_spade's ONNX volume sampling; default: "gather" on gpu, else "native"
    audio: bool = False  # the audio-to-motion models too (audio_encoder, lmdm: export_scripts/audio_models.py)

    @property
    def sampler(self) -> str:
        return self.grid_sampler or ("gather" if self.target == "gpu" else "native")

    @property
    def synthetic(self) -> bool:
        return self.weights == "synthetic"

    @property
    def face_weights_dir(self) -> Path | None:
        if self.face_weights:
            return Path(self.face_weights)
        return None if self.synthetic else Path(self.weights)

    def weights_label(self) -> str:
        if self.synthetic:
            animal = ", animal" if self.model_set == "animal" else ""
            return f"synthetic (seed {self.seed}, profile {self.profile}{animal})"
        return f"official ({Path(self.weights).resolve()}, {self.model_set})"


def _fingerprint(request: ExportRequest) -> dict:
    files = {}
    if not request.synthetic:
        for path in CheckpointPaths.in_directory(Path(request.weights), request.model_set).all_files():
            if not path.is_file():
                raise CheckpointError(f"checkpoint file not found: {path}")
            files[str(path.resolve())] = _stamp(path)
    if request.audio and not request.synthetic:
        from .audio_models import find_ditto

        files.update({str(f.resolve()): _stamp(f) for f in find_ditto(Path(request.weights)) if f is not None})
    face_dir = request.face_weights_dir
    if face_dir is not None and official_files_present(face_dir):
        files.update({str((face_dir / f).resolve()): _stamp(face_dir / f) for f in OFFICIAL_FILES})
    source_dir = Path(__file__).resolve().parent
    code = hashlib.sha256()
    for path in sorted(source_dir.rglob("*.py")) + [repo.PYTHON_MODEL, repo.TORCH_MODEL]:
        code.update(path.read_bytes())
    return {"weights": request.weights_label(), "model_set": request.model_set, "profile": request.profile,
            "target": request.target,
            "device": request.device if request.target == "pytorch" else None, "face_models": request.face_models,
            "grid_sampler": request.sampler, "audio": request.audio,
            "checkpoint_files": files, "code_sha256": code.hexdigest()}


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, int(stat.st_mtime)]


def _up_to_date(request: ExportRequest, fingerprint: dict) -> bool:
    manifest = request.output / MANIFEST
    if request.force or not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    return recorded.get("fingerprint") == fingerprint and all(
        (request.output / name / "config.pbtxt").is_file() for name in recorded.get("models", []))


def load_networks(request: ExportRequest):
    profile = get_profile(request.profile)
    if request.synthetic:
        return profile, synthetic_networks(profile, request.seed)
    if profile.name != "full":
        raise CheckpointError("official checkpoints have the full-size architecture: use --profile full")
    networks = build_networks(profile)
    load_official_checkpoints(networks, CheckpointPaths.in_directory(Path(request.weights), request.model_set))
    return profile, networks


def run_export(request: ExportRequest, log=print) -> dict:
    """Export and write the repository; returns the manifest."""
    if request.target not in repo.TARGETS:
        raise ValueError(f"unknown target {request.target!r}; choose one of {repo.TARGETS}")
    fingerprint = _fingerprint(request)
    if _up_to_date(request, fingerprint):
        log(f"{request.output}: up to date ({request.weights_label()}, target {request.target}); nothing to do")
        return json.loads((request.output / MANIFEST).read_text())
    profile, networks = load_networks(request)
    log(f"weights: {request.weights_label()}")
    if request.synthetic:
        log("NOTE: synthetic weights produce structured noise, not faces. Point --weights at the official "
            "LivePortrait weights directory for real results.")
    parameters = {"weights": request.weights_label(), "profile": profile.name}
    request.output.mkdir(parents=True, exist_ok=True)
    if request.target == "pytorch":
        rows = _export_torch_models(request, profile, networks, parameters, log)
    else:
        rows = _export_liveportrait_models(request, profile, networks, parameters, log)
    if request.face_models and request.model_set == "human":  # an animal set is served beside a human one
        rows += _export_face_models(request, log)
    if request.audio and request.model_set == "human":  # one copy of the audio models, beside the human set
        from .audio_models import export_audio_models

        rows += export_audio_models(request, parameters, log)
    if request.target != "pytorch":
        for ensemble in ensembles(profile):
            ensemble = for_model_set(ensemble, request.model_set)
            repo.write_ensemble(request.output, ensemble, parameters)
            rows.append({"model": ensemble.name, "ensemble_of": [s.model for s in ensemble.steps]})
    manifest = {"fingerprint": fingerprint, "models": [r["model"] for r in rows], "exports": rows}
    (request.output / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _summary(request, rows, log)
    return manifest


def _export_liveportrait_models(request: ExportRequest, profile, networks, parameters: dict[str, str], log) -> list[dict]:
    """Each served model: export to ONNX, verify against PyTorch, write its folder of the repository."""
    modules = serving_modules(networks, request.sampler)
    specs = served_models(profile)
    rows = []
    for index, spec in enumerate(specs, 1):
        served = for_model_set(spec, request.model_set)  # the name it is served under (e.g. *_animal)
        log(f"[{index}/{len(specs)}] {served.name}: exporting and verifying against PyTorch ...")
        rows.append(repo.export_served_model(request.output, modules[spec.name], spec, served, request.target,
                                             parameters, log))
    return rows


def _export_torch_models(request: ExportRequest, profile, networks, parameters: dict[str, str], log) -> list[dict]:
    """pytorch target: each served model and each (fused) ensemble as its module's state dict + the network code."""
    from .torch_serving import build_served_module

    models = [*served_models(profile), *ensembles(profile)]
    rows = []
    for index, model in enumerate(models, 1):
        started = time.perf_counter()
        state = build_served_module(networks, profile.name, model.name).state_dict()
        model = for_model_set(model, request.model_set)
        repo.write_torch_model(request.output, model, state, parameters, request.device)
        size = (request.output / model.name / str(repo.VERSION) / "weights.pt").stat().st_size
        rows.append({"model": model.name, "weights_bytes": size, "seconds": round(time.perf_counter() - started, 2)})
        log(f"[{index}/{len(models)}] {model.name}: {size / 1e6:.1f} MB of weights ({request.device})")
    return rows


def _export_face_models(request: ExportRequest, log) -> list[dict]:
    """The face detector and landmarks (MediaPipe by default; the official stack too when its files are supplied)."""
    weights_dir = request.face_weights_dir
    official = weights_dir is not None and official_files_present(weights_dir)
    log(f"face models: {'MediaPipe + official InsightFace/LivePortrait stack' if official else 'MediaPipe'} ...")
    specs = {s.name: s for s in face_served_models(official)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_face_models(Path(tmp), weights_dir, default_cache_dir() / "wheels")
        for name, path in paths.items():
            label = OFFICIAL_FACE_LABEL if name in OFFICIAL_FACE_MODELS else MEDIAPIPE_FACE_LABEL
            repo.write_served_model(request.output, specs[name], path, request.target, {"weights": label})
            rows.append({"model": name, "source": label, "onnx_bytes": path.stat().st_size})
    log(f"      ok: {', '.join(paths)}")
    return rows


def _summary(request: ExportRequest, rows: list[dict], log) -> None:
    log("")
    log(f"wrote {len(rows)} models to {request.output} (target {request.target}, {request.weights_label()}):")
    for row in rows:
        if "ensemble_of" in row:
            log(f"  {row['model']:<30} ensemble: {' -> '.join(row['ensemble_of'])}")
        elif "source" in row:
            log(f"  {row['model']:<30} {row['onnx_bytes'] / 1e6:8.1f} MB  {row['source']}")
        elif "weights_bytes" in row:
            log(f"  {row['model']:<30} {row['weights_bytes'] / 1e6:8.1f} MB  PyTorch")
        else:
            log(f"  {row['model']:<30} {row['onnx_bytes'] / 1e6:8.1f} MB  max error {row['error']:.1e}")


def parse_args(argv: list[str] | None = None) -> ExportRequest:
    parser = argparse.ArgumentParser(prog="liveportrait-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights",
                        help="directory with the official weights (liveportrait/base_models/...), or 'synthetic'")
    parser.add_argument("--profile", choices=["full", "tiny"], default="full")
    parser.add_argument("--target", choices=list(repo.TARGETS), default="cpu")
    parser.add_argument("--output", type=Path, required=True, help="model repository directory to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights")
    parser.add_argument("--model-set", choices=["human", "animal"], default="human",
                        help="animal: the official animal checkpoints (liveportrait_animals/), served under names "
                             "ending in _animal (render_i420_animal, ...) beside a human repository in the same "
                             "Triton (--model-repository twice); no face models (the human repository has them)")
    parser.add_argument("--face-weights", metavar="DIR",
                        help="directory holding the official face stack (insightface/models/buffalo_l/det_10g.onnx, "
                             "2d106det.onnx, liveportrait/landmark.onnx); default: the --weights directory")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="pytorch target: run the models on the GPU (KIND_GPU, default) or on the CPU (tests)")
    parser.add_argument("--grid-sampler", choices=["native", "gather"],
                        help="how warping_spade samples its 3-D volumes in ONNX: 'gather' (default on --target gpu: "
                             "operators stock TensorRT builds, one engine) or 'native' (5-D GridSample nodes)")
    parser.add_argument("--skip-face-models", action="store_true",
                        help="write the LivePortrait models only (the face models need the MediaPipe wheel)")
    parser.add_argument("--audio", action="store_true",
                        help="also export the audio-to-motion models (audio_encoder, lmdm: speech drives the portrait); "
                             "synthetic weights by the same seed, or Ditto's lmdm_v0.4_hubert.pth under --weights")
    parser.add_argument("--force", action="store_true", help="rebuild even if the repository is up to date")
    parser.add_argument("--configs-only", action="store_true",
                        help="write only the config.pbtxt files (no weights), as committed under model_repository/")
    a = parser.parse_args(argv)
    if a.weights is None and not a.configs_only:
        parser.error("--weights is required (a weights directory or 'synthetic')")
    if a.face_weights and not official_files_present(Path(a.face_weights)):
        missing = [str(f) for f in OFFICIAL_FILES if not (Path(a.face_weights) / f).is_file()]
        parser.error(f"--face-weights {a.face_weights} lacks {', '.join(missing)}")
    return ExportRequest(a.weights or "synthetic", a.profile, a.target, a.output, a.seed, a.model_set, a.force,
                         a.configs_only, a.face_weights, a.device, not a.skip_face_models, a.grid_sampler, a.audio)


def main(argv: list[str] | None = None) -> int:
    request = parse_args(argv)
    if request.configs_only:
        models, ensemble_models = repository_models(get_profile(request.profile), audio=request.audio)
        repo.write_reference_configs(request.output, models, ensemble_models, request.target)
        print(f"wrote {len(models) + len(ensemble_models)} configs to {request.output}")
        return 0
    try:
        run_export(request)
    except (CheckpointError, ExportVerificationError, ValueError) as exc:
        print(f"liveportrait-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
