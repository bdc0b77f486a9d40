"""What each ``liveportrait`` command does with its parsed flags (the service calls; ``up``, ``demo`` and ``web`` are
in ``cli_stack.py``, ``gateway`` in ``gateway/cli.py``)."""
from __future__ import annotations

import json

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .api import PortraitClient, default_target
from .cli_options import AUDIO_FLAGS, LIVE_OPTION_NAMES, OPTION_NAMES, edit_values
from .console import ProgressBar, print_summary
from .faces import faces_kwargs
from .messages import AUDIO_SUFFIXES
from .templates import convert, write_template


def audio_kwarg(args) -> dict | None:
    """``PortraitClient.animate(audio_options=...)`` from the driving-voice flags (None: none given). The flags
    without a voice as --driving are refused rather than silently ignored."""
    values = {name: getattr(args, flag) for flag, name in AUDIO_FLAGS.items() if getattr(args, flag) is not None}
    if values and (args.driving is None or args.driving.suffix.lower() not in AUDIO_SUFFIXES):
        given = ", ".join("--" + flag.replace("_", "-") for flag, name in AUDIO_FLAGS.items() if name in values)
        raise ValueError(f"{given} apply to a driving voice: give --driving a sound file "
                         f"({' '.join(AUDIO_SUFFIXES)})")
    return values or None


def smoothing_kwarg(smooth: bool | None, min_cutoff: float | None, beta: float | None) -> dict | None:
    """``PortraitClient.animate(smoothing=...)`` from the --smooth flags (None: not sent, the server's default: off).
    --smooth-min-cutoff / --smooth-beta without --smooth are refused rather than silently ignored."""
    if not smooth:
        if min_cutoff is not None or beta is not None:
            raise ValueError("--smooth-min-cutoff and --smooth-beta need --smooth")
        return None if smooth is None else {"enabled": False}
    return {"min_cutoff_hz": min_cutoff, "beta": beta}


def _client(args) -> PortraitClient:
    return PortraitClient(args.server or default_target(), args.ca, args.api_key, args.cert, args.key)


def cmd_animate(args) -> int:
    options = {name: getattr(args, name) for name in OPTION_NAMES}
    if (args.driving is None) == (args.keyframes is None):
        raise ValueError("give one of --driving and --keyframes")
    if args.keyframes is not None:
        options["keyframes"] = args.keyframes
    options["edit"] = edit_values(args) or None
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


def cmd_edit(args) -> int:
    image_format = "jpeg" if args.output.suffix.lower() in (".jpg", ".jpeg") else "png"
    source_options = {name: getattr(args, name) for name in ("crop_source", "crop_scale", "face_index", "face_order",
                                                             "face_hint", "stitching", "paste_back")}
    with _client(args) as client:
        result = client.edit(args.source, edit_values(args), session_id=args.session, output=args.output,
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
    options = {name: getattr(args, name) for name in LIVE_OPTION_NAMES}
    options["edit"] = edit_values(args) or None
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
        response = client.detect(args.image, args.face_order, timeout=args.timeout)
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
