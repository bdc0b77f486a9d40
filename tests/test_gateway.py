"""The WebRTC gateway (client/gateway) through the real stack: aiortc peers -> ``liveportrait gateway`` -> the
orchestrator (with API keys) -> the real tritonserver (tiny profile, with the audio models). Camera frames in, animated
frames out, each matched to the frame it was animated from (the gateway's ``timing`` data channel); a voice in, one
animated frame per 1/25 s of it out and the voice back in step with the picture; a session's end frees its stream on
the orchestrator at once; signalling refusals are HTTP statuses in words and leave nothing behind."""
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

from client.gateway.peer import WhipPeer, http, upload_portrait
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


def test_a_video_frame_is_complete_at_its_marked_packet_not_when_the_next_one_starts():
    from aiortc.rtp import RtpPacket

    from client.gateway.rtp import MarkerJitterBuffer

    def packet(sequence: int, timestamp: int, marker: bool) -> RtpPacket:
        p = RtpPacket(payload_type=96, marker=int(marker), sequence_number=sequence, timestamp=timestamp)
        p._data = bytes([sequence])
        return p

    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(packet(10, 3000, False))[1] is None
    assert buffer.add(packet(12, 3000, True))[1] is None  # packet 11 is missing
    frame = buffer.add(packet(11, 3000, False))[1]  # ... now it is complete, with no later frame needed
    assert (frame.timestamp, frame.data) == (3000, bytes([10, 11, 12]))
    frame = buffer.add(packet(13, 6000, True))[1]
    assert (frame.timestamp, frame.data) == (6000, bytes([13]))


def test_a_camera_at_the_declared_rate_loses_no_frame_to_jitter_and_a_faster_one_is_held_to_it():
    from client.gateway.session import Pacer

    def admitted(arrivals: np.ndarray, fps: float) -> np.ndarray:
        now = [0.0]
        pacer = Pacer(fps, clock=lambda: now[0])
        kept = []
        for t in arrivals:
            now[0] = t
            if pacer.admit():
                kept.append(t)
        return np.array(kept)

    rng = np.random.default_rng(0)
    every_100ms = np.arange(300) * 0.1
    jittered = np.sort(every_100ms + rng.uniform(-0.02, 0.02, 300))  # capture, codecs and network: +-20 ms
    assert len(admitted(jittered, 10)) == 300
    for camera_fps in (12, 30):  # a faster camera: ~10 a second (of its own frames), never a burst of more
        kept = admitted(np.arange(30 * camera_fps) / camera_fps, 10)
        assert 270 <= len(kept) <= 301
        assert max(np.sum((kept >= t) & (kept < t + 1.0)) for t in kept) <= 11


def test_an_audio_packet_is_decoded_as_it_arrives_a_missing_one_is_not_waited_for():
    from aiortc.rtp import RtpPacket

    from client.gateway.rtp import MarkerJitterBuffer

    def packet(sequence: int) -> RtpPacket:
        p = RtpPacket(payload_type=111, sequence_number=sequence, timestamp=sequence * 960)
        p._data = bytes([sequence])
        return p

    buffer = MarkerJitterBuffer(capacity=16, prefetch=4)  # aiortc's audio buffer would hold 4 packets (80 ms)
    assert buffer.add(packet(1))[1].data == bytes([1])
    assert buffer.add(packet(2))[1].data == bytes([2])
    assert buffer.add(packet(4))[1].data == bytes([4])  # 3 is lost (or late): the voice goes on
    assert buffer.add(packet(3))[1] is None  # too late: dropped
    assert buffer.add(packet(5))[1].data == bytes([5])


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


def test_an_offer_must_receive_the_portraits_video():
    from client.gateway.signalling import receives_video

    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
    video = "m=video {} UDP/TLS/RTP/SAVPF 96\r\n{}"
    assert receives_video(head + audio + video.format(9, "a=recvonly\r\n"))  # a voice peer
    assert receives_video(head + video.format(9, "a=sendrecv\r\n")) and receives_video(head + video.format(9, ""))
    assert not receives_video(head + audio + video.format(9, "a=sendonly\r\n"))
    assert not receives_video(head + audio) and not receives_video(head + video.format(0, "a=recvonly\r\n"))


def test_ice_servers_and_api_keys_are_checked_in_words():
    from client.gateway.signalling import HttpError, bearer_key, ice_servers

    stun, turn = ice_servers(["stun:stun.example.org:3478", "turn:turn.example.org:3478?transport=udp"], "u", "p")
    assert stun.link() == '<stun:stun.example.org:3478>; rel="ice-server"'  # no credentials on a STUN server
    assert turn.link() == ('<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="u"; '
                           'credential="p"; credential-type="password"')
    with pytest.raises(ValueError, match="needs a username and a credential"):
        ice_servers(["turn:turn.example.org:3478"])
    with pytest.raises(ValueError, match="is not a stun:"):
        ice_servers(["http://example.org"])
    assert bearer_key(None) is None and bearer_key("Bearer abc") == "abc"
    for bad in ("Basic abc", "Bearer ", "Bearer a b", "Bearer " + "k" * 300, "Bearer é"):
        with pytest.raises(HttpError) as refused:
            bearer_key(bad)
        assert refused.value.status == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer")


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
            await peer.spoken()
            await asyncio.wait_for(peer.ended(), 90)  # the rest animated and played out, then the session ends
            return peer, held

    peer, held = run(main())
    assert held == (1, 1)
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


def test_the_playout_clock_holds_the_voice_to_the_frames_that_arrived():
    """Frames on time keep the clock; the voice plays no further than the frames that arrived; when it waited, the
    next frame moves the clock on by the wait (the voice resumes where it stopped, with that frame's picture)."""
    from client.gateway.playout import Playout, VoiceBuffer

    now = [100.0]
    playout = Playout(margin_s=0.04, clock=lambda: now[0])
    assert playout.now_s() is None  # no frame yet: nothing plays
    playout.arrived(0.0)
    assert playout.due(0.0) == pytest.approx(100.04) and playout.due(0.4) == pytest.approx(100.44)
    assert playout.ready_until == pytest.approx(0.04)
    now[0] = 100.06
    playout.arrived(0.04)  # early (due at 100.08): held for its due time, the clock unchanged
    assert playout.due(0.04) == pytest.approx(100.08) and playout.slipped_s == 0
    now[0] = 100.5  # the clock is at 0.46 s of voice, the frames at 0.08: the voice has waited 0.38 s
    playout.arrived(0.2)  # frame 5; frames 2 to 4 were skipped: frame 1 stays on screen while their sound plays
    assert playout.slipped_s == pytest.approx(0.38)
    assert playout.now_s() == pytest.approx(0.08)  # the voice resumes where it waited ...
    assert playout.due(0.2) == pytest.approx(100.62)  # ... and reaches frame 5 when its picture is shown
    assert playout.ready_until == pytest.approx(0.24)

    voice = VoiceBuffer(max_seconds=1.0)
    voice.add(np.arange(1, 481, dtype=np.int16))
    voice.add(np.arange(481, 961, dtype=np.int16))
    assert voice.take(400, 200).tolist() == list(range(401, 601))
    assert voice.take(900, 100).tolist() == list(range(901, 961)) + [0] * 40  # not received (yet): silence
    assert voice.start == 480  # what was played is let go


def test_a_voice_is_sent_at_16_khz_as_it_arrives_and_gaps_in_it_become_silence():
    """aiortc's decoded Opus (48 kHz stereo, 20 ms frames) -> 16 kHz mono chunks to the stream; a gap in the frames'
    timestamps (no packets in silence, or lost ones) is filled, so the voice's time keeps the microphone's."""
    import fractions

    import av

    from client.gateway.metrics import GatewayMetrics
    from client.gateway.voice import VoiceDriver

    from aiortc.mediastreams import MediaStreamError

    class Stream:
        def __init__(self):
            self.chunks, self.closed = [], False

        def send_audio(self, samples, rate):
            self.chunks.append((samples, rate))

        async def close(self):
            self.closed = True

    class Microphone:  # a received track: these frames, then its end
        def __init__(self, frames):
            self.frames = frames

        async def recv(self):
            if not self.frames:
                raise MediaStreamError
            return self.frames.pop(0)

    def opus_frame(index: int) -> av.AudioFrame:
        tone = (8000 * np.sin(np.arange(index * 960, index * 960 + 960) * 2 * np.pi * 200 / 48000)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None], format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * 960, fractions.Fraction(1, 48000)
        return frame

    stream = Stream()
    driver = VoiceDriver(stream, GatewayMetrics())
    asyncio.run(driver.run(Microphone([opus_frame(i) for i in [*range(10), *range(15, 20)]])))  # 100 ms missing
    assert stream.closed  # the track ended: the stream's side is closed (the rest of the voice is animated)
    assert {rate for _, rate in stream.chunks} == {16000}
    sent = np.concatenate([samples for samples, _ in stream.chunks])
    assert sent.dtype == np.float32 and len(sent) == pytest.approx(0.4 * 16000, abs=40)  # 20 frames' time
    assert np.abs(sent[3300:4700]).max() < 0.01 < np.abs(sent[1000:3000]).max()  # the gap is silence
    assert driver.voice.end == pytest.approx(0.4 * 48000, abs=100)  # the voice sent back has the same time
