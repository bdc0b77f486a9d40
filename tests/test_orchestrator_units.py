"""Units of the orchestrator without Triton: admission control, request options, template validation, driving
keypoint modes."""
from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np
import pytest

from client.messages import animation_options
from client.demo_motion import demo_template
from orchestrator.admission import Admission
from orchestrator.config import parse_args
from orchestrator.errors import InvalidRequest, Overloaded
from orchestrator.keypoints import LIP_ARRAY, KeypointComposer, KeypointOptions, Motion, SourceKeypoints
from orchestrator.media import ENCODER_SPEEDS
from orchestrator.metrics import Metrics
from orchestrator.options import animate_options
from orchestrator.templates import InvalidTemplateError, Template, from_proto, to_proto
from protos.liveportrait.v1 import portrait_animator_pb2 as pb


def test_admission_queues_then_refuses_at_once():
    async def scenario():
        admission = Admission(max_concurrent=1, max_queued=1, metrics=Metrics())
        release = asyncio.Event()
        order = []

        async def job(name):
            async with admission.slot():
                order.append(name)
                await release.wait()

        first = asyncio.create_task(job("first"))
        second = asyncio.create_task(job("second"))
        await asyncio.sleep(0.01)
        assert (admission.running, admission.waiting) == (1, 1)
        with pytest.raises(Overloaded):
            async with admission.slot():
                pass
        release.set()
        await asyncio.gather(first, second)
        assert order == ["first", "second"] and (admission.running, admission.waiting) == (0, 0)

    asyncio.run(scenario())


def test_unset_options_are_the_official_defaults():
    options = animate_options(pb.AnimationOptions(), pb.OutputOptions())
    k = options.keypoints
    assert (k.relative_motion, k.driving_option, k.driving_multiplier, k.animation_region) == \
        (True, "expression-friendly", 1.0, "all")
    assert (k.stitching, k.eye_retargeting, k.lip_retargeting, k.normalize_lip) == (True, False, False, False)
    assert options.paste_back and options.crop_source and options.pastes_back
    assert (options.source_crop.scale, options.source_crop.vy_ratio, options.source_crop.rotate) == (2.3, -0.125, True)
    assert options.driving_crop.crop is None and options.driving_crop.box.scale == 2.2
    assert (options.source_max_dim, options.source_division, options.audio) == (1280, 2, True)
    settings = options.encode_settings  # the fastest encoder at veryfast crf 18's quality
    assert (settings.preset, settings.crf) == ENCODER_SPEEDS["fastest"] == ("ultrafast", 19)


def test_encoder_speed_picks_preset_and_crf_and_crf_replaces_the_speeds():
    speeds = {pb.SMALLEST: ("veryfast", 18), pb.BALANCED: ("superfast", 19), pb.FASTEST: ("ultrafast", 19)}
    for speed, (preset, crf) in speeds.items():
        settings = animate_options(pb.AnimationOptions(), pb.OutputOptions(encoder_speed=speed)).encode_settings
        assert (settings.preset, settings.crf) == (preset, crf)
        chosen = animate_options(pb.AnimationOptions(), pb.OutputOptions(encoder_speed=speed, crf=30)).encode_settings
        assert (chosen.preset, chosen.crf) == (preset, 30)
    with pytest.raises(InvalidRequest, match="encoder_speed"):
        animate_options(pb.AnimationOptions(), pb.OutputOptions(encoder_speed=7))


def test_options_are_parsed_and_checked():
    options = animate_options(animation_options(animation_region="lip", driving_option="pose-friendly",
                                                stitching=False, relative_motion=False), pb.OutputOptions(crf=30))
    assert options.keypoints.animation_region == "lip" and options.keypoints.driving_option == "pose-friendly"
    assert not options.pastes_back and options.crf == 30  # official: paste-back needs stitching
    for bad in (dict(driving_multiplier=float("nan")), dict(crop_scale=0.1), dict(face_hint=[5, 5, 1, 1]),
                dict(source_division=3)):
        with pytest.raises(InvalidRequest):
            animate_options(animation_options(**bad), pb.OutputOptions())
    with pytest.raises(InvalidRequest, match="crf"):
        animate_options(pb.AnimationOptions(), pb.OutputOptions(crf=60))


def test_one_opencv_call_uses_one_thread_unless_asked(capsys):
    """The requests and frames in flight are the parallelism; splitting each small image across every core costs
    more CPU per frame (load_tests/README.md)."""
    assert parse_args([]).opencv_threads == 1
    assert parse_args(["--opencv-threads", "0"]).opencv_threads == 0  # one per core
    with pytest.raises(SystemExit):
        parse_args(["--opencv-threads", "-2"])
    assert "--opencv-threads must be >= 0" in capsys.readouterr().err


def test_template_round_trip_and_validation():
    message = demo_template(frames=6, fps=Fraction(30000, 1001))
    template = from_proto(message)
    assert len(template.motion) == 6 and template.fps == Fraction(30000, 1001)
    assert template.motion.eye_ratio.shape == (6, 2) and template.motion.lip_ratio.shape == (6,)
    again = from_proto(to_proto(Template(template.motion, template.fps)))
    np.testing.assert_array_equal(again.motion.R, template.motion.R)
    broken = pb.MotionTemplate()
    broken.CopyFrom(message)
    del broken.frames[2].exp[5:]
    with pytest.raises(InvalidTemplateError, match="frame 2: exp"):
        from_proto(broken)
    broken.CopyFrom(message)
    broken.fps.den = 0
    with pytest.raises(InvalidTemplateError, match="frame rate"):
        from_proto(broken)
    with pytest.raises(InvalidTemplateError, match="limit"):
        from_proto(message, max_frames=5)


def _source() -> SourceKeypoints:
    rng = np.random.default_rng(0)
    kp = rng.normal(0, 0.3, (21, 3)).astype(np.float32)
    exp = rng.normal(0, 0.02, (21, 3)).astype(np.float32)
    x_s = (1.5 * (kp + exp)).astype(np.float32)
    return SourceKeypoints(kp, np.eye(3, dtype=np.float32), exp, 1.5, np.zeros(3, np.float32), x_s)


def _motion(n: int, seed: int = 1) -> Motion:
    rng = np.random.default_rng(seed)
    angles = rng.normal(0, 0.1, n)
    R = np.stack([[[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]] for a in angles])
    return Motion(rng.uniform(1.4, 1.6, n).astype(np.float32), R.astype(np.float32),
                  rng.normal(0, 0.02, (n, 21, 3)).astype(np.float32), rng.normal(0, 0.05, (n, 3)).astype(np.float32))


def test_first_driving_frame_reproduces_the_source_in_relative_mode():
    source = _source()
    composer = KeypointComposer(source, KeypointOptions(), driving_is_video=True)
    x = composer.compose(_motion(5))
    np.testing.assert_allclose(x[0], source.x_s, atol=1e-6)
    assert composer.multiplier == pytest.approx(1.0, abs=1e-6)


def test_regions_keep_the_source_where_they_do_not_drive():
    source, motion = _source(), _motion(3)
    pose = KeypointComposer(source, KeypointOptions(animation_region="pose"), True)
    pose.compose(motion[0:1])
    np.testing.assert_array_equal(pose.new_motion(motion).exp, np.broadcast_to(source.exp, (3, 21, 3)))
    lip = KeypointComposer(source, KeypointOptions(animation_region="lip"), True)
    lip.compose(motion[0:1])
    new = lip.new_motion(motion)
    np.testing.assert_array_equal(new.R, np.broadcast_to(source.R, (3, 3, 3)))
    untouched = [i for i in range(21) if i not in (6, 12, 14, 17, 19, 20)]
    np.testing.assert_array_equal(new.exp[:, untouched], np.broadcast_to(source.exp[untouched], (3, len(untouched), 3)))


def test_a_driving_image_is_relative_to_the_neutral_expression():
    source, motion = _source(), _motion(1)
    composer = KeypointComposer(source, KeypointOptions(), driving_is_video=False)
    x = composer.compose(motion)
    new = composer.new_motion(motion)
    np.testing.assert_allclose(new.exp[0], source.exp + motion.exp[0] - LIP_ARRAY, atol=1e-6)
    assert composer.multiplier is None  # expression-friendly rescaling is for driving videos only
    assert x.shape == (1, 21, 3)


def test_retargeting_and_lip_normalisation_need_the_source_landmarks():
    from orchestrator.keypoints import RetargetPlan, retarget_plan

    both = KeypointOptions(eye_retargeting=True, lip_retargeting=True)
    assert retarget_plan(both, True, 0.2) == RetargetPlan(True, True, True, False, True)
    assert retarget_plan(both, False, None) == RetargetPlan(True, False, False, False, True)  # stitching stays
    normalize = KeypointOptions(normalize_lip=True)
    assert retarget_plan(normalize, True, 0.2).add_lip_normalization  # open mouth (>= 0.03)
    assert not retarget_plan(normalize, True, 0.01).add_lip_normalization
    assert not retarget_plan(normalize, False, None).add_lip_normalization
