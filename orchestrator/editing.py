"""EditPortrait: a prepared source (decode, face crop, motion and appearance extraction) kept in a session, then per
edit the keypoint stage (edit offsets, eye/lip retargeting MLPs, stitching), ``warping_spade`` on the session's
appearance volume (RGB: a still needs no chroma subsampling), paste-back and PNG/JPEG.

Sessions are an LRU bounded in count and bytes, with an idle TTL; a session is found by its id or by the digest of
the source bytes and the preparation options, so a replica that lost it (or never had it) prepares the source again
when the image comes with the request.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from .pipeline.driving import EditedMotion, neutral_motion
from .edit import Edit, deltas
from .errors import InvalidRequest
from .media import encode_image
from .keypoints import KeypointOptions, SourceKeypoints, source_keypoints
from .options import AnimateOptions, EditRequestOptions
from .pipeline.paste import PasteBack, feathered_mask
from .pipeline import KeypointStage, RequestContext, Source, prepare_source
from .quoting import quote


@dataclass
class PreparedSource:
    """What successive edits of one source share."""

    source: Source
    keypoints: SourceKeypoints
    options: AnimateOptions  # the preparation options
    key: str
    feature_3d: np.ndarray  # the source's appearance volume, computed once per session
    paste: PasteBack | None = None  # built on the first pasted edit

    @property
    def nbytes(self) -> int:
        arrays = [self.source.image, self.source.crop_256, self.feature_3d]
        if self.paste is not None:
            arrays += [self.paste.mask, self.paste._source_part]  # (_mask is a view of mask)
        return int(sum(a.nbytes for a in arrays)) + 4096

    def paste_back(self) -> PasteBack | None:
        if self.source.M_c2o is None:
            return None
        if self.paste is None:
            self.paste = PasteBack(self.source.image, self.source.M_c2o, feathered_mask())
        return self.paste


def preparation(options: AnimateOptions) -> tuple:
    """The options a prepared source depends on (crop and face selection)."""
    o = options
    hint = None if o.face_hint is None else tuple(float(v) for v in o.face_hint)
    return o.crop_source, o.source_crop, o.source_max_dim, o.source_division, o.face_index, o.face_order, hint


def source_key(data: bytes, options: AnimateOptions) -> str:
    """Digest of the source bytes and of the options its preparation depends on."""
    return hashlib.sha256(data + repr(preparation(options)).encode()).hexdigest()


class SessionStore:
    """LRU of prepared sources, bounded in count and bytes, each dropped after ``ttl_s`` idle seconds."""

    def __init__(self, max_sessions: int = 64, max_bytes: int = 512 * 1024 * 1024, ttl_s: float = 900.0,
                 clock=time.monotonic):
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[str, tuple[PreparedSource, float]] = OrderedDict()
        self._by_key: dict[str, str] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p, _ in self._entries.values())

    def get(self, session_id: str) -> PreparedSource | None:
        self._expire()
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        self._entries[session_id] = (entry[0], self.clock())
        self._entries.move_to_end(session_id)
        return entry[0]

    def find(self, key: str) -> tuple[str, PreparedSource] | None:
        session_id = self._by_key.get(key)
        prepared = self.get(session_id) if session_id else None
        return (session_id, prepared) if prepared is not None else None

    def put(self, prepared: PreparedSource) -> str:
        old = self._by_key.get(prepared.key)
        if old is not None:
            self._drop(old)
        session_id = uuid.uuid4().hex
        self._entries[session_id] = (prepared, self.clock())
        self._by_key[prepared.key] = session_id
        self.trim()
        return session_id

    def trim(self) -> None:
        """Drop expired sessions, then the least recently used ones beyond the bounds (the newest always stays)."""
        self._expire()
        while len(self._entries) > 1 and (len(self._entries) > self.max_sessions or self.nbytes > self.max_bytes):
            self._drop(next(iter(self._entries)))

    def _expire(self) -> None:
        now = self.clock()
        for session_id in [s for s, (_, used) in self._entries.items() if now - used > self.ttl_s]:
            self._drop(session_id)

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is not None and self._by_key.get(entry[0].key) == session_id:
            del self._by_key[entry[0].key]


async def prepare(data: bytes, options: AnimateOptions, ctx: RequestContext) -> PreparedSource:
    """Decode, detect and crop, extract the source motion and appearance (what a session saves)."""
    source = await prepare_source(data, options, ctx)
    with ctx.timings.stage("motion"):
        outputs = await ctx.runner.infer("motion_extractor_u8", {"image_u8": source.crop_256[None]})
    with ctx.timings.stage("appearance"):
        image = source.crop_256.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)  # preprocess_image
        feature = (await ctx.runner.infer("appearance_feature_extractor", {"image": image}))["feature_3d"]
    return PreparedSource(source, source_keypoints(outputs), options, source_key(data, options), feature)


async def session_source(store: SessionStore, session_id: str, data: bytes, options: AnimateOptions,
                         ctx: RequestContext) -> tuple[str, PreparedSource, bool]:
    """(session id, prepared source, reused) for a request."""
    if session_id:
        prepared = store.get(session_id)
        if prepared is not None and not data and preparation(options) != preparation(prepared.options):
            raise InvalidRequest("the session was prepared with other crop or face options: re-send source_image "
                                 "with the new options")
        if prepared is not None and (not data or source_key(data, options) == prepared.key):
            return session_id, prepared, True
        if not data:
            raise InvalidRequest(f"unknown or expired session_id {quote(session_id)}: re-send source_image")
    if not data:
        raise InvalidRequest("source_image is empty (and no session_id was given)")
    found = store.find(source_key(data, options))
    if found is not None:
        return found[0], found[1], True
    prepared = await prepare(data, options, ctx)
    return store.put(prepared), prepared, False


def edit_stage(prepared: PreparedSource, stitching: bool, runner) -> KeypointStage:
    options = replace(prepared.options, keypoints=KeypointOptions(stitching=stitching), edit=None)
    return KeypointStage(prepared.source, prepared.keypoints, options, True, runner)


async def edit_image(prepared: PreparedSource, edit: Edit, request: EditRequestOptions,
                     ctx: RequestContext) -> tuple[bytes, int, int]:
    """The edited image encoded as asked: (bytes, width, height)."""
    stage = edit_stage(prepared, request.source.keypoints.stitching, ctx.runner)
    with ctx.timings.stage("keypoints"):
        motion = EditedMotion(*vars(neutral_motion(1)).values(), edits=(deltas(edit),))
        kp_driving = await stage(motion)
    with ctx.timings.stage("render"):  # warping + decoder on the session's appearance volume; RGB (a still)
        image = (await ctx.runner.infer("warping_spade", {
            "feature_3d": prepared.feature_3d, "kp_source": prepared.keypoints.x_s[None].astype(np.float32),
            "kp_driving": kp_driving.astype(np.float32)}))["image"]
        crop = np.floor(np.clip(image[0], 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)  # postprocess
    with ctx.timings.stage("paste_back"):  # the session's paste-back mask is built on its first pasted edit
        paste = prepared.paste_back() if request.source.pastes_back else None
        frame = await asyncio.to_thread(paste, crop) if paste else np.ascontiguousarray(crop)
    with ctx.timings.stage("encode"):
        data = await asyncio.to_thread(encode_image, frame, request.image_format, request.jpeg_quality)
    return data, frame.shape[1], frame.shape[0]

