"""``liveportrait``: animate portraits with the LivePortrait service, and run it locally.

    liveportrait demo [--output artifacts/demo.mp4]            # embedded stack, animate a portrait, shut down
    liveportrait up [--profile tiny|full] [--weights DIR] [--port N] [--api-keys keys.json ...]  # orchestrator flags
    liveportrait animate [--server HOST:PORT] --source S --driving D -o out.mp4 [options]
    liveportrait extract-motion [--server HOST:PORT] VIDEO -o motion.pb
    liveportrait animate [--server HOST:PORT] --source S --keyframes kf.json -o out.mp4   # no driving video
    liveportrait edit [--server HOST:PORT] --source S --smile 0.8 --head-pitch 10 ... -o out.png
    liveportrait live [--server HOST:PORT] --source S --driving clip.mp4|--camera N|--audio speech.wav [-o out.mp4]
    liveportrait detect [--server HOST:PORT] IMAGE [--json]
    liveportrait health [--server HOST:PORT]
    liveportrait web [--server HOST:PORT] [--port 7860] [--host 127.0.0.1]   # web page: animate, edit, faces, live
    liveportrait gateway [--target HOST:PORT] [--port 8080] [--ice-server URL]  # WebRTC (WHIP) in front of it
    liveportrait convert-template old.pkl new.pb|new.json

On a failed call the exit status is 1 and the gRPC status code name and the server's message are printed, in
terms of the flags and files given (a service that cannot be reached: how to start one); a local input that is
missing or refused (e.g. a template the restricted unpickler rejects, an output suffix the command does not write)
is reported as `error: <reason>` with exit status 1 before any call is made.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from .cli_commands import (audio_kwarg, cmd_animate, cmd_convert, cmd_detect, cmd_edit, cmd_extract,  # noqa: F401
                           cmd_health, cmd_live, face_json, smoothing_kwarg)
from .cli_errors import error_line
from .cli_options import (AUDIO_FLAGS, FACE_ORDER_HELP, FACE_ORDERS, KEYFRAMES_HELP, OPTION_NAMES,  # noqa: F401
                          SMOOTHING_FLAGS, DefaultsFormatter, add_animation_options, add_audio_options,
                          add_edit_options, add_face_choice, add_face_selection, add_server, check_output)
from .cli_stack import cmd_demo, cmd_up, cmd_web
from .gateway.cli import add_ice_options, add_parser as add_gateway_parser, cmd_gateway
from .messages import DRIVING_CROP
from .templates import TemplateError

COMMANDS = {"animate": cmd_animate, "edit": cmd_edit, "extract-motion": cmd_extract, "detect": cmd_detect,
            "health": cmd_health, "convert-template": cmd_convert, "up": cmd_up, "demo": cmd_demo, "web": cmd_web,
            "live": cmd_live, "gateway": cmd_gateway}


def parser(orchestrator_options: bool = True) -> argparse.ArgumentParser:
    """The command line; ``orchestrator_options`` False leaves the orchestrator's flags out of ``up`` (they import
    the server's modules, which the other commands do not need)."""
    p = argparse.ArgumentParser(prog="liveportrait", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=description or help_text,
                              formatter_class=DefaultsFormatter)

    a = command("animate", "animate a portrait (or a video: video-to-video) with a driving video, image, motion "
                           "template, voice or keyframes")
    add_server(a)
    a.add_argument("--source", "-s", type=Path, required=True,
                   help="portrait image, or a video (.mp4, .mov ...: video-to-video)")
    a.add_argument("--driving", "-d", type=Path, default=None,
                   help="driving video, image, motion template (.pb .json .pkl) or voice (.wav .mp3 .m4a .aac .ogg "
                        ".opus .flac: speech animates the portrait at 25 fps, the audio muxed) [none: --keyframes]")
    a.add_argument("--keyframes", type=Path, default=None, help=KEYFRAMES_HELP)
    a.add_argument("--output", "-o", type=Path, required=True,
                   help="file to write: .mp4 (or .png/.jpg for a still driving input)")
    add_animation_options(a)
    add_audio_options(a.add_argument_group("driving voice (--driving speech.wav; defaults: Ditto's)"))
    add_face_selection(a.add_argument_group("several faces (default: one face, --face-index / --face-hint)"))
    add_edit_options(a.add_argument_group("edit applied to every frame (ranges: the official sliders)"))

    ed = command("edit", "edit a portrait: eyes, lips, head pose, expression sliders")
    add_server(ed)
    ed.add_argument("--source", "-s", type=Path, required=True, help="portrait image")
    ed.add_argument("--output", "-o", type=Path, required=True, help="image to write: .png or .jpg")
    ed.add_argument("--session", default=None,
                    help="session id of an earlier edit of the same source (printed by it): the source is not "
                         "prepared again [a new session]")
    ed.add_argument("--jpeg-quality", type=int, default=None, help="1-100, when the output is .jpg [95]")
    g = ed.add_argument_group("source options")
    flag = argparse.BooleanOptionalAction
    g.add_argument("--crop-source", action=flag, default=None,
                   help="detect and crop the face (off: the whole image is the face crop) [on]")
    g.add_argument("--crop-scale", type=float, default=None,
                   help="size of the face crop, relative to the face box, 1-4 [2.3]")
    add_face_choice(g)
    g.add_argument("--stitching", action=flag, default=None,
                   help="stitch the edited face to the shoulders (stitching network) [on]")
    g.add_argument("--paste-back", action=flag, default=None,
                   help="paste the edited face back into the whole image (off: the face crop) [on]")
    add_edit_options(ed.add_argument_group("edit (ranges: the official sliders)"))

    lv = command("live", "live animation: a camera, a video played as one in real time, or a voice animates the "
                         "portrait frame by frame; prints a status line every second and latency, fps and drops at "
                         "the end")
    add_server(lv)
    lv.add_argument("--source", "-s", type=Path, required=True,
                    help="portrait image (a video is animated with `liveportrait animate --source video.mp4`)")
    lv.add_argument("--driving", "-d", type=Path, default=None,
                    help="a video played as a camera at its own fps (one of --driving, --camera, --audio, "
                         "--microphone) [none]")
    lv.add_argument("--camera", type=int, default=None, metavar="N", help="camera N (OpenCV), instead of --driving "
                                                                          "[none]")
    lv.add_argument("--audio", dest="voice", type=Path, default=None, metavar="SPEECH",
                    help="voice mode: a sound file streamed at real time drives the portrait (25 fps); prints the "
                         "first frame's delay after the voice starts and the audio-to-frame delay p50/p95 [none]")
    lv.add_argument("--microphone", nargs="?", const="default", default=None, metavar="DEVICE",
                    help="voice mode from a microphone (PulseAudio or ALSA through PyAV) [DEVICE: default]")
    lv.add_argument("--drop-late-frames", action="store_true",
                    help="voice mode: skip frames that fall more than 0.4 s behind the voice, and audio the server "
                         "cannot animate in time (real-time pacing) [off: every frame, however late]")
    lv.add_argument("--output", "-o", type=Path, default=None, help="MP4 of the animated frames [none]")
    lv.add_argument("--show", action="store_true", help="show the animated frames in a window (OpenCV GUI)")
    lv.add_argument("--fps", type=float, default=None, help="frames sent per second [the video's or camera's]")
    lv.add_argument("--loop", action="store_true", help="replay --driving until --seconds / --frames / Ctrl-C")
    lv.add_argument("--seconds", type=float, default=None, help="stop after this many seconds [the end of --driving]")
    lv.add_argument("--frames", type=int, default=None, help="stop after sending this many frames [no limit]")
    lv.add_argument("--input-format", choices=["jpeg", "i420"], default="jpeg",
                    help="how frames travel to the server: JPEG, or raw I420 (more bytes, no encoding)")
    lv.add_argument("--json", action="store_true", help="print the figures at the end as one JSON line")
    add_animation_options(lv, live=True)
    add_audio_options(lv.add_argument_group("voice mode (--audio / --microphone; defaults: Ditto's online mode, "
                                            "10 sampling steps)"))
    add_edit_options(lv.add_argument_group("edit applied to every frame (ranges: the official sliders)"))

    e = command("extract-motion", "driving video -> motion template (.pb or .json), to animate without the video")
    add_server(e)
    e.add_argument("video", type=Path, help="driving video (.mp4, .mov ...)")
    e.add_argument("--output", "-o", type=Path, required=True, help="motion template to write: .pb or .json")
    e.add_argument("--crop-driving-video", choices=list(DRIVING_CROP), default="auto",
                   help="crop the frames around their face: auto (non-square videos only), on, off")

    d = command("detect", "the faces of an image: box, score, landmarks, eye and lip ratios")
    add_server(d)
    d.add_argument("image", type=Path, help="image to look for faces in (.jpg, .png, .webp ...)")
    d.add_argument("--json", action="store_true", help="print one JSON document instead of a line per face")
    d.add_argument("--face-order", default="", choices=FACE_ORDERS, metavar="ORDER", help=FACE_ORDER_HELP.replace(
        "for --face-index and --faces", "(the order of the list)"))
    d.add_argument("--ordering", dest="face_order", choices=FACE_ORDERS, help=argparse.SUPPRESS)  # older name

    h = command("health", "is the service SERVING (exit status 0) or not (1)")
    add_server(h)

    w = command("web", "web page (Gradio) over the service's API: animate, edit, faces and live (camera or voice, "
                       "over WebRTC)")
    add_server(w)
    w.add_argument("--port", type=int, default=7860, help="HTTP port of the page")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    add_ice_options(w.add_argument_group("WebRTC (the Live tab; the page serves the gateway under /webrtc)"))

    add_gateway_parser(sub)
    sub.choices["gateway"].formatter_class = DefaultsFormatter

    c = command("convert-template", "official .pkl (or .pb/.json) motion template -> .pb or .json")
    c.add_argument("source", type=Path, help="template to read: .pkl (the official format), .pb or .json")
    c.add_argument("destination", type=Path, help="template to write: .pb or .json")

    for name, help_text in (("up", "run Triton + the orchestrator (the service) on this machine until Ctrl-C"),
                            ("demo", "run the service on this machine, animate a portrait, write the MP4, stop")):
        s = command(name, help_text)
        s.add_argument("--profile", choices=["tiny", "full"], default="tiny",
                       help="model sizes: tiny (the official architecture with reduced widths: fast on a CPU) or "
                            "full (the official sizes: with --weights, real results)")
        s.add_argument("--weights", default="synthetic",
                       help="the official LivePortrait weights directory, or synthetic (deterministic weights: the "
                            "output is structured noise)")
        s.add_argument("--face-stack", choices=["mediapipe", "official"], default="mediapipe",
                       help="face detection and landmarks: MediaPipe, or the official InsightFace + LivePortrait "
                            "models when their files are in the weights directory")
        s.add_argument("--port", type=int, default=50051 if name == "up" else 0,
                       help="gRPC port of the service (0: any free port)")
        s.add_argument("--metrics-port", type=int, default=9100 if name == "up" else 0,
                       help="HTTP port of the service's Prometheus /metrics (0, or one in use: a free one, printed)")
        if name == "up":
            s.add_argument("--web", action="store_true", help="also serve the web page (liveportrait web)")
            s.add_argument("--animal", action="store_true",
                           help="also export and serve the animal models (requests with --model-set animal)")
            s.add_argument("--audio", action="store_true",
                           help="also export and serve the audio-to-motion models (speech drives the portrait)")
            s.add_argument("--web-port", type=int, default=7860,
                           help="HTTP port of the web page (0: any free port, printed)")
            if orchestrator_options:
                from orchestrator.embedded import SET_BY_THE_STACK
                from orchestrator.config import add_options

                g = s.add_argument_group("orchestrator options (those of liveportrait-orchestrator, passed on; "
                                         "defaults: its LIVEPORTRAIT_* environment variables)")
                s.set_defaults(orchestrator_options=add_options(g, exclude=SET_BY_THE_STACK))
        if name == "demo":
            s.add_argument("--output", "-o", type=Path, default=Path("artifacts/demo.mp4"), help="MP4 to write")
            s.add_argument("--source", type=Path, default=None, help="portrait [skimage.data.astronaut()]")
            s.add_argument("--driving", type=Path, default=None, help="driving video/image/template "
                                                                      "[a generated head turn + blink]")
            s.add_argument("--frames", type=int, default=50, help="frames of the generated motion")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(orchestrator_options=argv[:1] == ["up"]).parse_args(argv)
    try:
        check_output(args.command, getattr(args, "output", None))
        return COMMANDS[args.command](args)
    except grpc.RpcError as exc:
        print(f"\nerror: {error_line(exc, args)}", file=sys.stderr)
        return 1
    except (TemplateError, ValueError, OSError) as exc:  # a local input: missing, unreadable or refused
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the local stack did not start (StackError, TritonStartError)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
