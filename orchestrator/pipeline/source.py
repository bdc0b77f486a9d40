"""Source preparation: the portrait decoded (EXIF, longest side <= ``source_max_dim``, even sides), its face found and
cropped to the network's 256x256 input (or the whole image, or the box of a hint in animal mode); with
``options.faces``, every face detected once and each selected face cropped (``prepare_sources``)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InvalidRequest, NoFace
from ..face import Face, crop_face, decode_image, limit_size, select_face
from ..face.analyzer import NO_FACE_HINT
from ..face.geometry import crop_rect, crop_transform_from_rect, resize_crop, warp_crop
from ..face.ordering import box_iou
from ..options import AnimateOptions, FaceSelection
from .context import RequestContext

F32 = np.float32


@dataclass(frozen=True)
class Source:
    image: np.ndarray  # full-resolution RGB (after the size limit)
    crop_256: np.ndarray  # network input
    M_c2o: np.ndarray | None  # crop -> image (None without cropping)
    eye_ratio: tuple[float, float] | None
    lip_ratio: float | None
    box: np.ndarray | None
    index: int = 0  # the face's index in face_order among the detected faces (animal mode: the box's)
    eye_open: tuple[float, float] | None = None  # the motion generator's eye-open condition, where measured


async def prepare_source(data: bytes, options: AnimateOptions, ctx: RequestContext) -> Source:
    image = await _decode(data, options, ctx)
    with ctx.timings.stage("detect"):
        if options.model_set == "animal":
            return await asyncio.to_thread(animal_source, image, options)
        faces = await ctx.analyzer.detect(image, options.face_order, options.face_hint,
                                          every_face=options.crop_source and options.needs_every_face)
        if options.crop_source:
            if not faces:
                raise NoFace(f"no face was found in the source image; {NO_FACE_HINT}")
            face = select_face(faces, options.face_index, options.face_hint)
            return face_source(image, face, next(i for i, f in enumerate(faces) if f is face))
        face = faces[0] if faces else None
        crop_256 = cv2.resize(image, (256, 256))  # official: the whole image, resized
        return Source(image, crop_256, None, face.eye_ratio if face else None, face.lip_ratio if face else None,
                      None)


async def prepare_sources(data: bytes, options: AnimateOptions, ctx: RequestContext,
                          max_faces: int = 8) -> tuple[list[Source], list[str]]:
    """The faces to animate, in selection order, each with its own crop, crop matrix and ratios, and warnings (a
    group larger than ``max_faces``). One face (``prepare_source``) unless ``options.faces`` is set."""
    if options.faces is None:
        return [await prepare_source(data, options, ctx)], []
    check_face_count(options.faces, max_faces)
    image = await _decode(data, options, ctx)
    with ctx.timings.stage("detect"):
        if options.model_set == "animal":
            return [animal_source(image, options, np.array(box), i) for i, box in enumerate(options.faces.boxes)], []
        faces = await ctx.analyzer.detect(image, options.face_order)
        chosen, warnings = select_faces(faces, options.faces, max_faces)
        sources = await asyncio.to_thread(lambda: [face_source(image, faces[i], i) for i in chosen])
    return sources, warnings


def check_face_count(selection: FaceSelection, max_faces: int) -> None:
    named = len(selection.indices) + len(selection.boxes)
    if named > max_faces:
        raise InvalidRequest(f"options.faces names {named} faces; this server animates at most {max_faces} faces "
                             "per request")


def select_faces(faces: list[Face], selection: FaceSelection, max_faces: int) -> tuple[list[int], list[str]]:
    """Indices (in face_order) of the selected faces, and warnings. ``all``: the first ``max_faces``; ``indices``:
    those faces; ``boxes``: the face overlapping each box most (like ``face_hint``)."""
    check_face_count(selection, max_faces)
    if not faces:
        raise NoFace("no face was found in the source image, and options.faces animates detected faces; animate "
                     "one face with a `face_hint` box around it (without options.faces)")
    found = f"{len(faces)} face(s) were found in the source image"
    if selection.all:
        warnings = [] if len(faces) <= max_faces else [
            f"{found}; the first {max_faces} in face_order were animated (the server's limit per request)"]
        return list(range(min(len(faces), max_faces))), warnings
    chosen: list[int] = []
    for k, index in enumerate(selection.indices):
        if index >= len(faces):
            raise InvalidRequest(f"options.faces.indices[{k}] is face {index}, but {found} (indices 0 to "
                                 f"{len(faces) - 1} in face_order)")
        chosen.append(index)
    for k, box in enumerate(selection.boxes):
        overlaps = [box_iou(face.box, box) for face in faces]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0:
            raise InvalidRequest(f"options.faces.boxes[{k}] {list(box)} holds no detected face; {found} at "
                                 f"{[[round(float(v)) for v in face.box] for face in faces]}")
        if best in chosen:
            raise InvalidRequest(f"options.faces.boxes[{k}] holds face {best}, which boxes[{chosen.index(best)}] "
                                 "holds too")
        chosen.append(best)
    return chosen, []


def face_source(image: np.ndarray, face: Face, index: int) -> Source:
    crop = crop_face(image, face)
    return Source(image, crop.image_256, crop.M_c2o, crop.eye_ratio, crop.lip_ratio, crop.face.box, index,
                  face.eye_open)


async def _decode(data: bytes, options: AnimateOptions, ctx: RequestContext) -> np.ndarray:
    with ctx.timings.stage("decode"):
        return await asyncio.to_thread(
            lambda: limit_size(decode_image(data), options.source_max_dim, options.source_division))


def animal_source(image: np.ndarray, options: AnimateOptions, box: np.ndarray | None = None,
                  index: int = 0) -> Source:
    """Animal mode (no animal detector): the whole image resized (``crop_source: false``, official), or the crop of
    the ``face_hint`` box (or ``box``): the box's corners as the crop points with an upright axis (no rotation),
    scaled by ``crop_scale`` and shifted by ``crop_vy_ratio`` like the official crop around landmarks. No eye/lip
    ratios (the animal pipeline has no retargeting)."""
    if not options.crop_source:
        return Source(image, cv2.resize(image, (256, 256)), None, None, None, None)
    x1, y1, x2, y2 = (float(v) for v in (options.face_hint if box is None else box))
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], F32)
    up = np.array([[(x1 + x2) / 2, y1], [(x1 + x2) / 2, y2]], F32)
    crop = options.source_crop
    transform = crop_transform_from_rect(crop_rect(corners, crop.scale, 0.0, crop.vy_ratio, anchors=up), crop.dsize,
                                         rotate=False)
    crop_512 = warp_crop(image, transform)
    return Source(image, resize_crop(crop_512), transform.M_c2o, None, None, np.array([x1, y1, x2, y2]), index)
