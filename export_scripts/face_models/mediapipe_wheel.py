"""Obtain MediaPipe's face TFLite files from the ``mediapipe==0.10.14`` wheel (Apache-2.0).

Order of preference: an installed ``mediapipe`` package of that version, a wheel already in the cache directory, then
``pip download --no-deps`` into the cache directory. Only the explicit export step calls this; nothing else downloads.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

MEDIAPIPE_VERSION = "0.10.14"
DETECTOR_PATH = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
LANDMARKS_PATH = "mediapipe/modules/face_landmark/face_landmark.tflite"
WHEEL_GLOB = f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"
# Any platform's wheel carries the same model files; this one is pinned so the download is reproducible.
PIP_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_17_x86_64", "--only-binary=:all:")


class WeightsUnavailableError(RuntimeError):
    """The MediaPipe wheel could not be found or downloaded."""


def mediapipe_tflite_files(cache_dir: Path) -> dict[str, bytes]:
    """Return ``{"face_detector": bytes, "face_landmarks": bytes}`` read from the wheel or the installed package."""
    wanted = {"face_detector": DETECTOR_PATH, "face_landmarks": LANDMARKS_PATH}
    installed = _installed_package_root()
    if installed is not None:
        return {name: (installed.parent / path).read_bytes() for name, path in wanted.items()}
    wheel = find_or_download_wheel(cache_dir)
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(path) for name, path in wanted.items()}


def _installed_package_root() -> Path | None:
    try:
        if importlib.metadata.version("mediapipe") != MEDIAPIPE_VERSION:
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    return root if (root.parent / DETECTOR_PATH).is_file() else None


def find_or_download_wheel(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob(WHEEL_GLOB))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", f"mediapipe=={MEDIAPIPE_VERSION}",
               *PIP_PLATFORM, "-d", str(cache_dir)]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(cache_dir.glob(WHEEL_GLOB))
    if result.returncode != 0 or not found:
        raise WeightsUnavailableError(
            f"could not download mediapipe=={MEDIAPIPE_VERSION} into {cache_dir} "
            f"(put the wheel there by hand, or install it): {result.stderr.strip()[-500:]}")
    return found[0]
