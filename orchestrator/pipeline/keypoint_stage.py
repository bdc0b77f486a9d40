"""Driving keypoints of each chunk: the official keypoint math (``keypoints``) with the stitching and retargeting MLPs
served by Triton, and edits on top."""
from __future__ import annotations

import numpy as np

from ..edit import EditDeltas, deltas, keypoint_offsets
from ..errors import InvalidRequest
from ..keypoints import (KeypointComposer, Motion, RetargetPlan, SourceKeypoints, combine_retargeting,
                         combined_eye_ratio, combined_lip_ratio, retarget_plan)
from ..options import AnimateOptions
from ..triton_client import RequestRunner
from .driving import require_ratios
from .source import Source

F32 = np.float32


async def retarget(runner: RequestRunner, model: str, x_s: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """The eye (``retarget_eye``, ratio [N, 3]) or lip (``retarget_lip``, ratio [N, 2]) retargeting deltas [N, 21, 3]
    of source keypoints ``x_s`` [N, 21, 3]."""
    name = "eye_ratio" if model.startswith("retarget_eye") else "lip_ratio"
    outputs = await runner.infer(model, {"kp_source": np.ascontiguousarray(x_s, F32), name: ratio.astype(F32)})
    return outputs["delta"].reshape(-1, 21, 3)


async def stitch(runner: RequestRunner, x_s: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The stitching MLP: driving keypoints [N, 21, 3] adjusted so the animated crop pastes back seamlessly."""
    outputs = await runner.infer("stitching", {"kp_source": np.ascontiguousarray(x_s, F32),
                                               "kp_driving": np.ascontiguousarray(x, F32)})
    return outputs["kp_driving_stitched"]


class KeypointStage:
    """Driving keypoints of each chunk: composition, retargeting, stitching and the final multiplier."""

    def __init__(self, source: Source, keypoints: SourceKeypoints, options: AnimateOptions, driving_is_video: bool,
                 runner: RequestRunner):
        self.source = source
        self.kp = keypoints
        self.composer = KeypointComposer(keypoints, options.keypoints, driving_is_video)
        self.plan: RetargetPlan = retarget_plan(options.keypoints, source.eye_ratio is not None, source.lip_ratio)
        self.runner = runner
        self.lip_normalization: np.ndarray | None = None
        self.edit: EditDeltas | None = deltas(options.edit) if options.edit is not None else None

    async def start(self) -> None:
        if self.plan.add_lip_normalization:
            ratio = combined_lip_ratio(self.source.lip_ratio, np.zeros(1, F32))
            self.lip_normalization = (await self._mlp("retarget_lip", ratio))[0]

    async def __call__(self, motion: Motion) -> np.ndarray:
        plan = self.plan
        require_ratios(motion, plan.eye, plan.lip)
        x = self.composer.compose(motion)
        if plan.eye or plan.lip:
            eye = lip = None
            if plan.eye:
                eye = await self._mlp("retarget_eye",
                                      combined_eye_ratio(self.source.eye_ratio, motion.eye_ratio))
            if plan.lip:
                lip = await self._mlp("retarget_lip",
                                      combined_lip_ratio(self.source.lip_ratio, motion.lip_ratio))
            x = combine_retargeting(x, self.kp.x_s, plan, eye, lip)
        edits = getattr(motion, "edits", None) or ([self.edit] * len(motion) if self.edit is not None else None)
        if edits:
            x = await self._apply_edits(x, motion, edits)
        if plan.stitch:
            x = await stitch(self.runner, self._x_s(len(x)), x)
        if self.lip_normalization is not None:
            x = x + self.lip_normalization
        return self.composer.finalize(x)

    async def _apply_edits(self, x: np.ndarray, motion: Motion, edits: list[EditDeltas]) -> np.ndarray:
        """Each frame's edit on top of its keypoints (``edit.keypoint_offsets``), plus the eye/lip retargeting
        deltas toward the edit's target ratios (before stitching, as the official image retargeting does)."""
        new = self.composer.new_motion(motion)
        x = (x + keypoint_offsets(self.kp.kp, new.R, new.exp, new.scale, new.t, edits)).astype(F32)
        eyes, lips = [d.eye_ratio for d in edits], [d.lip_ratio for d in edits]
        if any(v is not None for v in eyes + lips) and self.source.eye_ratio is None:
            raise InvalidRequest("edit.eye_ratio and edit.lip_ratio need the source's landmarks, and no face was "
                                 "found in the source")
        if any(v is not None for v in eyes):
            targets = np.array([[v, v] for v in eyes], F32)
            x = x + await self._mlp("retarget_eye", combined_eye_ratio(self.source.eye_ratio, targets))
        if any(v is not None for v in lips):
            targets = np.array(lips, F32)
            x = x + await self._mlp("retarget_lip", combined_lip_ratio(self.source.lip_ratio, targets))
        return x

    async def _mlp(self, model: str, ratio: np.ndarray) -> np.ndarray:
        return await retarget(self.runner, model, self._x_s(len(ratio)), ratio)

    def _x_s(self, n: int) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(self.kp.x_s, (n, 21, 3)), F32)
