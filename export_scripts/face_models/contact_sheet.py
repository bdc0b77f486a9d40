"""Contact sheet of the face stage: every image with its boxes and landmarks, next to each face's 256 crop.

    python -m export_scripts.face_models.contact_sheet IMAGE_OR_FOLDER... --output sheet.jpg

Used to check visually that the crops frame faces like LivePortrait's (face centred, forehead and chin inside,
eyes level). Runs the exported ONNX models in-process (exported into the cache on first use).
"""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import cv2
import numpy as np

from orchestrator.face import FaceAnalyzer, OnnxFaceModelRunner, crop_face
from orchestrator.face.mesh_layout import MESH_TO_68

from .cache import cached_face_models

TILE = 256
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def annotate(image: np.ndarray, faces) -> np.ndarray:
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(out, f"{index} {face.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * thickness, (0, 255, 0), thickness)
        for x, y in face.landmarks[:, :2]:
            cv2.circle(out, (int(round(x)), int(round(y))), thickness, (255, 255, 0), -1)
        for x, y in face.landmarks[MESH_TO_68, :2]:
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * thickness, (255, 0, 0), -1)
        square = np.array([[0, 0], [512, 0], [512, 512], [0, 512]], np.float64)
        corners = square @ face.crop.M_c2o[:2, :2].T + face.crop.M_c2o[:2, 2]
        cv2.polylines(out, [corners.round().astype(np.int32)], True, (255, 0, 255), thickness)
    return out


def fit(image: np.ndarray, size: int = TILE) -> np.ndarray:
    h, w = image.shape[:2]
    s = size / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    tile = np.full((size, size, 3), 40, np.uint8)
    tile[:resized.shape[0], :resized.shape[1]] = resized
    return tile


async def sheet_rows(paths: list[Path], analyzer: FaceAnalyzer) -> list[np.ndarray]:
    rows = []
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        faces = await analyzer.detect(image)
        tiles = [fit(annotate(image, faces))] + [crop_face(image, f).image_256 for f in faces[:3]]
        tiles += [np.full((TILE, TILE, 3), 40, np.uint8)] * (4 - len(tiles))
        row = np.hstack(tiles)
        cv2.putText(row, path.name, (4, TILE - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path("face_contact_sheet.jpg"))
    args = parser.parse_args(argv)
    paths = sorted(p for i in args.inputs for p in ([i] if i.is_file() else i.rglob("*"))
                   if p.suffix.lower() in EXTENSIONS)
    analyzer = FaceAnalyzer(OnnxFaceModelRunner(cached_face_models()))
    rows = asyncio.run(sheet_rows(paths, analyzer))
    cv2.imwrite(str(args.output), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output} ({len(rows)} images)")


if __name__ == "__main__":
    main()
