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
    liveportrait web [--server HOST:PORT] [--port 7860] [--host 127.0.0.1]   # Gradio page over the gRPC API
    liveportrait gateway [--target HOST:PORT] [--port 8080] [--ice-server URL]  # WebRTC (WHIP) in front of it
    liveportrait convert-template old.pkl new.pb|new.json

On a failed call the exit status is 1 and the gRPC status code name and the server's message are printed; a
local input that is missing or refused (e.g. a template the restricted unpickler rejects) is reported as
`error: <reason>` with exit status 1 before any call is made.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .api import PortraitClient, default_target
from .messages import AUDIO_SUFFIXES, DRIVING_CROP, DRIVING_OPTIONS, EMOTIONS, ENCODER_SPEEDS, MODEL_SETS, REGIONS
from .cli_stack import cmd_demo, cmd_up, cmd_web
from .console import ProgressBar, print_summary
from .faces import add_face_options, faces_kwargs
from .gateway.cli import add_parser as add_gateway_parser, cmd_gateway
from .templates import TemplateError, convert, write_template

def _add_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, help="orchestrator HOST:PORT (default $LIVEPORTRAIT_SERVER or "
                                                       "localhost:50051)")
    parser.add_argument("--ca", type=Path, default=None, help="CA certificates for TLS (default: plaintext)")
    parser.add_argument("--cert", type=Path, default=None, help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--key", type=Path, default=None, help="the client certificate's private key (PEM)")
    parser.add_argument("--api-key", default=None, help="API key (default $LIVEPORTRAIT_API_KEY); sent as "
                                                        "'authorization: Bearer <key>'")
    parser.add_argument("--timeout", type=float, default=None, help="deadline of the call in seconds")


def _add_animation_options(p: argparse.ArgumentParser, mp4: bool = True) -> None:
    g = p.add_argument_group("animation options (defaults: the official LivePortrait CLI)")
    flag = argparse.BooleanOptionalAction
    g.add_argument("--relative-motion", action=flag, default=None, help="relative driving [on]")
    g.add_argument("--driving-option", choices=list(DRIVING_OPTIONS), default=None, help="[expression-friendly]")
    g.add_argument("--driving-multiplier", type=float, default=None, help="[1.0]")
    g.add_argument("--animation-region", choices=list(REGIONS), default=None, help="[all]")
    g.add_argument("--stitching", action=flag, default=None, help="[on]")
    g.add_argument("--eye-retargeting", action=flag, default=None, help="[off]")
    g.add_argument("--lip-retargeting", action=flag, default=None, help="[off]")
    g.add_argument("--normalize-lip", action=flag, default=None, help="[off]")
    g.add_argument("--paste-back", action=flag, default=None, help="[on]")
    g.add_argument("--crop-source", action=flag, default=None, help="detect and crop the source face [on]")
    g.add_argument("--crop-scale", type=float, default=None, help="[2.3]")
    g.add_argument("--crop-vy-ratio", type=float, default=None, help="[-0.125]")
    g.add_argument("--crop-rotate", action=flag, default=None, help="[on]")
    g.add_argument("--crop-driving-video", choices=list(DRIVING_CROP), default=None,
                   help="[auto: crop non-square videos]")
    g.add_argument("--driving-crop-scale", type=float, default=None, help="[2.2]")
    g.add_argument("--driving-crop-vy-ratio", type=float, default=None, help="[-0.1]")
    g.add_argument("--source-max-dim", type=int, default=None, help="[1280]")
    g.add_argument("--face-index", type=int, default=None, help="which source face, in --face-order [0]")
    g.add_argument("--face-order", default=None, help="[large-small]")
    g.add_argument("--face-hint", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"))
    g.add_argument("--model-set", choices=list(MODEL_SETS), default=None,
                   help="animal: the official animal models and pipeline; needs --face-hint or --no-crop-source "
                        "(no animal face detector) [human]")
    g.add_argument("--smooth", action=flag, default=None,
                   help="steady motion: causal One-Euro filter over the driving motion (not official) [off]")
    g.add_argument("--smooth-min-cutoff", type=float, default=None, metavar="HZ",
                   help="with --smooth: cut-off while still, lower = steadier [1.0]")
    g.add_argument("--smooth-beta", type=float, default=None, metavar="B",
                   help="with --smooth: cut-off rise with speed, higher = less lag [0.3]")
    g.add_argument("--source-video-smoothing", type=float, default=None, metavar="VARIANCE",
                   help="source video: official driving_smooth_observation_variance, larger = smoother, 0 = off "
                        "[3e-07]")
    g.add_argument("--source-video-eye-retargeting", action=flag, default=None,
                   help="source video: every frame's eyes as open as in its first frame (official) [off]")
    g.add_argument("--fps-and-audio-from-driving", action=flag, default=None,
                   help="source video: take the output's fps and audio from the driving video, not the source [off]")
    g.add_argument("--crf", type=int, default=None,
                   help="H.264 quality, 0..51 (lower: better and larger; default: the encoder speed's, 18 for smallest, "
                        "19 for balanced and fastest)")
    g.add_argument("--encoder-speed", choices=tuple(ENCODER_SPEEDS), default=None,
                   help="H.264 encoder at equal quality: smallest = fewest bytes, most server CPU (libx264 veryfast); "
                        "balanced (superfast) = ~0.7x the CPU, ~2.2x the bytes; fastest (ultrafast) = ~0.4x the CPU, "
                        "~3x the bytes [fastest]")
    if mp4:  # live streams take --audio as a voice file instead
        g.add_argument("--audio", action=flag, default=None,
                       help="mux the audio (the driving video's or voice's; a source video's) [on]")
    g.add_argument("--low-latency", action=flag, default=None,
                   help="stream for playback while rendering: each chunk's frames arrive at most one chunk later [off]")


def _add_audio_options(g) -> None:
    flag = argparse.BooleanOptionalAction
    g.add_argument("--emotion", choices=list(EMOTIONS), default=None, help="the voice's emotion [neutral]")
    g.add_argument("--audio-steps", type=int, default=None, metavar="N",
                   help="DDIM sampling steps per window, 1-200; fewer = faster, rougher motion [50]")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight, 0-10 [2.0]")
    g.add_argument("--seed", type=int, default=None, help="noise seed: the same seed gives the same video [0]")
    g.add_argument("--head-motion", type=float, default=None, metavar="SHARE",
                   help="0-1: how much head motion comes from the voice; 0 keeps the source's pose [1.0]")
    g.add_argument("--eye-blinks", action=flag, default=None,
                   help="the eyes move with the speech (blinks, gaze kept ahead); off: the source's eyes [on]")
    g.add_argument("--eye-open", type=float, nargs=2, default=None, metavar=("LEFT", "RIGHT"),
                   help="eye openness the motion is generated for, 0-2 [0.9 0.9]")
    g.add_argument("--eye-ball", type=float, nargs=6, default=None, metavar="V",
                   help="iris offsets the motion is generated for (Ditto's 6 values, -1-1) [centred: 0 ...]")


AUDIO_FLAGS = {"emotion": "emotion", "audio_steps": "sampling_steps", "guidance": "guidance", "seed": "seed",
               "head_motion": "head_motion", "eye_blinks": "eye_blinks", "eye_open": "eye_open",
               "eye_ball": "eye_ball"}


def audio_kwarg(args) -> dict | None:
    """``PortraitClient.animate(audio_options=...)`` from the driving-voice flags (None: none given). The flags
    without a voice as --driving are refused rather than silently ignored."""
    values = {name: getattr(args, flag) for flag, name in AUDIO_FLAGS.items() if getattr(args, flag) is not None}
    if values and (args.driving is None or args.driving.suffix.lower() not in AUDIO_SUFFIXES):
        given = ", ".join("--" + flag.replace("_", "-") for flag, name in AUDIO_FLAGS.items() if name in values)
        raise ValueError(f"{given} apply to a driving voice: give --driving a sound file "
                         f"({' '.join(AUDIO_SUFFIXES)})")
    return values or None


OPTION_NAMES = ("relative_motion", "driving_option", "driving_multiplier", "animation_region", "stitching",
                "eye_retargeting", "lip_retargeting", "normalize_lip", "paste_back", "crop_source", "crop_scale",
                "crop_vy_ratio", "crop_rotate", "crop_driving_video", "driving_crop_scale", "driving_crop_vy_ratio",
                "source_max_dim", "face_index", "face_order", "face_hint", "model_set", "source_video_smoothing",
                "source_video_eye_retargeting", "fps_and_audio_from_driving")
SMOOTHING_FLAGS = ("smooth", "smooth_min_cutoff", "smooth_beta")  # -> options.smoothing (``smoothing_kwarg``)


def parser(orchestrator_options: bool = True) -> argparse.ArgumentParser:
    """The command line; ``orchestrator_options`` False leaves the orchestrator's flags out of ``up`` (they import
    the server's modules, which the other commands do not need)."""
    p = argparse.ArgumentParser(prog="liveportrait", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("animate", help="animate a portrait")
    _add_server(a)
    a.add_argument("--source", "-s", type=Path, required=True,
                   help="portrait image, or a video (.mp4, .mov ...: video-to-video)")
    a.add_argument("--driving", "-d", type=Path, default=None,
                   help="driving video, image, motion template or voice (.wav .mp3 .m4a .aac .ogg .opus .flac: "
                        "speech animates the portrait at 25 fps, the audio muxed)")
    a.add_argument("--keyframes", type=Path, default=None,
                   help="instead of --driving: keyframes JSON (edits interpolated over time; see client/edits.py)")
    a.add_argument("--output", "-o", type=Path, required=True, help="MP4 to write")
    _add_animation_options(a)
    _add_audio_options(a.add_argument_group("driving voice (--driving speech.wav; defaults: Ditto's)"))
    add_face_options(a.add_argument_group("several faces (default: one face, --face-index / --face-hint)"))
    _add_edit_options(a.add_argument_group("edit applied to every frame (AnimationOptions.edit; ranges: the "
                                           "official sliders)"))

    ed = sub.add_parser("edit", help="edit a portrait (EditPortrait): eyes, lips, head pose, expression sliders")
    _add_server(ed)
    ed.add_argument("--source", "-s", type=Path, required=True, help="portrait image")
    ed.add_argument("--output", "-o", type=Path, required=True, help="image to write (.png or .jpg)")
    ed.add_argument("--session", default=None, help="session id of an earlier edit of the same source")
    ed.add_argument("--jpeg-quality", type=int, default=None, help="[95] when the output is .jpg")
    g = ed.add_argument_group("source options")
    flag = argparse.BooleanOptionalAction
    g.add_argument("--crop-source", action=flag, default=None, help="detect and crop the face [on]")
    g.add_argument("--crop-scale", type=float, default=None, help="[2.3]")
    g.add_argument("--face-index", type=int, default=None, help="[0]")
    g.add_argument("--face-order", default=None, help="[large-small]")
    g.add_argument("--face-hint", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"))
    g.add_argument("--stitching", action=flag, default=None, help="[on]")
    g.add_argument("--paste-back", action=flag, default=None, help="[on]")
    _add_edit_options(ed.add_argument_group("edit (unset: unchanged; ranges: the official sliders)"))

    lv = sub.add_parser("live", help="live animation (AnimateStream): a camera, or a video played as one in real "
                                     "time, animates the portrait frame by frame; prints latency, fps and drops")
    _add_server(lv)
    lv.add_argument("--source", "-s", type=Path, required=True, help="portrait image")
    lv.add_argument("--driving", "-d", type=Path, default=None, help="a video played as a camera at its own fps")
    lv.add_argument("--camera", type=int, default=None, metavar="N", help="camera N (OpenCV), instead of --driving")
    lv.add_argument("--audio", dest="voice", type=Path, default=None, metavar="SPEECH",
                    help="voice mode: a sound file streamed at real time drives the portrait (25 fps); prints the "
                         "first frame's delay after the voice starts and the audio-to-frame delay p50/p95")
    lv.add_argument("--microphone", nargs="?", const="default", default=None, metavar="DEVICE",
                    help="voice mode from a microphone (PulseAudio or ALSA through PyAV) [default device]")
    lv.add_argument("--drop-late-frames", action="store_true",
                    help="voice mode: skip frames that fall more than 0.4 s behind the voice (real-time pacing on a "
                         "server slower than real time) [off: every frame, however late]")
    lv.add_argument("--output", "-o", type=Path, default=None, help="MP4 of the animated frames")
    lv.add_argument("--show", action="store_true", help="show the animated frames in a window (OpenCV GUI)")
    lv.add_argument("--fps", type=float, default=None, help="send at this rate [the video's or camera's]")
    lv.add_argument("--loop", action="store_true", help="replay --driving until --seconds / --frames / Ctrl-C")
    lv.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    lv.add_argument("--frames", type=int, default=None, help="stop after sending this many frames")
    lv.add_argument("--input-format", choices=["jpeg", "i420"], default="jpeg",
                    help="how frames travel to the server [jpeg]")
    lv.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    _add_animation_options(lv, mp4=False)
    _add_audio_options(lv.add_argument_group("voice mode (--audio / --microphone; defaults: Ditto's online mode, "
                                             "10 sampling steps)"))
    _add_edit_options(lv.add_argument_group("edit applied to every frame (AnimationOptions.edit)"))

    e = sub.add_parser("extract-motion", help="driving video -> motion template (.pb or .json)")
    _add_server(e)
    e.add_argument("video", type=Path)
    e.add_argument("--output", "-o", type=Path, required=True)
    e.add_argument("--crop-driving-video", choices=list(DRIVING_CROP), default="auto")

    d = sub.add_parser("detect", help="faces of an image")
    _add_server(d)
    d.add_argument("image", type=Path)
    d.add_argument("--json", action="store_true", help="print the JSON document")
    d.add_argument("--ordering", default="", help="[large-small]")

    h = sub.add_parser("health", help="is the service SERVING")
    _add_server(h)

    w = sub.add_parser("web", help="web page (Gradio) that calls the service's gRPC API: animate, edit, faces")
    _add_server(w)
    w.add_argument("--port", type=int, default=7860, help="HTTP port of the page [7860]")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1; 0.0.0.0: all]")

    add_gateway_parser(sub)

    c = sub.add_parser("convert-template", help="official .pkl (or .pb/.json) -> .pb or .json")
    c.add_argument("source", type=Path)
    c.add_argument("destination", type=Path)

    for name, help_text in (("up", "run Triton + orchestrator locally until Ctrl-C"),
                            ("demo", "run the local stack, animate a portrait, write the MP4, stop")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--profile", choices=["tiny", "full"], default="tiny")
        s.add_argument("--weights", default="synthetic", help="official weights directory [synthetic]")
        s.add_argument("--face-stack", choices=["mediapipe", "official"], default="mediapipe",
                       help="face detection and landmarks: MediaPipe (default), or the official InsightFace + "
                            "LivePortrait models when their files are in the weights directory")
        s.add_argument("--port", type=int, default=50051 if name == "up" else 0,
                       help="orchestrator gRPC port (0: any free port)")
        s.add_argument("--metrics-port", type=int, default=9100 if name == "up" else 0,
                       help="orchestrator metrics port (0, or one in use: a free one, printed)")
        if name == "up":
            s.add_argument("--web", action="store_true", help="also serve the web page (liveportrait web)")
            s.add_argument("--animal", action="store_true",
                           help="also export and serve the animal models (requests with --model-set animal)")
            s.add_argument("--audio", action="store_true",
                           help="also export and serve the audio-to-motion models (speech drives the portrait)")
            s.add_argument("--web-port", type=int, default=7860,
                           help="HTTP port of the web page [7860; 0: any free port, printed]")
            if orchestrator_options:
                from orchestrator.embedded import SET_BY_THE_STACK
                from orchestrator.server import add_options

                g = s.add_argument_group("orchestrator options (those of liveportrait-orchestrator, passed on; "
                                         "defaults: its LIVEPORTRAIT_* environment variables)")
                s.set_defaults(orchestrator_options=add_options(g, exclude=SET_BY_THE_STACK))
        if name == "demo":
            s.add_argument("--output", "-o", type=Path, default=Path("artifacts/demo.mp4"))
            s.add_argument("--source", type=Path, default=None, help="portrait [skimage.data.astronaut()]")
            s.add_argument("--driving", type=Path, default=None, help="driving video/image/template "
                                                                      "[a generated head turn + blink]")
            s.add_argument("--frames", type=int, default=50, help="frames of the generated motion [50]")
    return p


def _add_edit_options(g) -> None:
    from orchestrator.edit import FIELDS

    for f in FIELDS:
        g.add_argument("--" + f.name.replace("_", "-"), type=float, default=None, dest="edit_" + f.name,
                       metavar="V", help=f"[{f.low:g}, {f.high:g}] {f.meaning} ({f.origin.split()[0]})")


def _edit_values(args) -> dict:
    return {k[5:]: v for k, v in vars(args).items() if k.startswith("edit_") and v is not None}


def _client(args) -> PortraitClient:
    return PortraitClient(args.server or default_target(), args.ca, args.api_key, args.cert, args.key)


def cmd_animate(args) -> int:
    options = {name: getattr(args, name) for name in OPTION_NAMES}
    if (args.driving is None) == (args.keyframes is None):
        raise ValueError("give one of --driving and --keyframes")
    if args.keyframes is not None:
        options["keyframes"] = args.keyframes
    options["edit"] = _edit_values(args) or None
    options["smoothing"] = smoothing_kwarg(args.smooth, args.smooth_min_cutoff, args.smooth_beta)
    options["audio_options"] = audio_kwarg(args)
    options["faces"], options["face_drivings"] = faces_kwargs(args.all_faces, args.faces, args.face_box,
                                                              args.face_driving)
    bar = ProgressBar()
    with _client(args) as client:
        summary = client.animate(args.source, args.driving, args.output, on_progress=bar, timeout=args.timeout,
                                 crf=args.crf, audio=args.audio, low_latency=args.low_latency,
                                 encoder_speed=args.encoder_speed, **options)
    bar.done()
    print_summary(summary, args.output)
    return 0


def smoothing_kwarg(smooth: bool | None, min_cutoff: float | None, beta: float | None) -> dict | None:
    """``PortraitClient.animate(smoothing=...)`` from the --smooth flags (None: not sent, the server's default: off).
    --smooth-min-cutoff / --smooth-beta without --smooth are refused rather than silently ignored."""
    if not smooth:
        if min_cutoff is not None or beta is not None:
            raise ValueError("--smooth-min-cutoff and --smooth-beta need --smooth")
        return None if smooth is None else {"enabled": False}
    return {"min_cutoff_hz": min_cutoff, "beta": beta}


def cmd_edit(args) -> int:
    image_format = "jpeg" if args.output.suffix.lower() in (".jpg", ".jpeg") else "png"
    source_options = {name: getattr(args, name) for name in ("crop_source", "crop_scale", "face_index", "face_order",
                                                             "face_hint", "stitching", "paste_back")}
    with _client(args) as client:
        result = client.edit(args.source, _edit_values(args), session_id=args.session, output=args.output,
                             format=image_format, jpeg_quality=args.jpeg_quality, timeout=args.timeout,
                             **source_options)
    print(f"wrote {args.output}: {result.width}x{result.height} in {result.seconds * 1000:.0f} ms "
          f"(session {result.session_id}, {'reused' if result.session_reused else 'new'})")
    print("stages: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    for warning in result.warnings:
        print(f"WARNING: {warning}")
    return 0


def cmd_live(args) -> int:
    import asyncio

    from . import live_cli
    from .api import AsyncPortraitClient

    live_cli.check_options(args)
    options = {name: getattr(args, name) for name in OPTION_NAMES if name not in live_cli.VIDEO_ONLY}
    options["edit"] = _edit_values(args) or None
    options["smoothing"] = smoothing_kwarg(args.smooth, args.smooth_min_cutoff, args.smooth_beta)
    options["voice"] = live_cli.voice_kwarg(args, AUDIO_FLAGS)

    async def main() -> None:
        async with AsyncPortraitClient(args.server or default_target(), args.ca, args.api_key, args.cert,
                                       args.key) as client:
            await live_cli.run(client, args, options)

    asyncio.run(main())
    return 0


def cmd_extract(args) -> int:
    with _client(args) as client:
        template = client.extract_motion(args.video, args.crop_driving_video, timeout=args.timeout)
    write_template(template, args.output)
    print(f"wrote {args.output}: {template.n_frames} frames at {template.fps.num}/{template.fps.den} fps")
    return 0


def cmd_detect(args) -> int:
    with _client(args) as client:
        response = client.detect(args.image, args.ordering, timeout=args.timeout)
    document = {"faces": [face_json(f) for f in response.faces]}
    if args.json:
        print(json.dumps(document))
    else:
        print(f"{len(response.faces)} face(s) in {args.image} ({response.width}x{response.height})")
        for i, face in enumerate(document["faces"]):
            print(f"  {i}: box {face['box']} score {face['score']} eye_ratio {face['eye_ratio']} "
                  f"lip_ratio {face['lip_ratio']}")
    return 0


def face_json(face: pb.Face) -> dict:
    points = list(face.landmarks)
    return {"box": [round(v, 2) for v in face.box], "score": round(face.score, 4),
            "landmarks": [[round(points[i], 2), round(points[i + 1], 2)] for i in range(0, len(points), 2)],
            "eye_ratio": [round(v, 4) for v in face.eye_ratio], "lip_ratio": round(face.lip_ratio, 4)}


def cmd_health(args) -> int:
    with _client(args) as client:
        status = client.health(timeout=args.timeout or 5.0)
    print(status)
    return 0 if status == "SERVING" else 1


def cmd_convert(args) -> int:
    template = convert(args.source, args.destination)
    print(f"wrote {args.destination}: {template.n_frames} frames at {template.fps.num}/{template.fps.den} fps, "
          f"eye/lip ratios {'yes' if template.frames and template.frames[0].eye_ratio else 'no'}")
    return 0


COMMANDS = {"animate": cmd_animate, "edit": cmd_edit, "extract-motion": cmd_extract, "detect": cmd_detect, "health": cmd_health,
            "convert-template": cmd_convert, "up": cmd_up, "demo": cmd_demo, "web": cmd_web, "live": cmd_live,
            "gateway": cmd_gateway}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(orchestrator_options=argv[:1] == ["up"]).parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except grpc.RpcError as exc:
        print(f"\nerror: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (TemplateError, ValueError, OSError) as exc:  # a local input: missing, unreadable or refused
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the local stack did not start (StackError, TritonStartError)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
