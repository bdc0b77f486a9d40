"""``liveportrait animate --driving speech.wav``: the driving-voice flags become the request's audio options."""
from __future__ import annotations

import pytest

from client.cli import audio_kwarg, parser


def test_the_cli_turns_its_voice_flags_into_audio_options():
    args = parser(False).parse_args(["animate", "-s", "s.jpg", "-d", "speech.mp3", "-o", "o.mp4", "--emotion", "sad",
                                     "--audio-steps", "10", "--guidance", "1.5", "--seed", "3", "--head-motion",
                                     "0.5", "--no-eye-blinks", "--eye-open", "0.5", "0.6"])
    assert audio_kwarg(args) == {"emotion": "sad", "sampling_steps": 10, "guidance": 1.5, "seed": 3,
                                 "head_motion": 0.5, "eye_blinks": False, "eye_open": [0.5, 0.6]}
    plain = parser(False).parse_args(["animate", "-s", "s.jpg", "-d", "speech.mp3", "-o", "o.mp4"])
    assert audio_kwarg(plain) is None  # nothing sent: the server's defaults
    video = parser(False).parse_args(["animate", "-s", "s.jpg", "-d", "d0.mp4", "-o", "o.mp4", "--seed", "3"])
    with pytest.raises(ValueError, match="--seed apply to a driving voice"):
        audio_kwarg(video)
