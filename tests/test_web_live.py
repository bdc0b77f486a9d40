"""The web page's Live tab in headless Chromium with a fake camera (a Y4M clip of d0.mp4) and a fake microphone (a WAV
chirp), against the real stack (web_fixtures): over WebRTC (the page's process serves the gateway under /webrtc)
and, as the fallback, the camera streamed through the page; each with its latency read-out, the stream ended on stop."""
from __future__ import annotations

import re
from pathlib import Path

import av
import pytest

from web_fixtures import EXAMPLES, chrome, click, loaded, open_tab, textbox, upload, wait_for


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


def live_streams(service) -> float:
    """The orchestrator's gauge of open AnimateStream streams."""
    import urllib.request

    text = urllib.request.urlopen(service.metrics_url, timeout=10).read().decode()
    return float(re.search(r"^liveportrait_live_streams (\S+)$", text, re.M).group(1))


@pytest.mark.triton
def test_live_tab_animates_the_camera_with_a_latency_readout(camera_page, web_orchestrator):
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
    assert live_streams(web_orchestrator) == 1  # one stream for this browser session
    click(page, "live-camera button.capture-button")  # stop streaming: the page ends the stream
    wait_for(page, lambda: live_streams(web_orchestrator) == 0, "the live stream to end", 30)
    wait_for(page, lambda: "stream ended" in textbox(page, "live-readout"), "the read-out of the ended stream", 10)
    assert "on the way" not in textbox(page, "live-readout")


def open_fallback(browser) -> None:
    """Open the Live tab's "Without WebRTC" accordion (the camera streamed through the page)."""
    browser.execute_script("document.querySelector('#live-fallback .label-wrap').click()")
    wait_for(browser, lambda: browser.execute_script(
        "const c = document.querySelector('#live-camera'); return c && c.offsetParent !== null"), "the fallback")


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


def stop_webrtc(browser, web_orchestrator) -> None:
    click(browser, "webrtc-stop")  # the page deletes the session: the stream ends at once
    wait_for(browser, lambda: live_streams(web_orchestrator) == 0, "the live stream to end", 30)
    wait_for(browser, lambda: "stream ended" in webrtc_readout(browser), "the read-out of the ended stream", 10)


@pytest.mark.triton
def test_live_tab_over_webrtc_animates_the_camera_with_a_latency_readout(camera_page, web_orchestrator):
    from PIL import Image

    page = camera_page
    width, height, _ = start_webrtc(page, "webrtc-camera")
    assert (width, height) == Image.open(EXAMPLES / "source" / "s0.jpg").size  # the portrait pasted back
    text = wait_for(page, lambda: re.search(r"latency p50 (\d+) ms \(camera capture -> animated frame shown here\), "
                                            r"\d+\.\d fps shown", webrtc_readout(page)), "the latency read-out")
    assert 0 < int(text.group(1)) < 30_000, text.group(0)
    assert live_streams(web_orchestrator) == 1  # one stream for this browser's session
    stop_webrtc(page, web_orchestrator)


@pytest.fixture
def microphone_page(web, request, tmp_path):
    """The page in a browser of its own whose microphone plays a two-second chirp (permission granted)."""
    from audio_files import chirp, write_audio

    voice = write_audio(tmp_path / "voice.wav", chirp(2.0, 48000), 48000)
    yield from fake_media_page(web, request, f"--use-file-for-fake-audio-capture={voice}")


@pytest.mark.triton
def test_live_tab_over_webrtc_animates_a_voice_and_plays_it_back(microphone_page, web_orchestrator):
    page = microphone_page
    start_webrtc(page, "webrtc-voice")
    # Opus silence is 3 bytes a packet; the chirp heard back makes tens to hundreds
    wait_for(page, lambda: page.execute_script(
        "const a = window.liveportraitWebrtc.audio; return a.packets > 0 && a.bytes > 20 * a.packets"),
        "the voice back (audio packets that are not silence)")
    wait_for(page, lambda: re.search(r"audio received: \d+ kB \(\d+ packets\)", webrtc_readout(page)),
             "the audio read-out")
    stop_webrtc(page, web_orchestrator)
