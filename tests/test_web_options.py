"""The web page's options without a browser: they agree with the CLI's flags and the proto's ranges, only changed
values are sent, failures are worded for people, and the Live tab's WebRTC requests carry the page's options, key
and STUN/TURN servers."""
from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest

from client import cli
from client.web_options import ANIMATE_OPTIONS, EDIT_SLIDERS, FACE_ORDERS, animate_kwargs, slider_edit
from protos.liveportrait.v1 import portrait_animator_pb2 as pb


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO.parent / "shared" / "examples"
PROTO = REPO / "protos" / "liveportrait" / "v1" / "portrait_animator.proto"


def test_animate_options_are_the_cli_flags_with_their_defaults():
    names = {o.name for o in ANIMATE_OPTIONS}
    # `edit` is the Animate tab's JSON box (filled by the Edit tab), not a widget of its own
    assert names == (set(cli.OPTION_NAMES) - {"edit"}) | {"crf", "encoder_speed", "audio", "low_latency"} \
        | set(cli.SMOOTHING_FLAGS)
    helps = {a.dest: a.help or "" for a in cli.parser()._subparsers._group_actions[0].choices["animate"]._actions}
    for option in ANIMATE_OPTIONS:
        bracket = re.search(r"\[([^]:]+)", helps[option.name])
        if bracket is None:
            continue  # --face-hint has no default
        default = {True: "on", False: "off"}.get(option.default, option.default) \
            if isinstance(option.default, bool) else option.default
        assert str(default) == bracket.group(1), option.name
    from orchestrator.face.ordering import ORDERINGS
    assert FACE_ORDERS == ORDERINGS


def test_only_changed_options_are_sent():
    values = {o.name: o.default for o in ANIMATE_OPTIONS}
    assert animate_kwargs(values) == {}
    values.update(driving_multiplier=1.5, stitching=False, face_index=2.0, face_hint="1, 2 30 40", crf=20,
                  encoder_speed="smallest")
    assert animate_kwargs(values) == {"driving_multiplier": 1.5, "stitching": False, "face_index": 2,
                                      "face_hint": [1.0, 2.0, 30.0, 40.0], "crf": 20, "encoder_speed": "smallest"}
    with pytest.raises(ValueError, match="four numbers"):
        animate_kwargs({"face_hint": "1 2 3"})
    smooth = {o.name: o.default for o in ANIMATE_OPTIONS}
    smooth.update(smooth_beta=0.5)  # without the checkbox the settings are not sent
    assert animate_kwargs(smooth) == {}
    smooth.update(smooth=True)
    assert animate_kwargs(smooth) == {"smoothing": {"min_cutoff_hz": None, "beta": 0.5}}


def test_live_tab_sends_the_animate_options_but_not_those_of_a_video_output():
    from client.web_live import live_kwargs

    values = {o.name: o.default for o in ANIMATE_OPTIONS}
    assert live_kwargs(values) == {}
    values.update(crf=20, encoder_speed="smallest", audio=False, low_latency=True, driving_multiplier=1.5, face_index=1,
                  smooth=True)
    assert live_kwargs(values) == {"driving_multiplier": 1.5, "face_index": 1,
                                   "smoothing": {"min_cutoff_hz": None, "beta": None}}


def test_the_comparison_puts_the_driving_video_beside_the_result_at_one_height(tmp_path):
    from client.web_compare import side_by_side

    from video_checks import clip, inspect

    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "driving.mp4", frames=12, size=(480, 360))
    result = clip(EXAMPLES / "driving" / "d3.mp4", tmp_path / "result.mp4", frames=10, size=(300, 352))
    out = inspect(side_by_side(driving, result, tmp_path / "pair.mp4"))
    assert out["size"] == (682 + 436, 512)  # 480x360 and 300x352 scaled to 512 high (even widths)
    assert out["frames"] == 10 and out["rate"] == inspect(result)["rate"] and not out["audio"]
    from audio_files import chirp, write_audio

    voice = write_audio(tmp_path / "voice.wav", chirp(0.5, 16000), 16000)
    with pytest.raises(ValueError, match="driving video"):  # a voice drove it: nothing to compare
        side_by_side(voice, result, tmp_path / "none.mp4")
    assert not (tmp_path / "none.mp4").exists()


def test_sliders_cover_the_slider_edit_with_the_proto_ranges():
    assert [s.name for s in EDIT_SLIDERS] == [f.name for f in pb.Edit.DESCRIPTOR.fields]
    body = re.search(r"message Edit \{(.*?)\n\}", PROTO.read_text(), re.S).group(1)
    ranges = {m.group(1): (float(m.group(2)), float(m.group(3)))
              for m in re.finditer(r"optional float (\w+) = \d+;\s*// \[([-\d.]+), ([-\d.]+)\]", body)}
    assert set(ranges) == {s.name for s in EDIT_SLIDERS}
    for s in EDIT_SLIDERS:
        assert (s.minimum, s.maximum) == ranges[s.name], s.name
        assert s.minimum <= s.neutral <= s.maximum


def test_edit_sends_only_moved_sliders():
    values = {s.name: s.neutral for s in EDIT_SLIDERS}
    assert slider_edit(values) == pb.Edit()
    values["eye_ratio"] = 0.3  # the page sets the eye/lip sliders to the source's own ratios: no change
    assert slider_edit(values, {"eye_ratio": 0.3}) == pb.Edit()
    values.update(smile=0.5, lip_ratio=0.4)
    assert slider_edit(values, {"eye_ratio": 0.3, "lip_ratio": 0.1}) == pb.Edit(smile=0.5, lip_ratio=0.4)


def test_several_faces_box_and_the_faces_line():
    from client.web_options import faces_value, summary_text

    assert faces_value("") is None and faces_value(" All ") == "all" and faces_value("0, 2") == [0, 2]
    with pytest.raises(ValueError, match="face numbers"):
        faces_value("the first")
    summary = pb.Summary(faces=[pb.AnimatedFace(index=0, driving="face_drivings[0]"),
                                pb.AnimatedFace(index=2, driving="main")])
    assert "faces animated (2): face 0 driven by smile.jpg, face 2 driven by the driving input" in summary_text(
        summary, ["smile.jpg"])


def test_keyframe_table_and_its_json_convert_both_ways():
    from client.edits import keyframes_message
    from client.web_options import keyframe_rows, keyframes_json

    rows = [[0, "linear", "{}"], [1.5, "ease_in_out", '{"smile": 1.0, "head_yaw": 10}'], ["", "", ""]]
    text = keyframes_json(rows)
    message = keyframes_message(json.loads(text))  # what the library sends
    assert [k.duration_s for k in message.keyframes] == [0, 1.5] and message.keyframes[1].edit.smile == 1.0
    assert keyframe_rows(text) == [[0, "linear", "{}"], [1.5, "ease_in_out", '{"smile": 1.0, "head_yaw": 10}']]
    assert keyframes_json([]) == ""
    with pytest.raises(ValueError, match="keyframe 1: seconds must be a number"):
        keyframes_json([["soon", "linear", "{}"]])


class _Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def test_failures_are_worded_for_people_with_the_grpc_status_on_a_details_line():
    from client.web_options import failure_text

    refused = _Refused(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
                                                    "ipv4:127.0.0.1:50051: Failed to connect to remote host")
    assert failure_text("Animate", refused, "127.0.0.1:50051") == (
        "Animate failed: cannot reach the LivePortrait service at 127.0.0.1:50051: start it with `liveportrait up`"
        "\n(gRPC status UNAVAILABLE)")
    invalid = _Refused(grpc.StatusCode.INVALID_ARGUMENT, "the source is not an image in a supported format")
    assert failure_text("Edit", invalid) == ("Edit failed: the source is not an image in a supported format"
                                             "\n(gRPC status INVALID_ARGUMENT)")
    assert failure_text("Animate", ValueError("add a source portrait")) == "Animate failed: add a source portrait"


# -- the Live tab over WebRTC (client/web_webrtc.py: the page's process serves the gateway under /webrtc) ----------

def test_webrtc_query_carries_the_animate_options_the_gateway_takes():
    from client.web_webrtc import query_text

    values = {o.name: o.default for o in ANIMATE_OPTIONS}
    assert query_text(values, "camera") == ""
    values.update(driving_multiplier=1.5, stitching=False, smooth=True, crf=20)
    assert query_text(values, "camera") == "smooth=true&driving_multiplier=1.5&stitching=false"
    assert query_text(values, "voice").startswith("mode=voice&")
    values.update(face_hint="1 2 30 40")
    with pytest.raises(ValueError, match="face_hint cannot be sent over WebRTC"):
        query_text(values, "camera")


def test_the_page_adds_its_api_key_to_gateway_requests_without_one():
    import asyncio

    from client.web_webrtc import with_api_key

    seen = []

    async def gateway(scope, receive, send):
        seen.append(dict(scope["headers"]).get(b"authorization"))

    app = with_api_key(gateway, "page-key")
    asyncio.run(app({"type": "http", "headers": []}, None, None))
    asyncio.run(app({"type": "http", "headers": [(b"authorization", b"Bearer own-key")]}, None, None))
    assert seen == [b"Bearer page-key", b"Bearer own-key"]


def test_the_pages_stun_and_turn_servers_reach_the_browser_with_each_session():
    from client.gateway.app import GatewayConfig, gateway_app
    from client.gateway.signalling import ice_servers
    from client.web_webrtc import WebRtcPanel

    servers = ice_servers(["stun:stun.example.org:3478", "turn:turn.example.org:3478"], "user", "secret")
    panel = WebRtcPanel(gateway_app(GatewayConfig(ice_servers=servers)).state.gateway)
    ticket = json.loads(panel.ticket("camera", str(EXAMPLES / "source" / "s0.jpg"), {}))
    assert ticket["ice"] == [{"urls": "stun:stun.example.org:3478"},
                             {"urls": "turn:turn.example.org:3478", "username": "user", "credential": "secret"}]
    assert ticket["portrait"] and ticket["mode"] == "camera"


def test_the_mounted_gateway_answers_with_paths_under_its_mount():
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from client.gateway.app import GatewayConfig, gateway_app

    app = Starlette(routes=[Mount("/webrtc", gateway_app(GatewayConfig()))])
    with TestClient(app) as client:
        response = client.post("/webrtc/portraits", content=(EXAMPLES / "source" / "s0.jpg").read_bytes(),
                               headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 201
    assert response.headers["location"] == f"/webrtc/portraits/{response.json()['id']}"
