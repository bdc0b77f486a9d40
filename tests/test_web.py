"""The web page (`liveportrait web`, client/web.py) driven in a real browser: headless Chromium (Debian's `chromium` +
`chromium-driver`, installed by scripts/install_tools.sh) through selenium, against the real tritonserver (tiny
profile, the session fixture) + the orchestrator process + the page process started by the project's own code
(`WebProcess`: `python -m client.cli web --server ...`). Screenshots, page HTML and the page's log of a failed test
are kept in build/test/web-artifacts/.

Also, without a browser: the page's options and sliders agree with the CLI and the proto."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from fractions import Fraction
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from client import cli
from client.web import WebProcess
from client.web_options import ANIMATE_OPTIONS, EDIT_SLIDERS, FACE_ORDERS, animate_kwargs, slider_edit
from orchestrator.embedded import OrchestratorProcess
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO.parent / "shared" / "examples"
BUILD = REPO / "build" / "test"
ARTIFACTS = BUILD / "web-artifacts"
PROTO = REPO / "protos" / "liveportrait" / "v1" / "portrait_animator.proto"
WAIT_S = 90


# ---------------------------------------------------------------------------------------------------------------------
# without a browser
# ---------------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------------
# in a browser
# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def orchestrator(audio_triton_server):
    """The service the page calls, with the audio models too (a voice as the driving input)."""
    with OrchestratorProcess(audio_triton_server.grpc_url, BUILD / "orchestrator-web.log") as process:
        yield process


@pytest.fixture(scope="module")
def dead_web():
    """The page in front of an address where no service listens."""
    from orchestrator.triton_process import free_port

    with WebProcess(f"127.0.0.1:{free_port()}", BUILD / "web-dead.log") as process:
        yield process


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


@pytest.fixture(scope="module")
def web(orchestrator):
    log = BUILD / "web.log"
    log.unlink(missing_ok=True)
    with WebProcess(orchestrator.target, log) as process:
        yield process


def _missing(what: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is missing in CI: `make tools` (scripts/install_tools.sh) must install it")
    pytest.skip(f"{what} is missing: run `make tools` (Debian's chromium and chromium-driver)")


def chrome(*extra_args: str):
    """Headless Chromium through chromedriver."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        _missing("chromium / chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2000", "--mute-audio", *extra_args):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def browser():
    session = chrome()
    yield session
    session.quit()


@pytest.fixture
def page(browser, web, request):
    """The page, freshly loaded; a failed test leaves a screenshot, the HTML and the page's log in ARTIFACTS (every
    test does with LIVEPORTRAIT_WEB_SCREENSHOTS=1)."""
    yield from loaded(browser, web, request)


def loaded(browser, web, request):
    """``page``'s body for any browser session."""
    browser.get(web.url)
    wait_for(browser, lambda: browser.execute_script("return !!document.querySelector('#animate-run')"),
             "the page to load")
    yield browser
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed or os.environ.get("LIVEPORTRAIT_WEB_SCREENSHOTS"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = ARTIFACTS / re.sub(r"[^\w.-]", "_", request.node.name)
        browser.save_screenshot(str(stem.with_suffix(".png")))
        stem.with_suffix(".html").write_text(browser.page_source)
        stem.with_suffix(".log").write_text(web.log_tail(200))


def wait_for(browser, condition, what: str, timeout_s: float = WAIT_S):
    """``condition()``'s first true value; an element not drawn yet (or redrawn) counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def upload(browser, elem_id: str, path: Path) -> None:
    """A file into an upload component; returns once the page shows it (an image or video preview, a file's name,
    or a link to the uploaded file: an audio component draws a waveform)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path.resolve()))
    name = path.name.rsplit(".", 1)[0]
    wait_for(browser, lambda: browser.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return !!e.querySelector('img[src], video[src], audio[src]') || e.innerText.includes(arguments[1])"
        " || [...e.querySelectorAll('a[href]')].some(a => a.href.includes(arguments[2]))",
        f"#{elem_id}", name, path.name), f"{path.name} to be uploaded into #{elem_id}")


def shown(browser, elem_id: str) -> str:
    """The source of the image or video a component shows ('' when none)."""
    return browser.execute_script("const m = document.querySelector(arguments[0] + ' img[src], ' + arguments[0] + "
                                  "' video[src]'); return m ? m.src : ''", f"#{elem_id}")


def click(browser, elem_id: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{elem_id}").click()


def open_tab(browser, label: str) -> None:
    """Click the visible tab of that label (the page's tabs, and the Animate tab's source and driving tabs)."""
    from selenium.webdriver.common.by import By

    next(t for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")
         if t.text.strip() == label and t.is_displayed()).click()


def toasts(browser) -> list[str]:
    """The texts of the toasts on the page (title and message)."""
    return browser.execute_script("return [...document.querySelectorAll('.toast-body')].map(t => t.innerText)")


def textbox(browser, elem_id: str) -> str:
    return browser.execute_script(f"const t = document.querySelector('#{elem_id} textarea, #{elem_id} input'); "
                                  "return t ? t.value : ''")


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
def edit_served(orchestrator):
    """EditPortrait exists in the proto; the served orchestrator must implement it for the live preview."""
    from client.api import PortraitClient

    with PortraitClient(orchestrator.target) as client:
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


def fake_camera_video(destination: Path, frames: int = 50) -> Path:
    """The first two seconds of d0.mp4 as a Y4M file: what Chromium's fake camera plays, in a loop."""
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as inp, \
            av.open(str(destination), "w", format="yuv4mpegpipe") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("rawvideo", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        for i, frame in enumerate(inp.decode(vin)):
            if i == frames:
                break
            out.mux(vout.encode(frame.reformat(format="yuv420p")))
        out.mux(vout.encode(None))
    return destination


def fake_media_page(web, request, capture: str):
    """The page in a browser of its own with a fake camera and microphone (``capture``: the flag naming the file one
    of them plays), permission granted."""
    session = chrome("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", capture)
    try:
        yield from loaded(session, web, request)
    finally:
        session.quit()


@pytest.fixture
def camera_page(web, request, tmp_path):
    """The page in a browser of its own whose camera plays a clip of d0.mp4 (permission granted)."""
    camera = fake_camera_video(tmp_path / "camera.y4m")
    yield from fake_media_page(web, request, f"--use-file-for-fake-video-capture={camera}")


def live_streams(orchestrator) -> float:
    """The orchestrator's gauge of open AnimateStream streams."""
    import urllib.request

    text = urllib.request.urlopen(orchestrator.metrics_url, timeout=10).read().decode()
    return float(re.search(r"^liveportrait_live_streams (\S+)$", text, re.M).group(1))


@pytest.mark.triton
def test_live_tab_animates_the_camera_with_a_latency_readout(camera_page, orchestrator):
    page = camera_page
    output_src = "const i = document.querySelector('#live-output img'); return i && i.complete && i.src"
    open_tab(page, "Live")
    upload(page, "live-source", EXAMPLES / "source" / "s0.jpg")
    open_fallback(page)
    click(page, "live-camera [title='grant webcam access'] button")  # "Click to Access Webcam"
    wait_for(page, lambda: page.execute_script(
        "const v = document.querySelector('#live-camera video'); return v && v.videoWidth > 0"), "the camera")
    start = page.find_element("css selector", "#live-camera button.capture-button")
    assert start.text.strip() == "Start", start.text
    start.click()
    first = wait_for(page, lambda: page.execute_script(output_src), "the first animated frame")
    wait_for(page, lambda: (src := page.execute_script(output_src)) and src != first, "a second animated frame")
    text = wait_for(page, lambda: re.search(r"latency p50 \d+ ms, p95 \d+ ms", textbox(page, "live-readout"))
                    and textbox(page, "live-readout"), "the latency read-out")
    assert re.search(r"server p50 \d+ ms\), \d+\.\d fps", text), text
    assert re.search(r"\d+ of \d+ camera frames animated \(\d+ without a face\), \d+ dropped \(\d+%\)", text), text
    assert live_streams(orchestrator) == 1  # one stream for this browser session
    click(page, "live-camera button.capture-button")  # stop streaming: the page ends the stream
    wait_for(page, lambda: live_streams(orchestrator) == 0, "the live stream to end", 30)
    wait_for(page, lambda: "stream ended" in textbox(page, "live-readout"), "the read-out of the ended stream", 10)
    assert "on the way" not in textbox(page, "live-readout")


def open_fallback(browser) -> None:
    """Open the Live tab's "Without WebRTC" accordion (the camera streamed through the page)."""
    browser.execute_script("document.querySelector('#live-fallback .label-wrap').click()")
    wait_for(browser, lambda: browser.execute_script(
        "const c = document.querySelector('#live-camera'); return c && c.offsetParent !== null"), "the fallback")


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


VIDEO = ("const v = document.getElementById('webrtc-video');"
         "return v && v.videoWidth > 0 && v.currentTime > 0 ? [v.videoWidth, v.videoHeight, v.currentTime] : null")


def webrtc_readout(browser) -> str:
    return browser.execute_script("return document.getElementById('webrtc-readout').textContent")


def start_webrtc(browser, button: str) -> list:
    """Upload s0.jpg, press the button; returns [videoWidth, videoHeight, currentTime] once animated frames play,
    after checking that the video goes on playing."""
    open_tab(browser, "Live")
    upload(browser, "live-source", EXAMPLES / "source" / "s0.jpg")
    click(browser, button)
    first = wait_for(browser, lambda: browser.execute_script(VIDEO), "animated frames in the WebRTC video")
    wait_for(browser, lambda: browser.execute_script(VIDEO)[2] > first[2], "the video to go on playing", 30)
    return first


def stop_webrtc(browser, orchestrator) -> None:
    click(browser, "webrtc-stop")  # the page deletes the session: the stream ends at once
    wait_for(browser, lambda: live_streams(orchestrator) == 0, "the live stream to end", 30)
    wait_for(browser, lambda: "stream ended" in webrtc_readout(browser), "the read-out of the ended stream", 10)


@pytest.mark.triton
def test_live_tab_over_webrtc_animates_the_camera_with_a_latency_readout(camera_page, orchestrator):
    from PIL import Image

    page = camera_page
    width, height, _ = start_webrtc(page, "webrtc-camera")
    assert (width, height) == Image.open(EXAMPLES / "source" / "s0.jpg").size  # the portrait pasted back
    text = wait_for(page, lambda: re.search(r"latency p50 (\d+) ms \(camera capture -> animated frame shown here\), "
                                            r"\d+\.\d fps shown", webrtc_readout(page)), "the latency read-out")
    assert 0 < int(text.group(1)) < 30_000, text.group(0)
    assert live_streams(orchestrator) == 1  # one stream for this browser's session
    stop_webrtc(page, orchestrator)


@pytest.fixture
def microphone_page(web, request, tmp_path):
    """The page in a browser of its own whose microphone plays a two-second chirp (permission granted)."""
    from audio_files import chirp, write_audio

    voice = write_audio(tmp_path / "voice.wav", chirp(2.0, 48000), 48000)
    yield from fake_media_page(web, request, f"--use-file-for-fake-audio-capture={voice}")


@pytest.mark.triton
def test_live_tab_over_webrtc_animates_a_voice_and_plays_it_back(microphone_page, orchestrator):
    page = microphone_page
    start_webrtc(page, "webrtc-voice")
    # Opus silence is 3 bytes a packet; the chirp heard back makes tens to hundreds
    wait_for(page, lambda: page.execute_script(
        "const a = window.liveportraitWebrtc.audio; return a.packets > 0 && a.bytes > 20 * a.packets"),
        "the voice back (audio packets that are not silence)")
    wait_for(page, lambda: re.search(r"audio received: \d+ kB \(\d+ packets\)", webrtc_readout(page)),
             "the audio read-out")
    stop_webrtc(page, orchestrator)
