"""The web page (`liveportrait web`, client/web.py) in headless Chromium against the real stack (web_fixtures): the
Animate tab from inputs to a playing result, a voice as the driving input, keyframes, refused uploads, the Faces and
Edit tabs, the page without a service, and its stop at SIGTERM."""
from __future__ import annotations

import json
import re
import time
from fractions import Fraction
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from client.web import WebProcess
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from web_fixtures import BUILD, EXAMPLES, WAIT_S, click, loaded, open_tab, shown, textbox, toasts, upload, wait_for


def test_the_page_stops_at_sigterm_and_leaves_no_files(tmp_path, monkeypatch):
    """What a pod's stop or ``liveportrait up --web`` sends: the page ends within its grace, its files gone."""
    import signal

    from client.web import SHUTDOWN_GRACE_S
    from orchestrator.triton_process import free_port

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the page's files: a liveportrait-web-* folder in here
    process = WebProcess(f"127.0.0.1:{free_port()}", BUILD / "web-stop.log").start()
    assert len(list(tmp_path.glob("liveportrait-web-*"))) == 1
    process.stop(timeout_s=SHUTDOWN_GRACE_S + 10)  # SIGTERM, then SIGKILL if it still runs
    assert process.exit_code == -signal.SIGTERM, "the page did not end by itself after SIGTERM"
    assert list(tmp_path.glob("liveportrait-web-*")) == []


def driving_clip(destination: Path, seconds: int = 1) -> tuple[Path, Fraction, int]:
    """The first seconds of d0.mp4 (25 fps), re-encoded with PyAV."""
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as inp, av.open(str(destination), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate
        frames = int(rate) * seconds
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        for i, frame in enumerate(inp.decode(vin)):
            if i == frames:
                break
            out.mux(vout.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(vout.encode(None))
    return destination, rate, frames


PLAYABLE = ("const v = document.querySelector('#animate-video video');"
            "return v && v.currentSrc && v.readyState >= 1 && isFinite(v.duration) ? "
            "[v.currentSrc, v.duration, v.videoWidth, v.videoHeight] : null")
PROGRESS = ("const w = document.querySelector('#animate-video .progress-text, #animate-video .progress-level');"
            "return w ? w.closest('.wrap').innerText.replace(/\\s+/g, ' ').trim() : ''")


@pytest.mark.triton
def test_animate_shows_progress_then_plays_the_result_with_the_clip_duration(page, tmp_path):
    clip, rate, frames = driving_clip(tmp_path / "driving-2s.mp4", seconds=2)
    upload(page, "animate-source", EXAMPLES / "source" / "s0.jpg")
    upload(page, "animate-driving", clip)
    wait_for(page, lambda: shown(page, "animate-source") and shown(page, "animate-driving"), "both previews")
    click(page, "animate-run")
    started, seen = time.monotonic(), []  # (seconds after the click, progress text) while the job runs
    while not page.execute_script(PLAYABLE) and time.monotonic() - started < WAIT_S:
        text = page.execute_script(PROGRESS)
        if text and (not seen or seen[-1][1] != text):
            seen.append((time.monotonic() - started, text))
        time.sleep(0.05)
    src, duration, width, height = wait_for(page, lambda: page.execute_script(PLAYABLE), "a playable <video>")
    # the server's progress showed within 2 s and moved (stage, then frames done of the total) before the result
    timeline = "\n".join(f"{t:.2f} s: {text}" for t, text in seen)
    assert seen and seen[0][0] < 2.0, timeline
    done = {int(m.group(1)) for _, text in seen if (m := re.search(rf"\b(\d+)/{frames} frames", text))}
    assert len(done) >= 2 and min(done) < frames, timeline
    expected = frames / rate
    # H.264 with B-frames starts presenting one frame late (an edit list), which browsers count in `duration`
    assert abs(duration - float(expected)) <= 2 / rate, (duration, float(expected))
    assert src.endswith(".mp4") and (width, height) == (600, 704)
    page.execute_script("const v = document.querySelector('#animate-video video'); v.muted = true; v.play();")
    wait_for(page, lambda: page.execute_script(
        "return document.querySelector('#animate-video video').currentTime > 0"), "the video to play", 30)
    status = textbox(page, "animate-status")
    assert f"{frames} frames" in status and "synthetic" in status
    assert page.find_element("css selector", "#animate-download").is_displayed()
    # the driving video beside the result, as the official app's "result vs driving"
    click(page, "animate-compare")
    pair = wait_for(page, lambda: page.execute_script(PLAYABLE.replace("#animate-video", "#animate-comparison")),
                    "the comparison video")
    assert pair[3] == 512 and pair[2] > 436 and abs(pair[1] - duration) <= 2 / rate, pair


@pytest.mark.triton
def test_a_voice_animates_the_portrait_into_a_video_with_its_sound(page, tmp_path):
    from urllib.parse import unquote

    from audio_files import chirp, write_audio
    from video_checks import inspect

    voice = write_audio(tmp_path / "voice.wav", chirp(1.2, 16000), 16000)  # 1.2 s: 30 frames at 25 fps
    upload(page, "animate-source", EXAMPLES / "source" / "s0.jpg")
    open_tab(page, "Voice")
    upload(page, "animate-driving-voice", voice)
    click(page, "animate-run")
    src, duration, width, height = wait_for(page, lambda: page.execute_script(PLAYABLE), "a playable <video>")
    assert (width, height) == (600, 704) and abs(duration - 1.2) <= 0.1, duration
    status = textbox(page, "animate-status")
    assert "30 frames" in status and "audio yes" in status, status
    result = inspect(Path(unquote(src.split("file=", 1)[1])))
    assert result["frames"] == 30 and result["rate"] == 25 and result["audio"]


IN_VIEW = ("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
           "return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth")


def test_animate_button_is_under_the_inputs_without_scrolling(browser, dead_web, request):
    """At 1400x1000 the source and driving inputs and the Animate button show without scrolling; the options are
    titled in words, not flags."""
    browser.set_window_size(1400, 1000)
    try:
        for _ in loaded(browser, dead_web, request):
            for elem_id in ("animate-source", "animate-driving", "animate-run"):
                assert browser.execute_script(IN_VIEW, f"#{elem_id}"), elem_id
            text = browser.find_element("css selector", "#animate-run").find_element(
                "xpath", "ancestor::div[contains(@class, 'column')][1]").text
            assert "Motion" in text and "Source crop" in text and "--" not in text, text
    finally:
        browser.set_window_size(1400, 2000)


def test_example_portrait_and_motions_made_in_code_fill_the_inputs(browser, dead_web, request):
    for page in loaded(browser, dead_web, request):
        page.find_element("css selector", "#animate-example-portrait button").click()
        wait_for(page, lambda: shown(page, "animate-source"), "the example portrait in the source input")
        open_tab(page, "Template")
        example = next(b for b in page.find_elements("css selector", "#animate-example-motions button")
                       if "turn, nod and blink" in b.text)
        example.click()
        wait_for(page, lambda: "turn-nod-blink" in page.find_element("css selector", "#animate-driving-template").text,
                 "the example motion in the template input")


def test_unreachable_service_is_named_with_how_to_start_it(browser, dead_web, request):
    """A page whose service is down says so when it opens, and an action's toast says the same, titled by it."""
    words = f"cannot reach the LivePortrait service at {dead_web.server}: start it with liveportrait up"
    for page in loaded(browser, dead_web, request):
        banner = wait_for(page, lambda: page.execute_script(
            "const b = document.querySelector('#service-banner'); return b && b.offsetParent && b.innerText"),
            "the service banner", 30)
        assert words in banner, banner
        upload(page, "animate-source", EXAMPLES / "source" / "s0.jpg")
        upload(page, "animate-driving", EXAMPLES / "driving" / "d0.mp4")
        click(page, "animate-run")
        toast = wait_for(page, lambda: toasts(page), "a toast")[0].replace("`", "")
        assert f"Animate failed: {words}" in toast and "gRPC status UNAVAILABLE" in toast, toast
        status = textbox(page, "animate-status").replace("`", "")
        assert status.startswith(f"Animate failed: {words}") and "Connection refused" not in status, status


@pytest.mark.triton
def test_keyframes_without_a_driving_video(page):
    click(page, "options-advanced .label-wrap")  # the closed accordion of JSON inputs
    wait_for(page, lambda: page.find_element("css selector", "#animate-keyframes textarea").is_displayed(),
             "the keyframes box")
    page.find_element("css selector", "#animate-keyframes textarea").send_keys(
        '{"fps": 25, "keyframes": [{"edit": {}, "duration_s": 0}, {"edit": {"smile": 1.0}, "duration_s": 0.4}]}')
    click(page, "animate-keyframes-import")  # the JSON shown in the keyframe table
    wait_for(page, lambda: '{"smile": 1.0}' in page.find_element("css selector", "#animate-keyframe-table").text,
             "the keyframes in the table")
    upload(page, "animate-source", EXAMPLES / "source" / "s0.jpg")
    click(page, "animate-run")
    duration = wait_for(page, lambda: page.execute_script(
        "const v = document.querySelector('#animate-video video');"
        "return v && v.currentSrc && v.readyState >= 1 && isFinite(v.duration) ? v.duration : null"),
        "a playable <video> source")
    assert textbox(page, "animate-status").startswith("10 frames,"), textbox(page, "animate-status")
    assert abs(duration - 0.4) <= 2 / 25, duration


@pytest.mark.triton
def test_undecodable_upload_shows_the_service_error(page, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    upload(page, "animate-source", EXAMPLES / "source" / "s0.jpg")
    upload(page, "animate-driving", broken)
    click(page, "animate-run")
    status = wait_for(page, lambda: textbox(page, "animate-status"), "the status")
    assert status.startswith("Animate failed: ") and status.endswith("(gRPC status INVALID_ARGUMENT)"), status
    assert any(t.find("Animate failed: ") >= 0 for t in toasts(page)), toasts(page)
    assert "Traceback" not in page.page_source
    assert not page.execute_script("const v = document.querySelector('#animate-video video'); return v && v.src")


@pytest.mark.triton
def test_faces_tab_draws_faces_and_sets_the_face_index(page):
    open_tab(page, "Faces")
    upload(page, "faces-image", EXAMPLES / "source" / "s0.jpg")
    wait_for(page, lambda: page.execute_script("const i = document.querySelector('#faces-drawn img');"
                                               "return i && i.complete && i.naturalWidth > 0"), "the drawn faces")
    assert re.match(r"\d+ face\(s\) in 600x704", textbox(page, "faces-status")), textbox(page, "faces-status")
    assert page.execute_script("return document.querySelectorAll('#faces-choice input[type=checkbox]').length") >= 1
    click(page, "faces-use")
    wait_for(page, lambda: shown(page, "animate-source"), "the image in the Animate tab")
    assert float(textbox(page, "opt-face_index")) == 0


@pytest.mark.triton
def test_two_faces_chosen_in_faces_are_animated_together(page, tmp_path):
    from PIL import Image

    face = Image.open(EXAMPLES / "source" / "s0.jpg").convert("RGB")
    pair = Image.new("RGB", (face.width * 2, face.height))
    pair.paste(face, (0, 0))
    pair.paste(face, (face.width, 0))
    pair.save(tmp_path / "two.jpg")
    open_tab(page, "Faces")
    upload(page, "faces-image", tmp_path / "two.jpg")
    boxes = "#faces-choice input[type=checkbox]"
    wait_for(page, lambda: page.execute_script(f"return document.querySelectorAll('{boxes}').length") == 2,
             "two faces to choose from")
    for box in page.find_elements("css selector", boxes):
        if not box.is_selected():
            box.click()
    click(page, "faces-use")
    wait_for(page, lambda: textbox(page, "animate-faces") == "0, 1", "both faces in the Animate tab")
    upload(page, "animate-face-drivings", EXAMPLES / "driving" / "d30.jpg")  # the first face's own driving
    open_tab(page, "Image")
    upload(page, "animate-driving-image", EXAMPLES / "driving" / "d12.jpg")
    click(page, "animate-run")
    status = wait_for(page, lambda: textbox(page, "animate-status"), "the status")
    assert "faces animated (2): face 0 driven by d30.jpg, face 1 driven by the driving input" in status, status
    # a driving image gives a still image (not a one-frame video): the server's PNG, shown and downloaded
    assert shown(page, "animate-still").endswith("two-animated.png")
    assert page.execute_script("const v = document.querySelector('#animate-video'); return !v || !v.offsetParent")


@pytest.fixture(scope="module")
def edit_served(web_orchestrator):
    """EditPortrait exists in the proto; the served orchestrator must implement it for the live preview."""
    from client.api import PortraitClient

    with PortraitClient(web_orchestrator.target) as client:
        try:  # an empty request: INVALID_ARGUMENT where EditPortrait is served
            client.stub.EditPortrait(pb.EditRequest(), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                pytest.skip("the orchestrator does not implement EditPortrait yet")


@pytest.mark.triton
def test_edit_slider_updates_the_preview(page, edit_served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    # the before/after view: the edit is its last image
    preview_src = "const i = [...document.querySelectorAll('#edit-preview img')].pop(); return i && i.complete && i.src"
    open_tab(page, "Edit")
    upload(page, "edit-source", EXAMPLES / "source" / "s0.jpg")
    first = wait_for(page, lambda: page.execute_script(preview_src), "the first preview")
    assert "source prepared" in textbox(page, "edit-status")
    smile = page.find_element(By.CSS_SELECTOR, "#edit-smile input[type=range]")
    ActionChains(page).move_to_element_with_offset(smile, smile.size["width"] // 4, 0).click().perform()
    second = wait_for(page, lambda: (src := page.execute_script(preview_src)) and src != first and src,
                      "the preview to change")
    assert second != first
    assert "session reused" in textbox(page, "edit-status")
    click(page, "edit-add-keyframe")  # the start, then the same expression 1 s later: the keyframe table
    wait_for(page, lambda: "keyframe 1 added" in textbox(page, "edit-status"), "the first keyframe")
    click(page, "edit-add-keyframe")
    wait_for(page, lambda: "keyframe 2 added" in textbox(page, "edit-status"), "the second keyframe")
    click(page, "edit-apply")  # the portrait and its edit go to the Animate tab
    edit = wait_for(page, lambda: textbox(page, "animate-edit"), "the edit in the Animate tab")
    assert '"smile"' in edit
    assert shown(page, "animate-source"), "the portrait in the Animate tab"
    keyframes = json.loads(wait_for(page, lambda: textbox(page, "animate-keyframes"), "the keyframes JSON"))
    assert [(k["duration_s"], "smile" in k["edit"]) for k in keyframes["keyframes"]] == [(0, True), (1, True)]
    open_tab(page, "Edit")
    click(page, "edit-source button[aria-label='Remove Image']")  # no portrait: no edit shown
    wait_for(page, lambda: not shown(page, "edit-preview"), "the preview to clear")
