"""``liveportrait`` as people expect it: every flag explained with its choices and default, one name per concept, each
command showing only the options it takes, outputs refused by suffix before any work, ``live``'s status line, and
failed calls reported in the CLI's words (flags and files, not request fields; how to start an unreachable
service; what to try for an animal)."""
from __future__ import annotations

import argparse
import asyncio
import io
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from client.cli import main as cli, parser
from client.cli_errors import error_line, in_flags
from client.cli_options import (AUDIO_FLAGS, FACE_ORDERS, LIVE_OPTION_NAMES, VIDEO_ONLY, DefaultsFormatter,
                                check_output)
from client.live_stats import LiveStats
from client.live_status import StatusLine, every_second
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
SOURCE = EXAMPLES / "source" / "s0.jpg"
WINK = EXAMPLES / "templates" / "wink.pkl"
NOT_OURS = {"gateway"}  # the gateway's flags (client/gateway/cli.py) and the orchestrator's in `up`: help required
PROTO_PATH = re.compile(r"\b(options|edit|face_drivings|driving_keyframes|driving_audio|setup|smoothing)\.\w|"
                        r"\w\[\d+\]")


def subcommands(orchestrator_options: bool = True) -> dict[str, argparse.ArgumentParser]:
    p = parser(orchestrator_options=orchestrator_options)
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def shown_help(command: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help line of ``action`` as ``--help`` prints it (defaults expanded)."""
    formatter = command._get_formatter()
    text = formatter._get_help_string(action) if isinstance(formatter, DefaultsFormatter) else action.help
    return text % {**vars(action), "default": action.default}


def closed_port() -> socket.socket:
    """A bound socket that never listens: connections to it are refused, and no other server can take its port."""
    nobody = socket.socket()
    nobody.bind(("127.0.0.1", 0))
    return nobody


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


# ---- help ---------------------------------------------------------------------------------------------------------

def test_every_option_of_every_command_has_help_with_its_choices_and_default():
    orchestrator_flags = ({a.dest for a in subcommands(True)["up"]._actions}
                          - {a.dest for a in subcommands(False)["up"]._actions})
    for name, command in subcommands().items():
        visible = {a.dest for a in command._actions if a.help != argparse.SUPPRESS}
        page = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if action.help == argparse.SUPPRESS:  # an older name of a flag that is shown
                assert action.dest in visible, what
                continue
            text = shown_help(command, action)
            assert re.sub(r"\[[^\]]*\]", "", text).strip(), f"{what} has no help"
            for choice in action.choices or ():
                assert choice in page, f"{what}: choice {choice} not listed"
            ours = name not in NOT_OURS and action.dest not in orchestrator_flags
            if ours and action.option_strings and not action.required:
                assert re.search(r"\[[^\]]+\]|unset: ", text), f"{what} does not say its default: {text!r}"


def test_the_flags_people_asked_about_say_what_they_do():
    commands = subcommands()

    def help_of(command: str, flag: str) -> str:
        action = next(a for a in commands[command]._actions if flag in a.option_strings or a.dest == flag)
        return shown_help(commands[command], action)

    assert "tiny" in help_of("up", "--profile") and "full" in help_of("up", "--profile")
    assert "metrics" in help_of("up", "--metrics-port") and "[9100]" in help_of("up", "--metrics-port")
    assert "box around the face" in help_of("animate", "--face-hint")
    assert "image" in help_of("detect", "image")
    assert ".pb or .json" in help_of("extract-motion", "-o")
    assert "auto" in help_of("extract-motion", "--crop-driving-video")
    keyframes = help_of("animate", "--keyframes")
    assert "duration_s" in keyframes and "easing" in keyframes and "client/edits.py" not in keyframes
    assert "live" in commands["web"].description


def test_face_order_is_one_flag_listing_the_servers_orderings(capsys):
    from orchestrator.face.ordering import ORDERINGS

    assert FACE_ORDERS == ORDERINGS
    for command in ("animate", "edit", "live", "detect"):
        page = subcommands()[command].format_help()
        assert "--face-order" in page and all(order in page for order in ORDERINGS), command
    assert "--ordering" not in subcommands()["detect"].format_help()
    # the older `detect --ordering` still works, as the same flag
    assert parser(False).parse_args(["detect", "x.jpg", "--ordering", "left-right"]).face_order == "left-right"
    assert parser(False).parse_args(["detect", "x.jpg", "--face-order", "top-bottom"]).face_order == "top-bottom"
    with pytest.raises(SystemExit):
        parser(False).parse_args(["animate", "-s", "s.jpg", "-d", "d.mp4", "-o", "o.mp4", "--face-order", "biggest"])
    assert "large-small" in capsys.readouterr().err


def test_live_shows_and_accepts_only_the_options_a_live_stream_takes(capsys):
    live = subcommands()["live"]
    page = live.format_help()
    for name in VIDEO_ONLY + ("keyframes", "all_faces", "face_driving"):
        if name != "audio":  # live's --audio is its voice file
            assert "--" + name.replace("_", "-") not in page, name
    # every option live parses is one it sends (none parsed and then ignored)
    own = {"help", "server", "ca", "cert", "key", "api_key", "timeout", "source", "driving", "camera", "voice",
           "microphone", "drop_late_frames", "output", "show", "fps", "loop", "seconds", "frames", "input_format",
           "json", "smooth", "smooth_min_cutoff", "smooth_beta"}
    for action in live._actions:
        assert (action.dest in own or action.dest in LIVE_OPTION_NAMES or action.dest in AUDIO_FLAGS
                or action.dest.startswith("edit_")), action.dest
    with pytest.raises(SystemExit):
        parser(False).parse_args(["live", "-s", "s.jpg", "-d", "d.mp4", "--crf", "20"])
    assert "unrecognized arguments: --crf" in capsys.readouterr().err


def test_live_says_a_video_source_belongs_to_animate(tmp_path, capsys):
    video = tmp_path / "me.mp4"
    video.write_bytes(b"not read")
    assert cli(["live", "--server", "127.0.0.1:1", "--source", str(video), "--camera", "0"]) == 1
    err = capsys.readouterr().err
    assert "live animates a portrait image" in err and "liveportrait animate --source" in err
    assert "not an image in a supported format" not in err


# ---- outputs ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, says", [
    (["edit", "--source", str(SOURCE), "--smile", "0.5", "-o", "x.webp"],
     "edit writes .png or .jpg (the service edits to PNG or JPEG)"),
    (["animate", "--source", str(SOURCE), "--driving", str(WINK), "-o", "out.gif"],
     "animate writes .mp4 (or .png/.jpg for a still driving input)"),
    (["extract-motion", str(SOURCE), "-o", "motion.pkl"], "extract-motion writes a motion template: .pb (binary) "
                                                          "or .json"),
    (["live", "--source", str(SOURCE), "--driving", "clip.mp4", "-o", "live.avi"], "live writes .mp4"),
])
def test_an_output_suffix_the_command_does_not_write_is_refused_before_any_call(argv, says, tmp_path, capsys):
    output = tmp_path / argv[-1]
    with closed_port() as nobody:  # a call would fail UNAVAILABLE: the suffix error shows none was made
        code = cli(argv[:-1] + [str(output), "--server", f"127.0.0.1:{nobody.getsockname()[1]}"])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == f"error: -o {output}: {says}"
    assert not output.exists()


def test_the_suffixes_each_command_writes_are_accepted():
    for command, names in {"animate": ("a.mp4", "a.png", "a.jpg", "a.JPEG"), "edit": ("e.png", "e.jpg", "e.jpeg"),
                           "extract-motion": ("m.pb", "m.json"), "live": ("l.mp4",)}.items():
        for name in names:
            check_output(command, Path(name))  # no error
    check_output("live", None)  # live without -o writes nothing


# ---- live's status line -------------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats_after(sent: int, results: int, server_dropped: int, latency_s: float, seconds: float) -> LiveStats:
    stats = LiveStats(sent=sent, results=results, server_dropped=server_dropped, server_received=sent,
                      first_us=0, last_us=int(seconds * 1e6))
    stats.latencies = [latency_s] * results
    return stats


def test_the_status_line_reports_fps_out_latency_and_drops_each_second_as_plain_lines_in_a_log():
    clock, out = Clock(), io.StringIO()
    stats = stats_after(sent=10, results=10, server_dropped=0, latency_s=0.120, seconds=1.0)
    status = StatusLine(stats, fps_sent=10, stream=out, clock=clock)
    clock.now += 1.0
    status.update()
    stats.sent, stats.results, stats.server_dropped = 20, 15, 5
    stats.latencies += [0.300] * 5
    clock.now += 1.0
    status.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert "10.0 fps out" in lines[0] and "p50 latency 120 ms" in lines[0] and "dropped   0% (0 of 10)" in lines[0]
    assert "5.0 fps out" in lines[1] and "p50 latency 300 ms" in lines[1] and "dropped  25% (5 of 20)" in lines[1]
    assert "hint" not in out.getvalue()


def test_in_voice_mode_the_drops_are_counted_against_the_frames_the_voice_covers():
    clock, out = Clock(), io.StringIO()
    stats = LiveStats(results=10, server_dropped=40, server_received=50, first_us=0, last_us=2_000_000)  # 2 s: 50
    stats.audio_delays = [0.9] * 10
    status = StatusLine(stats, fps_sent=25, stream=out, clock=clock, suggest_fps=False)
    clock.now += 1.0
    status.update()
    assert "p50 latency 900 ms" in out.getvalue() and "dropped  80% (40 of 50)" in out.getvalue()
    assert stats.summary()["drop_rate"] == 0.8


def test_on_a_terminal_the_status_line_is_rewritten_in_place_and_ended_at_the_close():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock, out = Clock(), Terminal()
    status = StatusLine(stats_after(4, 4, 0, 0.1, 1.0), fps_sent=5, stream=out, clock=clock)
    for _ in range(3):
        clock.now += 1.0
        status.update()
    status.close()
    assert out.getvalue().count("\r") == 3 and out.getvalue().count("\n") == 1 and out.getvalue().endswith("\n")


def test_past_half_the_frames_dropped_it_suggests_the_fps_the_server_kept_up_with_once():
    clock, out = Clock(), io.StringIO()
    stats = stats_after(sent=90, results=25, server_dropped=65, latency_s=0.5, seconds=3.0)  # 8.3 fps answered
    status = StatusLine(stats, fps_sent=30, stream=out, clock=clock)
    for _ in range(3):
        clock.now += 1.0
        status.update()
    hints = [line for line in out.getvalue().splitlines() if line.startswith("hint:")]
    assert hints == ["hint: 72% of the frames are dropped: the server keeps up with about 8.0 fps; try --fps 8"]
    voice = StatusLine(stats, fps_sent=25, stream=io.StringIO(), clock=clock, suggest_fps=False)
    clock.now += 1.0
    voice.update()
    assert "hint" not in voice.stream.getvalue()  # a voice has no --fps


def test_the_status_line_is_written_every_interval_until_the_stream_stops():
    class Counting(StatusLine):
        def update(self) -> None:
            super().update()
            if self.stream.getvalue().count("\n") == 3:
                stop.set()

    async def main() -> None:
        await asyncio.wait_for(every_second(status, stop, interval=0.01), 10)

    stop = asyncio.Event()
    status = Counting(LiveStats(), fps_sent=25, stream=io.StringIO())
    asyncio.run(main())
    assert status.stream.getvalue().count("live ") == 3


# ---- failed calls in the CLI's words ------------------------------------------------------------------------------

def args(**given) -> SimpleNamespace:
    defaults = {"server": "localhost:50051", "model_set": None, "face_driving": None, "keyframes": None}
    return SimpleNamespace(**{**defaults, **given})


def test_field_paths_become_flags_and_files():
    from orchestrator.errors import InvalidRequest
    from orchestrator.options import FaceSelection, animate_options, edit_from_proto, keyframes_from_proto
    from orchestrator.pipeline.source import select_faces

    def server_says(call) -> str:
        with pytest.raises(InvalidRequest) as error:
            call()
        return str(error.value)

    faces = [SimpleNamespace(box=[0, 0, 10, 10]), SimpleNamespace(box=[20, 0, 30, 10])]
    cases = {
        server_says(lambda: select_faces(faces, FaceSelection(indices=(0, 5)), 8)):
            "the 2nd value of --faces is face 5, but 2 face(s) were found in the source image (indices 0 to 1 in "
            "--face-order)",
        server_says(lambda: animate_options(pb.AnimationOptions(faces=pb.FaceSelection(indices=[1, 1])),
                                            pb.OutputOptions())):
            "--faces repeats a face: its 2nd value is face 1 again",
        server_says(lambda: select_faces(faces, FaceSelection(boxes=((50, 50, 60, 60),)), 8)):
            "the 1st --face-box [50, 50, 60, 60] holds no detected face; 2 face(s) were found in the source image "
            "at [[0, 0, 10, 10], [20, 0, 30, 10]]",
        server_says(lambda: edit_from_proto(pb.Edit(smile=2))):
            "--smile must be between -0.3 and 1.3 (smile), got 2",
        server_says(lambda: edit_from_proto(pb.Edit(head_yaw=90), "options.edit")):
            "--head-yaw must be between -25 and 25 (relative yaw, degrees), got 90",
        server_says(lambda: animate_options(pb.AnimationOptions(crop_scale=9), pb.OutputOptions())):
            "--crop-scale must be between 1 and 4, got 9",
        server_says(lambda: animate_options(pb.AnimationOptions(face_order="biggest"), pb.OutputOptions())):
            "unknown --face-order 'biggest'; choose one of " + ", ".join(FACE_ORDERS),
        server_says(lambda: animate_options(pb.AnimationOptions(smoothing=pb.Smoothing(enabled=True, beta=-1)),
                                            pb.OutputOptions())):
            "--smooth-beta must be a finite number >= 0, got -1",
        server_says(lambda: keyframes_from_proto(pb.Keyframes(keyframes=[
            pb.Keyframe(duration_s=1), pb.Keyframe(duration_s=1, edit=pb.Edit(wink=99))]))):
            "the 2nd keyframe of kf.json: wink must be between 0 and 39 (wink), got 99",
        "face_drivings[0].driving_image: the data is not an image in a supported format":
            "--face-driving 1=smile.jpg: the data is not an image in a supported format",
        "face_drivings need options.faces (the faces to animate)":
            "--face-driving needs --all-faces/--faces/--face-box (the faces to animate)",
        "face_drivings[0].face is 3, but 2 face(s) are animated (0 to 1)":
            "--face-driving 1=smile.jpg names face 3, but 2 face(s) are animated (0 to 1)",
        "options.edit does not apply to driving_keyframes: put the edit in the keyframes":
            "an edit (--smile, --head-yaw ...) does not apply to --keyframes: put the edit in the keyframes",
        "driving_keyframes are not available with model_set ANIMAL: drive an animal with a video, an image or a "
        "motion template": "--keyframes are not available with --model-set animal: drive an animal with a video, an "
                           "image or a motion template",
        "no face was found in the source video (3 frames); use a video showing a face, give `face_hint` [x1, y1, x2, "
        "y2] around it, or set `crop_source: false` (CLI: `--no-crop-source`) for a video that is already a face crop":
            "no face was found in the source video (3 frames); use a video showing a face, give `--face-hint` around "
            "it, or pass `--no-crop-source` for a video that is already a face crop",
        "driving_audio.options.sampling_steps must be between 1 and 200, got 500":
            "--audio-steps must be between 1 and 200, got 500",
        "fps 40 is more than this server's limit of 30 frames per second per stream; send fewer frames":
            "--fps 40 is more than this server's limit of 30 frames per second per stream; send fewer frames",
    }
    from orchestrator.options import ANIMAL_NEEDS_A_BOX

    cases[ANIMAL_NEEDS_A_BOX] = ("animal mode cannot detect the animal's face (no animal face detector is served: "
                                 "the official one, X-Pose, cannot be obtained here): give a box around the animal's "
                                 "face in `--face-hint X1 Y1 X2 Y2`, or pass `--no-crop-source` when the whole image "
                                 "is the animal's face crop")
    given = args(face_driving=["1=smile.jpg"], keyframes=Path("/tmp/kf.json"))
    for server, cli_words in cases.items():
        assert in_flags(server, given) == cli_words, server
        assert not PROTO_PATH.search(in_flags(server, given)), server


def test_the_printed_line_keeps_the_status_code_name():
    error = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "edit.smile must be between -0.3 and 1.3 (smile), got 2")
    assert error_line(error, args()) == "INVALID_ARGUMENT: --smile must be between -0.3 and 1.3 (smile), got 2"


def test_no_face_in_the_source_suggests_the_animal_mode_unless_it_was_asked_for():
    from orchestrator.face.analyzer import NO_FACE_HINT

    error = FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, f"no face was found in the source image; {NO_FACE_HINT}")
    line = error_line(error, args())
    assert line.startswith("FAILED_PRECONDITION: no face was found in the source image")
    assert "pass `--no-crop-source`" in line and "`--face-hint`" in line and "crop_source: false" not in line
    assert line.endswith("for an animal, try --model-set animal (with --face-hint or --no-crop-source)")
    assert "--model-set animal" not in error_line(error, args(model_set="animal"))
    driving = FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "no face was found in the driving image; use an "
                                                                 "image showing a face")
    assert "--model-set animal" not in error_line(driving, args())


def test_a_server_without_the_animal_models_says_to_start_one_with_them():
    from orchestrator.service import missing_model_set

    error = FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, missing_model_set("animal")("render_i420_animal").args[0])
    line = error_line(error, args(model_set="animal"))
    assert line.startswith("FAILED_PRECONDITION: this server does not serve the animal models: start it with "
                           "`liveportrait up --animal`")
    assert "tritonserver --model-repository" not in line


def test_an_unreachable_service_says_how_to_start_one(tmp_path, capsys):
    image = tmp_path / "s.png"
    image.write_bytes(b"not used")
    with closed_port() as nobody:
        target = f"127.0.0.1:{nobody.getsockname()[1]}"
        code = cli(["animate", "--server", target, "--source", str(image), "--driving", str(WINK), "-o",
                    str(tmp_path / "o.mp4"), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == (f"error: UNAVAILABLE: cannot reach the LivePortrait service at {target}: start it with "
                           "`liveportrait up` (or pass --server)")
    dns = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "DNS resolution failed for nohost.invalid:50051: C-ares status "
                                                    "is not ARES_SUCCESS qtype=A name=nohost.invalid: Domain name not "
                                                    "found")
    assert "cannot reach the LivePortrait service at nohost.invalid:50051" in error_line(
        dns, args(server="nohost.invalid:50051"))
    draining = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another replica")
    assert error_line(draining, args()) == f"UNAVAILABLE: {draining.details()}"  # reached: the server's own words


# ---- against the service (tiny CPU models, real tritonserver) -----------------------------------------------------

@pytest.fixture(scope="module")
def served(triton_server):
    """An orchestrator over the tiny human repository (no animal models)."""
    from orchestrator.embedded import OrchestratorProcess

    build = Path(__file__).resolve().parents[1] / "build" / "test"
    with OrchestratorProcess(triton_server.grpc_url, build / "orchestrator-cli.log") as process:
        yield process


@pytest.mark.triton
def test_served_no_face_and_missing_animal_models_say_what_to_try(served, tmp_path, capsys):
    import cv2
    import numpy as np

    blank = tmp_path / "alpaca.png"  # no human face to find
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    base = ["animate", "--server", served.target, "--driving", str(WINK), "-o", str(tmp_path / "o.mp4")]
    assert cli(base + ["--source", str(blank)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: FAILED_PRECONDITION: no face was found in the source image")
    assert err.endswith("for an animal, try --model-set animal (with --face-hint or --no-crop-source)")
    assert cli(base + ["--source", str(blank), "--model-set", "animal", "--no-crop-source"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: FAILED_PRECONDITION: this server does not serve the animal models: start it with "
                          "`liveportrait up --animal`"), err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.triton
def test_served_live_prints_a_status_line_every_second_and_the_figures_at_the_end(served, tmp_path, capsys):
    from video_checks import clip

    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-short.mp4", frames=12, audio=False)
    assert cli(["live", "--server", served.target, "--source", str(SOURCE), "--driving", str(driving),
                "--fps", "4", "--json"]) == 0  # 3 s of frames, no -o and no --show
    captured = capsys.readouterr()
    status = [line for line in captured.err.splitlines() if " fps out " in line]
    assert len(status) >= 2 and all("p50 latency" in line and "dropped" in line for line in status), captured.err
    assert captured.out.count("\n") == 1 and '"drop_rate"' in captured.out  # --json: one line at the end
