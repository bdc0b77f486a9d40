"""The WebRTC gateway (client/gateway) through the real stack: aiortc peers -> ``liveportrait gateway`` -> the
orchestrator (with API keys) -> the real tritonserver (tiny profile, with the audio models). Camera frames in, animated
frames out, each matched to the frame it was animated from (the gateway's ``timing`` data channel); a voice in, one
animated frame per 1/25 s of it out and the voice back in step with the picture; an ingest-only sender (OBS: H.264,
sendonly) watched by WHEP viewers; a session's end frees its stream on the orchestrator at once and ends its viewers;
signalling refusals are HTTP statuses in words and leave nothing behind. Its parts without a stack:
tests/test_gateway_units.py."""
from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from aiortc import RTCPeerConnection

from client.gateway.peer import WhepViewer, WhipPeer, http, upload_portrait
from client.gateway.process import GatewayProcess
from client.gateway.voice_peer import VoicePeer, syllables
from orchestrator.embedded import OrchestratorProcess
from orchestrator.keys import key_digest

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
KEY = "gateway-test-key-0123456789"
FPS = 10
UDP_PORTS = (41000, 41099)


@pytest.fixture(scope="module")
def server(audio_triton_server, tmp_path_factory):
    keys = tmp_path_factory.mktemp("gateway") / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "web", "sha256": key_digest(KEY), "rpcs": ["*"]}]}))
    args = ("--api-keys", str(keys), "--live-max-streams", "4", "--live-max-fps", "30")
    with OrchestratorProcess(audio_triton_server.grpc_url, BUILD / "orchestrator-gateway.log",
                             extra_args=args) as process:
        yield process


@pytest.fixture(scope="module")
def gateway(server):
    with GatewayProcess(server.target, BUILD / "gateway.log", extra_args=(
            "--max-sessions", "1", "--udp-ports", "%d-%d" % UDP_PORTS)) as process:
        yield process


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """The first 20 frames of d0.mp4 (RGB 512x512, a face in each)."""
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(20), container.decode(video=0))]
    return frames


@pytest.fixture(scope="module")
def portrait_bytes() -> bytes:
    return (EXAMPLES / "source" / "s0.jpg").read_bytes()


@pytest.fixture(scope="module")
def portrait(gateway, portrait_bytes) -> str:
    return upload_portrait(gateway.url, portrait_bytes, KEY)


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("liveportrait_"))}


def freed(gateway, server, timeout: float = 10.0) -> tuple[float, float]:
    """(gateway sessions, orchestrator live streams) once both are 0, or as they are after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        held = (scrape(gateway.url + "/metrics")["liveportrait_gateway_sessions"],
                scrape(server.metrics_url)["liveportrait_live_streams"])
        if held == (0, 0) or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


@pytest.mark.triton
def test_camera_frames_come_back_animated_each_matched_to_its_capture(gateway, server, portrait, faces):
    async def main():
        async with WhipPeer(gateway.url, portrait, faces, fps=FPS, api_key=KEY) as peer:
            assert scrape(gateway.url + "/metrics")["liveportrait_gateway_sessions"] == 1
            assert scrape(server.metrics_url)["liveportrait_live_streams"] == 1
            await peer.wait_frames(6)
            return peer.shown, peer.latencies(), dict(peer.announced), dict(peer.camera.captured), peer.answer

    shown, latencies, announced, captured, answer = run(main())
    ports = [int(line.split()[5]) for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert ports and all(UDP_PORTS[0] <= port <= UDP_PORTS[1] for port in ports)  # --udp-ports: the media path
    assert all(frame.shape == (704, 600, 3) for frame in shown)  # s0.jpg's size: the portrait pasted back
    assert not np.array_equal(shown[0], shown[-1])  # it moves
    assert len(latencies) >= 5  # displayed frames matched to the camera frames they were animated from
    assert all(0 < latency < 10 for latency in latencies)
    assert all(stamp["in_pts"] in captured for stamp in announced.values())  # each a frame the camera sent
    in_order = [announced[pts]["in_pts"] for pts in sorted(announced)]
    assert in_order == sorted(in_order) and len(set(in_order)) == len(in_order)
    assert freed(gateway, server) == (0, 0)  # DELETE freed the session and its stream
    after = scrape(gateway.url + "/metrics")
    assert after['liveportrait_gateway_frames_total{direction="out"}'] >= 6
    assert after['liveportrait_gateway_frames_total{direction="in"}'] >= after[
        'liveportrait_gateway_frames_total{direction="driving"}']


@pytest.mark.triton
def test_closing_the_peer_connection_frees_the_stream_at_once(gateway, server, portrait, faces):
    async def main():
        peer = WhipPeer(gateway.url, portrait, faces, fps=FPS, api_key=KEY)
        await peer.start()
        await peer.wait_frames(1)
        await peer.close(delete=False)  # no DELETE: the peer connection just goes away

    run(main())
    started = time.monotonic()
    assert freed(gateway, server) == (0, 0)
    assert time.monotonic() - started < 5


@pytest.mark.triton
def test_signalling_refusals_are_http_statuses_in_words_and_leave_nothing(gateway, server, portrait, faces):
    whip = f"{gateway.url}/whip?portrait={portrait}"

    async def main():
        offer_pc = WhipPeer(gateway.url, portrait, faces, api_key=KEY).pc
        await offer_pc.setLocalDescription(await offer_pc.createOffer())
        offer = offer_pc.localDescription.sdp.encode()
        await offer_pc.close()
        refusals = {
            "no key": http("POST", whip, offer, "application/sdp"),
            "unknown key": http("POST", whip, offer, "application/sdp", api_key="not-a-key"),
            "bad sdp": http("POST", whip, b"v=0\r\nm=video garbage\r\n", "application/sdp", KEY),
            "not sdp": http("POST", whip, b"{}", "application/json", KEY),
            "no portrait": http("POST", f"{gateway.url}/whip?portrait=nope", offer, "application/sdp", KEY),
            "bad option": http("POST", whip + "&no_such_option=1", offer, "application/sdp", KEY),
            "no fps": http("POST", whip + "&fps=0", offer, "application/sdp", KEY),
            "not an image": http("POST", f"{gateway.url}/portraits", b"GIF89a...", "image/jpeg", KEY),
            "patch": http("PATCH", f"{gateway.url}/whip/anything", b"", "application/trickle-ice-sdpfrag", KEY),
        }
        async with WhipPeer(gateway.url, portrait, faces, fps=FPS, api_key=KEY):  # the gateway's only session
            refusals["too many"] = http("POST", whip, offer, "application/sdp", KEY)
        return refusals

    said = {name: (status, headers, body.decode()) for name, (status, headers, body) in run(main()).items()}
    assert said["no key"][0] == 401 and "UNAUTHENTICATED" in said["no key"][2]
    assert said["no key"][1]["www-authenticate"].startswith("Bearer")
    assert said["unknown key"][0] == 401
    assert said["bad sdp"][0] == 400 and "SDP offer" in said["bad sdp"][2]
    assert said["not sdp"][0] == 415 and "application/sdp" in said["not sdp"][2]
    assert said["no portrait"][0] == 404 and "upload it again" in said["no portrait"][2]
    assert said["bad option"][0] == 400 and "no_such_option" in said["bad option"][2]
    assert said["no fps"][0] == 400 and "fps is the camera's frames per second, a number > 0" in said["no fps"][2]
    assert said["not an image"][0] == 400 and "not a JPEG or PNG file" in said["not an image"][2]
    assert said["patch"][0] == 405
    assert said["too many"][0] == 503 and "1 sessions, its limit" in said["too many"][2]
    assert int(said["too many"][1]["retry-after"]) > 0
    assert freed(gateway, server) == (0, 0)
    offers = scrape(gateway.url + "/metrics")
    assert offers['liveportrait_gateway_offers_total{status="401"}'] >= 2


async def offer_of(*transceivers: tuple[str, str]) -> bytes:
    """An SDP offer with these (kind, direction) transceivers."""
    pc = RTCPeerConnection()
    for kind, direction in transceivers:
        pc.addTransceiver(kind, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return pc.localDescription.sdp.encode()


@pytest.mark.triton
def test_an_ingest_only_camera_in_h264_is_watched_by_whep_viewers(gateway, server, portrait, faces):
    """OBS's WHIP output: the camera sent only (sendonly), in H.264. Nothing comes back on its own connection; viewers
    watch it with the session's key (POST /whep?session=ID or ?portrait=ID), each getting the animated frames; the
    session's end ends them."""
    async def main():
        async with WhipPeer(gateway.url, portrait, faces, fps=FPS, api_key=KEY, receive=False, codec="H264") as sender:
            session = sender.location.rsplit("/", 1)[1]
            whep = f"{gateway.url}/whep?session={session}"
            watching = await offer_of(("video", "recvonly"))
            refusals = {
                "no key": http("POST", whep, watching, "application/sdp"),
                "other key": http("POST", whep, watching, "application/sdp", "another-key"),
                "no session": http("POST", f"{gateway.url}/whep?session=nope", watching, "application/sdp", KEY),
                "nothing named": http("POST", f"{gateway.url}/whep", watching, "application/sdp", KEY),
                "no video": http("POST", whep, await offer_of(("audio", "recvonly")), "application/sdp", KEY),
            }
            async with WhepViewer(gateway.url, f"session={session}", KEY) as first, \
                    WhepViewer(gateway.url, f"portrait={portrait}", KEY) as second:
                await first.wait_frames(3)
                await second.wait_frames(3)
                viewers = scrape(gateway.url + "/metrics")["liveportrait_gateway_viewers"]
            after_delete = scrape(gateway.url + "/metrics")["liveportrait_gateway_viewers"]
            last = WhepViewer(gateway.url, f"session={session}", KEY)
            await last.start()
            await last.wait_frames(1)
            shown_back = len(sender.displayed)
        deadline = time.monotonic() + 10  # the sender's DELETE ended the session, and so its viewer
        while last.pc.connectionState != "closed" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        state = last.pc.connectionState
        await last.close()
        return sender.answer, refusals, first.shown, second.shown, viewers, after_delete, shown_back, state

    answer, refusals, first, second, viewers, after_delete, shown_back, state = run(main())
    assert "H264/90000" in answer and "a=recvonly" in answer  # the camera negotiated in H.264, nothing sent back
    said = {name: (status, body.decode()) for name, (status, _, body) in refusals.items()}
    assert said["no key"][0] == 401 and "the API key it was started with" in said["no key"][1]
    assert said["other key"][0] == 403 and "did not start the session" in said["other key"][1]
    assert said["no session"][0] == 404 and said["nothing named"][0] == 400 and "?session=" in said["nothing named"][1]
    assert said["no video"][0] == 400 and "receives no video" in said["no video"][1]
    assert all(frame.shape == (704, 600, 3) for frame in first + second)  # the portrait, animated
    assert not np.array_equal(first[0], first[-1])
    assert viewers == 2 and after_delete == 0 and shown_back == 0
    assert state == "closed"
    assert freed(gateway, server) == (0, 0)
    assert scrape(gateway.url + "/metrics")["liveportrait_gateway_viewers"] == 0


@pytest.mark.triton
def test_a_session_ends_at_the_gateways_time_limit_and_frees_its_stream(server, portrait_bytes, faces):
    with GatewayProcess(server.target, BUILD / "gateway-limit.log",
                        extra_args=("--max-session-seconds", "3")) as gateway:
        portrait = upload_portrait(gateway.url, portrait_bytes, KEY)

        async def main():
            async with WhipPeer(gateway.url, portrait, faces, fps=FPS, api_key=KEY) as peer:
                await peer.wait_frames(1)
                deadline = time.monotonic() + 20
                while peer.pc.connectionState != "closed" and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return peer.pc.connectionState

        assert run(main()) == "closed"  # the gateway closed the peer connection
        assert freed(gateway, server) == (0, 0)
        assert scrape(gateway.url + "/metrics")['liveportrait_gateway_sessions_ended_total{reason="limit"}'] == 1


@pytest.mark.triton
def test_a_gateway_beside_its_orchestrator_exchanges_raw_i420_frames_with_it(server, portrait_bytes, faces):
    """``--input-format i420 --output-format i420``: the camera's decoded planes go as they are, the animated
    planes come back as they are (no JPEG on either side)."""
    with GatewayProcess(server.target, BUILD / "gateway-i420.log",
                        extra_args=("--input-format", "i420", "--output-format", "i420")) as gateway:
        portrait = upload_portrait(gateway.url, portrait_bytes, KEY)

        async def main():
            async with WhipPeer(gateway.url, portrait, faces, fps=FPS, api_key=KEY) as peer:
                await peer.wait_frames(4)
                return peer.shown, peer.latencies()

        shown, latencies = run(main())
        assert all(frame.shape == (704, 600, 3) for frame in shown) and not np.array_equal(shown[0], shown[-1])
        assert len(latencies) >= 3 and all(0 < latency < 10 for latency in latencies)
        assert freed(gateway, server) == (0, 0)


def scraped(url: str, name: str) -> float:
    return scrape(url).get(name, 0.0)


DRIVING_AUDIO = 'liveportrait_gateway_audio_seconds_total{direction="driving"}'


@pytest.mark.triton
def test_a_voice_comes_back_as_animated_frames_at_25_fps_with_the_voice_in_step(gateway, server, portrait):
    """The peer speaks 1.6 s (a syllable every 0.5 s) and closes its microphone: every 1/25 s of the voice comes back
    as an animated frame, in order, and the voice comes back too, each syllable heard when its picture is shown."""
    samples, onsets = syllables(1.6)
    sent_before = scraped(gateway.url + "/metrics", DRIVING_AUDIO)

    async def main():
        async with VoicePeer(gateway.url, portrait, samples, api_key=KEY,
                             query="sampling_steps=1&seed=3&drop_late_frames=false") as peer:
            held = (scrape(gateway.url + "/metrics")["liveportrait_gateway_sessions"],
                    scrape(server.metrics_url)["liveportrait_live_streams"])
            session = peer.location.rsplit("/", 1)[1]
            async with WhepViewer(gateway.url, f"session={session}", KEY, audio=True) as viewer:
                await peer.spoken()
                await asyncio.wait_for(peer.ended(), 90)  # the rest animated and played out, then the session ends
            return peer, held, viewer

    peer, held, viewer = run(main())
    assert held == (1, 1)
    viewed = np.concatenate([s for _, s in viewer.heard])  # a viewer of the session sees and hears it too
    assert viewer.displayed and np.abs(viewed).sum() > 0.1 * np.abs(samples).sum()
    driven = scraped(gateway.url + "/metrics", DRIVING_AUDIO) - sent_before  # seconds of voice the stream was sent
    assert driven == pytest.approx(1.6, abs=0.05)
    frames = peer.frames()
    assert [f["sequence"] for f in frames] == list(range(math.ceil(driven * 25 - 1e-6)))  # 25 per second, in order
    assert all(f["audio_s"] == pytest.approx(f["sequence"] / 25) for f in frames)
    assert all(frame.shape == (704, 600, 3) for frame in peer.shown) and len(peer.shown) == 4
    assert not np.array_equal(peer.shown[0], peer.shown[-1])  # the voice moves the portrait
    heard = np.concatenate([s for _, s in peer.heard])
    assert np.abs(heard).sum() > 0.25 * np.abs(samples).sum()  # the voice came back (Opus twice, cut where it waits)
    offsets = peer.av_offsets(onsets)
    assert len(offsets) == len(onsets)  # every syllable heard within 250 ms of its picture ...
    # ... and within 100 ms: measured under 45 ms, the rest is room for two shared cores' scheduling jitter
    assert all(abs(offset) < 0.1 for offset in offsets)
    assert freed(gateway, server) == (0, 0)
    assert scrape(gateway.url + "/metrics")['liveportrait_gateway_sessions_ended_total{reason="stream"}'] >= 1


@pytest.mark.triton
def test_closing_a_voice_session_mid_speech_frees_its_stream_at_once(gateway, server, portrait):
    samples, _ = syllables(6.0)

    async def main():
        peer = VoicePeer(gateway.url, portrait, samples, api_key=KEY, query="sampling_steps=1")
        await peer.start()
        while not peer.displayed:
            await asyncio.sleep(0.05)
        await peer.close(delete=False)  # the peer connection just goes away, mid-speech

    run(main())
    started = time.monotonic()
    assert freed(gateway, server) == (0, 0)
    assert time.monotonic() - started < 5


@pytest.mark.triton
def test_voice_mode_refusals_are_http_statuses_in_words(gateway, server, portrait, faces):
    whip = f"{gateway.url}/whip?portrait={portrait}"

    async def offer(peer) -> bytes:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        await peer.pc.close()
        return peer.pc.localDescription.sdp.encode()

    async def main():
        voice = await offer(VoicePeer(gateway.url, portrait, np.zeros(4800, np.float32), api_key=KEY))
        camera = await offer(WhipPeer(gateway.url, portrait, faces, api_key=KEY))
        post = lambda query, sdp=voice: http("POST", f"{whip}&{query}", sdp, "application/sdp", KEY)
        return {"no audio": post("mode=voice", camera),
                "unknown mode": post("mode=telepathy"),
                "voice option without voice": post("emotion=happy", camera),
                "fps": post("mode=voice&fps=30"),
                "unknown emotion": post("mode=voice&emotion=bored"),
                "bad steps": post("mode=voice&sampling_steps=many"),
                "negative seed": post("mode=voice&seed=-1"),
                "refused by the orchestrator": post("mode=voice&guidance=99")}

    said = {name: (status, body.decode()) for name, (status, _, body) in run(main()).items()}
    assert said["no audio"][0] == 400 and "sends no audio" in said["no audio"][1]
    assert said["unknown mode"][0] == 400 and "camera (the default) or voice" in said["unknown mode"][1]
    assert said["voice option without voice"][0] == 400 and "mode=voice" in said["voice option without voice"][1]
    assert said["fps"][0] == 400 and "leave fps out" in said["fps"][1]
    assert said["unknown emotion"][0] == 400 and "bored" in said["unknown emotion"][1]
    assert said["bad steps"][0] == 400 and "sampling_steps='many'" in said["bad steps"][1]
    assert said["negative seed"][0] == 400 and "seed='-1' is not a whole number" in said["negative seed"][1]
    assert said["refused by the orchestrator"][0] == 400 and "guidance" in said["refused by the orchestrator"][1]
    assert all(len(body) < 400 and "Traceback" not in body for _, body in said.values())
    assert freed(gateway, server) == (0, 0)


