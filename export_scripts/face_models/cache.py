"""Exported face models cached on disk, keyed by the converter's source code (for tests, benchmarks, demos)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import export_face_models

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCES = ("__init__.py", "heads.py", "tflite_graph.py", "mediapipe_wheel.py")


def default_cache_dir() -> Path:
    return Path(os.environ.get("LIVEPORTRAIT_CACHE", Path.home() / ".cache" / "liveportrait"))


def converter_digest() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def cached_face_models(cache_dir: Path | None = None) -> dict[str, Path]:
    """Export ``face_detector`` / ``face_landmarks`` once per converter version; return name -> ONNX path."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache_dir / "face_onnx" / converter_digest()
    paths = {name: folder / f"{name}.onnx" for name in ("face_detector", "face_landmarks")}
    if not all(p.is_file() for p in paths.values()):
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        written = export_face_models(tmp, None, cache_dir / "wheels")
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in written.items():
            path.replace(paths[name])
        for leftover in tmp.glob("*"):
            leftover.unlink()
        tmp.rmdir()
    return paths
