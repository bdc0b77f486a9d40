"""The WebRTC gateway's parts without a stack (client/gateway): a video frame completed at its marked RTP packet, the
camera's rate limit under jitter, Opus packets decoded as they arrive, what an offer receives, ICE servers and API
keys checked in words, the voice mode's playout clock and the voice sent at 16 kHz with its gaps as silence. The
gateway through the real stack: tests/test_gateway.py."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest


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


def test_what_an_offer_receives_is_read_from_its_directions():
    from client.gateway.signalling import received_kinds

    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{}"
    video = "m=video {} UDP/TLS/RTP/SAVPF 96\r\n{}"
    assert received_kinds(head + audio.format("a=sendrecv\r\n") + video.format(9, "a=recvonly\r\n")) == {
        "audio", "video"}  # a voice peer
    assert received_kinds(head + video.format(9, "a=sendrecv\r\n")) == received_kinds(head + video.format(9, "")) \
        == {"video"}  # a camera peer (sendrecv is the default)
    assert received_kinds(head + audio.format("a=sendonly\r\n") + video.format(9, "a=sendonly\r\n")) == set()  # OBS
    assert received_kinds(head + video.format(0, "a=recvonly\r\n")) == set()  # a rejected section


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


def test_a_viewer_is_refused_in_words_when_there_is_nothing_to_watch_or_viewers_are_off():
    from starlette.testclient import TestClient

    from client.gateway.app import GatewayConfig, gateway_app

    offer = {"content": b"v=0\r\n", "headers": {"Content-Type": "application/sdp"}}
    with TestClient(gateway_app(GatewayConfig())) as client:
        assert client.post("/whep?session=gone", **offer).status_code == 404
        nothing = client.post("/whep", **offer)
        assert nothing.status_code == 400 and "?session=<id>" in nothing.text
        assert client.delete("/whep/gone").status_code == 404
    with TestClient(gateway_app(GatewayConfig(max_viewers=0))) as client:
        off = client.post("/whep?session=any", **offer)
        assert off.status_code == 403 and "serves no viewers" in off.text
