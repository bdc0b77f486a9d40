"""Portrait edits without a server: each slider against the official formulas (written down here from
KwaiVGI/LivePortrait src/gradio_pipeline.py ``update_delta_new_*`` and ComfyUI-AdvancedLivePortrait nodes.py
``calc_fe``), neutral edits, rotations, validation, keyframe timing, the session store and edits on a template."""
from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from orchestrator.edit import (FIELDS, Edit, InvalidEditError, Keyframe, deltas, euler_angles, keyframe_edits,
                               keypoint_offsets, rotate)
from orchestrator.keypoints import KeypointOptions, SourceKeypoints, rotation_matrix, transform_keypoints

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"

# (keypoint, axis) -> coefficient per unit, copied from the official code (positive values; NEGATIVE: value < 0)
OFFICIAL = {
    "smile": {(20, 1): -0.01, (14, 1): -0.02, (17, 1): 0.0065, (17, 2): 0.003, (13, 1): -0.00275,
              (16, 1): -0.00275, (3, 1): -0.0035, (7, 1): -0.0035},
    "wink": {(11, 1): 0.001, (13, 1): -0.0003, (17, 0): 0.0003, (17, 1): 0.0003, (3, 1): -0.0003},
    "eyebrow": {(1, 1): 0.001, (2, 1): -0.001},
    "lip_pout": {(19, 0): 1.0},
    "lip_purse": {(14, 1): 0.001, (3, 1): -0.0005, (7, 1): -0.0005, (17, 2): -0.0005},
    "lip_grin": {(20, 2): -0.001, (20, 1): -0.001, (14, 1): -0.001},
    "lip_open": {(19, 1): 0.001, (19, 2): 0.0001, (17, 1): -0.0001},
    "gaze_x": {(11, 0): 0.0007, (15, 0): 0.001},
    # eyeball_direction_y: 11.y, 15.y by -0.001, then blink = -y/2: 11.y, 15.y by -0.001*blink, 13.y, 16.y by 0.0003
    "gaze_y": {(11, 1): -0.001 + 0.0005, (15, 1): -0.001 + 0.0005, (13, 1): -0.00015, (16, 1): -0.00015},
    "mov_x": {(5, 0): -1.0},  # the app passes -mov_x to update_delta_new_mov_x
    "mov_y": {(5, 1): 1.0},
    # ALP calc_fe
    "alp_smile": None,  # same as smile
    "alp_wink": None,  # same as wink (+ rotation)
    "alp_eyebrow": None,
    "woo": {(14, 1): 0.001, (3, 1): -0.0005, (7, 1): -0.0005, (17, 2): -0.0005},
    "eee": {(20, 2): -0.001, (20, 1): -0.001, (14, 1): -0.001},
    "aaa": {(19, 1): 0.001, (19, 2): 0.0001, (17, 1): -0.0001},
    "pupil_x": {(11, 0): 0.0007, (15, 0): 0.001},
    "blink": {(11, 1): -0.001, (13, 1): 0.0003, (15, 1): -0.001, (16, 1): 0.0003, (1, 1): -0.00025, (2, 1): 0.00025},
    "pupil_y": {(11, 1): -0.0005, (15, 1): -0.0005, (13, 1): -0.00015, (16, 1): -0.00015, (1, 1): 0.000125,
                (2, 1): -0.000125},
}
OFFICIAL["alp_smile"], OFFICIAL["alp_wink"], OFFICIAL["alp_eyebrow"] = OFFICIAL["smile"], OFFICIAL["wink"], \
    OFFICIAL["eyebrow"]
NEGATIVE = {
    "eyebrow": {(1, 0): 0.001 * -1, (2, 0): 0.001, (1, 1): 0.0003, (2, 1): -0.0003},
    "gaze_x": {(11, 0): 0.001, (15, 0): 0.0007},
    "pupil_x": {(11, 0): 0.001, (15, 0): 0.0007},
}
NEGATIVE["alp_eyebrow"] = NEGATIVE["eyebrow"]
# (pitch, yaw, roll) degrees per unit
ROTATIONS = {"head_pitch": (1, 0, 0), "head_yaw": (0, 1, 0), "head_roll": (0, 0, 1), "rotate_pitch": (1, 0, 0),
             "rotate_yaw": (0, -1, 0), "rotate_roll": (0, 0, 1), "alp_wink": (0, -0.1, -0.1), "aaa": (-0.05, 0, 0)}


def expected(table: dict, value: float) -> np.ndarray:
    exp = np.zeros((21, 3))
    for (k, axis), c in table.items():
        exp[k, axis] += c * value
    return exp


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_each_slider_moves_only_its_official_indices(name):
    spec = next(f for f in FIELDS if f.name == name)
    for value in (spec.high, spec.low):
        if value == 0:
            continue
        d = deltas(Edit({name: value}))
        table = NEGATIVE.get(name, OFFICIAL[name]) if value < 0 else OFFICIAL[name]
        np.testing.assert_allclose(d.exp, expected(table, value), rtol=1e-12, atol=1e-15, err_msg=f"{name}={value}")
        np.testing.assert_allclose(d.rotation, np.asarray(ROTATIONS.get(name, (0, 0, 0))) * value, atol=1e-12)
        assert d.scale == 1.0 and d.src_ratio == 1.0 and d.eye_ratio is None and d.lip_ratio is None


@pytest.mark.parametrize("name", sorted(set(ROTATIONS) - set(OFFICIAL)))
def test_rotation_sliders_only_rotate(name):
    d = deltas(Edit({name: 10.0}))
    assert not d.exp.any()
    np.testing.assert_allclose(d.rotation, np.asarray(ROTATIONS[name]) * 10.0)


def test_scale_ratio_and_retargeting_fields():
    d = deltas(Edit({"mov_z": 1.1, "src_ratio": 0.5, "eye_ratio": 0.4, "lip_ratio": 0.2}))
    assert (d.scale, d.src_ratio, d.eye_ratio, d.lip_ratio) == (pytest.approx(1.1), 0.5, 0.4, 0.2)
    assert not d.exp.any() and not d.rotation.any()


def _source(seed: int = 0) -> SourceKeypoints:
    rng = np.random.default_rng(seed)
    kp = rng.normal(0, 0.3, (21, 3)).astype(np.float32)
    R = rotation_matrix(np.array([8.0]), np.array([-12.0]), np.array([5.0]))
    exp = rng.normal(0, 0.01, (1, 21, 3)).astype(np.float32)
    scale, t = np.array([1.3], np.float32), np.array([[0.02, -0.03, 0.1]], np.float32)
    x_s = transform_keypoints(kp, R, exp, scale, t)[0]
    return SourceKeypoints(kp, R[0], exp[0], 1.3, t[0], x_s)


def test_neutral_edit_is_the_source_reconstruction():
    s = _source()
    for edit in (Edit(), Edit({"smile": 0.0, "mov_z": 1.0, "src_ratio": 1.0, "head_yaw": 0.0})):
        offsets = keypoint_offsets(s.kp, s.R[None], s.exp[None], np.array([s.scale]), s.t[None], [deltas(edit)])
        assert not offsets.any()
        np.testing.assert_allclose(s.x_s + offsets[0], s.x_s, atol=1e-5)


def test_official_image_retargeting_formula():
    """mov_z * scale * (kp @ R(p+dp, y+dy, r+dr) + exp + delta) + t, as execute_image_retargeting computes it."""
    s = _source(1)
    edit = Edit({"head_pitch": 7, "head_yaw": -11, "head_roll": 3, "smile": 0.8, "mov_x": 0.1, "mov_z": 1.1})
    x = s.x_s + keypoint_offsets(s.kp, s.R[None], s.exp[None], np.array([s.scale]), s.t[None], [deltas(edit)])[0]
    R = rotation_matrix(np.array([8.0 + 7]), np.array([-12.0 - 11]), np.array([5.0 + 3]))[0]
    delta = s.exp + expected(OFFICIAL["smile"], 0.8) + expected(OFFICIAL["mov_x"], 0.1)
    official = 1.1 * 1.3 * (s.kp @ R + delta)
    official[:, :2] += s.t[:2]
    np.testing.assert_allclose(x, official, atol=2e-5)


def test_euler_angles_round_trip_and_rotate():
    angles = np.array([[10.0, -20.0, 5.0], [-3.0, 40.0, -30.0]])
    R = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    np.testing.assert_allclose(euler_angles(R), angles, atol=1e-4)
    moved = rotate(R, np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]))
    assert np.array_equal(moved[0], R[0]), "no delta: the rotation is kept bit for bit"
    np.testing.assert_allclose(euler_angles(moved[1:]), angles[1:] + [1, 2, 3], atol=1e-4)


@pytest.mark.parametrize("name,value", [("smile", float("nan")), ("head_yaw", 25.5), ("eye_ratio", 0.81),
                                        ("mov_z", float("inf")), ("wink", -0.1), ("src_ratio", 1.01)])
def test_invalid_values_name_the_field_and_its_range(name, value):
    spec = next(f for f in FIELDS if f.name == name)
    with pytest.raises(InvalidEditError, match=rf"edit\.{name} must be between {spec.low:g} and {spec.high:g}"):
        Edit({name: value})


def test_float32_bounds_are_accepted():
    Edit({"mov_x": float(np.float32(0.19)), "mov_y": float(np.float32(-0.19)), "eye_ratio": float(np.float32(0.8))})


def _keyframes():
    return [Keyframe(Edit({"smile": 0.0}), 0.2), Keyframe(Edit({"smile": 1.0, "head_yaw": 10}), 1.0, "ease_in_out"),
            Keyframe(Edit({"blink": -10}), 0.5, "step")]


def test_too_many_keyframe_frames_are_refused_before_any_is_made():
    """An hour at 1000 fps would build 3.6 M edits (and block the server) before the frame limit was checked."""
    import time

    started = time.perf_counter()
    with pytest.raises(InvalidEditError, match="3600000 frames, more than the limit of 18000"):
        keyframe_edits([Keyframe(Edit({}), 3600.0)], 1000.0, max_frames=18_000)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("fps", [10, 25, 29.97])
def test_keyframes_frame_count_and_ends(fps):
    keyframes = _keyframes()
    edits = keyframe_edits(keyframes, fps)
    assert len(edits) == round(1.7 * fps)
    assert edits[0] == keyframes[0].edit and edits[-1] == keyframes[-1].edit


def test_keyframes_easing_and_step():
    edits = keyframe_edits(_keyframes(), 10)  # 17 frames over 1.7 s: t = i * 1.7 / 16
    times = np.linspace(0, 1.7, 17)
    for t, e in zip(times, edits):
        if t <= 0.2:
            assert e.get("smile") == 0.0
        elif t < 1.2:
            u = (t - 0.2) / 1.0
            eased = 2 * u * u if u < 0.5 else 1 - 2 * (1 - u) ** 2
            assert e.get("smile") == pytest.approx(eased) and e.get("head_yaw") == pytest.approx(10 * eased)
        elif t < 1.7:
            assert e.get("smile") == pytest.approx(1.0) and e.get("blink") == 0.0, "step: held until reached"
    assert keyframe_edits([Keyframe(Edit({"smile": 1.0}), 0.01)], 25) == [Edit({"smile": 1.0})]


def test_keyframes_need_ratios_everywhere_or_nowhere():
    with pytest.raises(InvalidEditError, match="eye_ratio must be set in every keyframe"):
        keyframe_edits([Keyframe(Edit({"eye_ratio": 0.3}), 0.5), Keyframe(Edit(), 0.5)], 10)


def test_session_store_expires_and_is_bounded():
    from orchestrator.editing import PreparedSource, SessionStore
    from orchestrator.pipeline import Source

    now = [0.0]

    def prepared(key: str, side: int = 100) -> PreparedSource:
        image = np.zeros((side, side, 3), np.uint8)
        return PreparedSource(Source(image, np.zeros((256, 256, 3), np.uint8), None, None, None, None),
                              _source(), None, key, np.zeros((1, 8, 2, 32, 32), np.float32))

    store = SessionStore(max_sessions=2, max_bytes=10**9, ttl_s=10.0, clock=lambda: now[0])
    a = store.put(prepared("a"))
    b = store.put(prepared("b"))
    now[0] = 5.0
    assert store.get(a) is not None  # a is now the most recent
    c = store.put(prepared("c"))
    assert store.get(b) is None and store.get(a) is not None and store.get(c) is not None, "LRU: b goes"
    assert store.find("a")[0] == a and store.find("b") is None
    now[0] = 12.0
    assert store.get(a) is not None
    now[0] = 15.5
    assert store.get(c) is None and store.get(a) is not None, "c idle for 10.5 s: expired; a used 3.5 s ago"
    now[0] = 40.0
    assert len(store) == 0
    big = SessionStore(max_sessions=10, max_bytes=prepared("x", 1000).nbytes + 10, ttl_s=10.0, clock=lambda: now[0])
    first = big.put(prepared("x", 1000))
    second = big.put(prepared("y", 1000))
    assert big.get(first) is None and big.get(second) is not None, "bytes bound: the oldest goes"


def test_edit_on_a_template_adds_the_edit_to_every_frame():
    """KeypointStage (stitching off: numpy only) with AnimationOptions.edit = the same stage without it + the edit's
    offsets on each frame's driving motion."""
    from dataclasses import replace

    from client.templates import read_template
    from orchestrator.options import AnimateOptions
    from orchestrator.pipeline import KeypointStage, Source
    from orchestrator.templates import from_proto

    motion = from_proto(read_template(EXAMPLES / "templates" / "d7.pkl")).motion[:12]
    s = _source(2)
    source = Source(np.zeros((8, 8, 3), np.uint8), np.zeros((256, 256, 3), np.uint8), None, (0.3, 0.3), 0.1, None)
    plain = AnimateOptions(keypoints=KeypointOptions(stitching=False))
    edit = Edit({"smile": 0.9, "head_yaw": 10, "blink": 3, "mov_z": 1.05})
    edited = replace(plain, edit=edit)

    async def run(options):
        stage = KeypointStage(source, s, options, True, runner=None)
        return np.concatenate([await stage(motion[i:i + 5]) for i in range(0, 12, 5)]), stage

    without, stage = asyncio.run(run(plain))
    with_edit, _ = asyncio.run(run(edited))
    new = stage.composer.new_motion(motion)
    offsets = keypoint_offsets(s.kp, new.R, new.exp, new.scale, new.t, [deltas(edit)] * 12)
    np.testing.assert_allclose(with_edit, without + offsets, atol=1e-6)
    assert np.abs(offsets).max() > 1e-3
    assert not np.abs(with_edit - without).max() == 0


def test_keyframe_driving_first_and_last_frames_are_the_keyframes_edits():
    """KeyframeDriving through KeypointStage (stitching off: numpy only): frame 0 / the last frame have the
    keypoints EditPortrait computes for the first / last keyframe's edit; count = round(total x fps)."""
    from orchestrator.pipeline.driving import EditedMotion, KeyframeDriving, neutral_motion
    from orchestrator.editing import PreparedSource, edit_stage
    from orchestrator.options import AnimateOptions
    from orchestrator.pipeline import Source

    s = _source(3)
    source = Source(np.zeros((8, 8, 3), np.uint8), np.zeros((256, 256, 3), np.uint8), None, None, None, None)
    prepared = PreparedSource(source, s, AnimateOptions(), "k", np.zeros((1, 8, 2, 32, 32), np.float32))
    keyframes = _keyframes()
    driving = KeyframeDriving(keyframes, Fraction(25), chunk=8)

    async def frames():
        stage = edit_stage(prepared, False, None)
        return np.concatenate([await stage(m) async for m in driving.chunks()])

    async def still(edit):
        motion = EditedMotion(*vars(neutral_motion(1)).values(), edits=(deltas(edit),))
        return (await edit_stage(prepared, False, None)(motion))[0]

    x = asyncio.run(frames())
    assert len(x) == driving.total_frames == round(1.7 * 25)
    np.testing.assert_allclose(x[0], asyncio.run(still(keyframes[0].edit)), atol=1e-6)
    np.testing.assert_allclose(x[0], s.x_s, atol=1e-5)
    np.testing.assert_allclose(x[-1], asyncio.run(still(keyframes[-1].edit)), atol=1e-6)
    assert np.abs(x[-1] - x[0]).max() > 1e-3
