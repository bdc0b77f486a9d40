"""EditPortrait, AnimationOptions.edit and keyframe driving through the real tritonserver (tiny profile) and the
orchestrator process: reconstruction, sessions (Triton calls counted in the orchestrator's metrics), bounds,
INVALID_ARGUMENT on bad values, animations with edits and keyframes, the CLI."""
from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from client.cli import main as cli
from orchestrator.embedded import OrchestratorProcess

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def server(triton_server):
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-edit.log",
                             extra_args=("--edit-sessions", "2")) as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    with PortraitClient(server.target) as c:
        yield c


def triton_calls(server) -> dict[str, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    pattern = r'^liveportrait_triton_request_duration_seconds_count\{[^}]*model="([^"]+)"[^}]*\} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


def decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    from orchestrator.triton_client import infer_inputs

    with grpcclient.InferenceServerClient(url) as c:
        outputs = c.get_model_config(model).config.output
        result = c.infer(model, infer_inputs(inputs))
        return {t.name: result.as_numpy(t.name) for t in outputs}


def test_zero_edit_is_the_source_reconstruction(client, triton_server):
    """No crop, no stitching, no paste-back: the PNG equals render_u8(source, x_s, x_s) exactly."""
    from orchestrator.face import decode_image, limit_size
    from orchestrator.keypoints import source_keypoints

    result = client.edit(SOURCE, {}, crop_source=False, stitching=False, paste_back=False)
    assert (result.width, result.height) == (512, 512) and result.mime_type == "image/png"
    crop = cv2.resize(limit_size(decode_image(SOURCE.read_bytes()), 1280, 2), (256, 256))
    kp = source_keypoints(infer(triton_server.grpc_url, "motion_extractor_u8", {"image_u8": crop[None]}))
    frame = infer(triton_server.grpc_url, "render_u8", {"source_u8": crop[None], "kp_source": kp.x_s[None],
                                                         "kp_driving": kp.x_s[None]})["image_u8"]
    assert np.array_equal(decode(result.image), frame[0])
    assert any("synthetic" in w for w in result.warnings)
    smiling = client.edit(SOURCE, {"smile": 1.0}, crop_source=False, stitching=False, paste_back=False)
    assert not np.array_equal(decode(smiling.image), decode(result.image))


def test_eye_and_lip_ratio_edits_feed_the_retargeting_mlps(client, triton_server):
    """On a real photo: the eye/lip targets go to retarget_eye / retarget_lip with the source's measured ratios
    (the same as DetectFaces measures) and their deltas are what moves the keypoints: the PNG equals
    render_u8(x_s, x_s + eye delta + lip delta) exactly. With synthetic weights the MLPs (and so the rendered eyes)
    carry no meaning, so the direction of the change cannot be measured on the image; see the README."""
    from orchestrator.face import decode_image, limit_size
    from orchestrator.keypoints import combined_eye_ratio, combined_lip_ratio, source_keypoints

    options = dict(crop_source=False, stitching=False, paste_back=False)
    result = client.edit(SOURCE, {"eye_ratio": 0.6, "lip_ratio": 0.05}, **options)
    face = client.detect(SOURCE).faces[0]
    np.testing.assert_allclose(result.response.source_eye_ratio, face.eye_ratio, rtol=1e-6)
    assert result.response.source_lip_ratio == pytest.approx(face.lip_ratio, rel=1e-6)
    url = triton_server.grpc_url
    crop = cv2.resize(limit_size(decode_image(SOURCE.read_bytes()), 1280, 2), (256, 256))
    kp = source_keypoints(infer(url, "motion_extractor_u8", {"image_u8": crop[None]}))
    eye = infer(url, "retarget_eye", {"kp_source": kp.x_s[None], "eye_ratio": combined_eye_ratio(
        tuple(face.eye_ratio), np.array([[0.6, 0.6]], np.float32))})["delta"].reshape(21, 3)
    lip = infer(url, "retarget_lip", {"kp_source": kp.x_s[None], "lip_ratio": combined_lip_ratio(
        face.lip_ratio, np.array([0.05], np.float32))})["delta"].reshape(21, 3)
    driving = (kp.x_s + eye + lip).astype(np.float32)
    driving = (kp.x_s + (driving - kp.x_s) * np.float32(1.0)).astype(np.float32)  # the driving_multiplier step
    frame = infer(url, "render_u8", {"source_u8": crop[None], "kp_source": kp.x_s[None],
                                     "kp_driving": driving[None]})["image_u8"]
    assert np.array_equal(decode(result.image), frame[0])


def test_pasted_back_at_the_source_resolution_with_sessions(client, server):
    h, w = cv2.imread(str(SOURCE)).shape[:2]
    before = triton_calls(server)
    first = client.edit(SOURCE, {"smile": 0.5, "head_yaw": 10})
    after_first = triton_calls(server)
    assert (first.width, first.height) == (w - w % 2, h - h % 2) and not first.session_reused
    assert len(first.source_face_box) == 4 and first.session_id
    assert after_first["motion_extractor_u8"] == before.get("motion_extractor_u8", 0) + 1
    assert after_first["face_detector"] > before.get("face_detector", 0)
    second = client.edit(None, {"smile": 0.9, "eye_ratio": 0.5, "lip_ratio": 0.3}, session_id=first.session_id,
                         format="jpeg", jpeg_quality=90)
    after_second = triton_calls(server)
    assert second.session_reused and second.mime_type == "image/jpeg" and second.session_id == first.session_id
    for model in ("face_detector", "face_landmarks", "motion_extractor_u8"):
        assert after_second.get(model) == after_first.get(model), f"{model} was called again"
    assert after_first["appearance_feature_extractor"] == before.get("appearance_feature_extractor", 0) + 1
    assert after_second["appearance_feature_extractor"] == after_first["appearance_feature_extractor"]
    assert after_second["warping_spade"] == after_first["warping_spade"] + 1
    assert after_second["retarget_eye"] == after_first.get("retarget_eye", 0) + 1
    assert after_second["retarget_lip"] == after_first.get("retarget_lip", 0) + 1
    assert "detect" not in second.timings and "motion" not in second.timings
    assert decode(second.image).shape == (first.height, first.width, 3)
    # the same bytes again without a session id: found by digest
    third = client.edit(SOURCE, {"wink": 10})
    assert third.session_reused and third.session_id == first.session_id
    assert triton_calls(server)["motion_extractor_u8"] == after_first["motion_extractor_u8"]


def test_sessions_are_bounded_and_a_lost_session_is_recomputed(client):
    """--edit-sessions 2: a third source evicts the first; its id is then refused unless the image comes again."""
    first = client.edit(EXAMPLES / "source" / "s1.jpg", {"smile": 0.3})
    client.edit(EXAMPLES / "source" / "s3.jpg", {"smile": 0.3})
    client.edit(EXAMPLES / "source" / "s5.jpg", {"smile": 0.3})
    with pytest.raises(grpc.RpcError) as error:
        client.edit(None, {"smile": 0.4}, session_id=first.session_id)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "re-send source_image" in error.value.details()
    again = client.edit(EXAMPLES / "source" / "s1.jpg", {"smile": 0.4}, session_id=first.session_id)
    assert not again.session_reused and again.session_id != first.session_id


@pytest.mark.parametrize("edit,field", [({"smile": float("nan")}, "edit.smile must be between -0.3 and 1.3"),
                                        ({"head_yaw": 30}, "edit.head_yaw must be between -25 and 25"),
                                        ({"eye_ratio": -0.1}, "edit.eye_ratio must be between 0 and 0.8"),
                                        ({"mov_z": float("inf")}, "edit.mov_z must be between 0.9 and 1.2")])
def test_bad_values_are_invalid_argument(client, edit, field):
    with pytest.raises(grpc.RpcError) as error:
        client.edit(SOURCE, edit)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.value.details()


def test_unknown_session_without_image_is_invalid_argument(client):
    with pytest.raises(grpc.RpcError) as error:
        client.edit(None, {"smile": 0.1}, session_id="0123456789abcdef")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "re-send source_image" in error.value.details()


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_animate_with_an_edit_and_bad_edit(client, tmp_path):
    from load_tests import scenarios

    template = scenarios.short_template(EXAMPLES / "templates" / "d7.pkl", 3)
    plain = client.animate(SOURCE, template, tmp_path / "a.mp4")
    edited = client.animate(SOURCE, template, tmp_path / "b.mp4", edit={"smile": 1.0, "head_yaw": 10})
    assert plain.frames == edited.frames == 3
    a, b = np.stack(_frames(tmp_path / "a.mp4")), np.stack(_frames(tmp_path / "b.mp4"))
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 0.1
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, template, tmp_path / "c.mp4", edit={"wink": 40})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "options.edit.wink" in error.value.details()


def test_keyframes_make_a_video_of_total_duration_times_fps(client, tmp_path):
    keyframes = {"fps": 10, "keyframes": [{"edit": {}, "duration_s": 0.2},
                                          {"edit": {"smile": 1.0, "head_yaw": 10}, "duration_s": 0.8,
                                           "easing": "ease_in_out"},
                                          {"edit": {"head_yaw": -25, "aaa": 120}, "duration_s": 0.35,
                                           "easing": "step"}]}
    summary = client.animate(SOURCE, None, tmp_path / "kf.mp4", keyframes=keyframes, crf=0)
    frames = _frames(tmp_path / "kf.mp4")
    assert summary.frames == len(frames) == round(1.35 * 10) and (summary.fps.num, summary.fps.den) == (10, 1)
    # first/last frame = EditPortrait of the first/last keyframe's edit (up to the video's 4:2:0 coding; the exact
    # keypoint-level equality is test_edit_math's)
    first, last = (client.edit(SOURCE, e) for e in ({}, {"head_yaw": -25, "aaa": 120}))
    x1, y1, x2, y2 = (int(v) for v in first.source_face_box)

    def distance(a, b):  # in luma: the video's 4:2:0 chroma is far from the still's on synthetic (noise) faces
        luma = (lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[y1:y2, x1:x2].astype(int))
        return np.abs(luma(a) - luma(decode(b.image))).mean()

    assert distance(frames[0], first) < 0.7 * distance(frames[0], last)
    assert distance(frames[-1], last) < 0.7 * distance(frames[-1], first)


def test_cli_edit_and_keyframes(server, tmp_path, capsys):
    out = tmp_path / "edited.png"
    assert cli(["edit", "--server", server.target, "--source", str(SOURCE), "--smile", "0.8", "--head-pitch", "10",
                "--pupil-x", "5", "-o", str(out)]) == 0
    assert decode(out.read_bytes()).ndim == 3 and "session" in capsys.readouterr().out
    assert cli(["edit", "--server", server.target, "--source", str(SOURCE), "--smile", "2", "-o",
                str(tmp_path / "bad.png")]) == 1
    assert "INVALID_ARGUMENT: --smile must be between -0.3 and 1.3" in capsys.readouterr().err
    kf = tmp_path / "kf.json"
    kf.write_text(json.dumps({"fps": 8, "keyframes": [{"edit": {"smile": 0.2}, "duration_s": 0},
                                                      {"edit": {"smile": 1.0}, "duration_s": 0.5}]}))
    video = tmp_path / "kf.mp4"
    assert cli(["animate", "--server", server.target, "--source", str(SOURCE), "--keyframes", str(kf),
                "-o", str(video)]) == 0
    assert len(_frames(video)) == 4


def test_the_asyncio_client_edits_too(server):
    import asyncio

    from client.api import AsyncPortraitClient

    async def go():
        async with AsyncPortraitClient(server.target) as client:
            first = await client.edit(SOURCE, {"alp_smile": 1.0}, format="jpeg")
            return first, await client.edit(SOURCE, {"eee": 10}, session_id=first.session_id)

    first, second = asyncio.run(go())
    assert first.mime_type == "image/jpeg" and second.session_reused and second.session_id == first.session_id


@pytest.mark.parametrize("keyframes,options,message", [
    ([{"edit": {"smile": 0.5}, "duration_s": -1}], {}, "duration_s must be between 0 and 3600"),
    ([{"edit": {"smile": 0.5}, "duration_s": 0}], {}, "the total duration must be more than 0"),
    ([{"edit": {"blink": 9}, "duration_s": 1}], {}, "keyframes[0].edit.blink must be between -20 and 5"),
    ([{"edit": {"eye_ratio": 0.3}, "duration_s": 1}, {"edit": {}, "duration_s": 1}], {},
     "eye_ratio must be set in every keyframe or in none"),
    ([{"edit": {}, "duration_s": 1}], {"edit": {"smile": 1}}, "options.edit does not apply to driving_keyframes"),
])
def test_bad_keyframes_are_invalid_argument(client, tmp_path, keyframes, options, message):
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, None, tmp_path / "x.mp4", keyframes=keyframes, **options)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.value.details()
