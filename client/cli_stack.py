"""``liveportrait up``, ``demo`` and ``web``: the service (and its web page) run on this machine."""
from __future__ import annotations

import time
from pathlib import Path

from .api import PortraitClient, default_target
from .console import ProgressBar, print_summary


def _stack(args):
    from orchestrator.embedded import EmbeddedStack, StackConfig
    from orchestrator.triton_process import free_port

    return EmbeddedStack(StackConfig(profile=args.profile, weights=args.weights, port=args.port or free_port(),
                                     metrics_port=args.metrics_port or free_port(), face_stack=args.face_stack,
                                     animal=getattr(args, "animal", False)))


def cmd_up(args) -> int:
    import signal

    stack = _stack(args)
    with stack, _web(args, stack) as web:
        if args.weights == "synthetic":
            print("NOTE: synthetic weights (the output is structured noise, not a face); pass --weights DIR with "
                  "the official LivePortrait weights and --profile full for real results.")
        print(f"ready: liveportrait animate --server {stack.target} --source S --driving D -o out.mp4")
        if web:
            print(f"web page: {web.url} (log {web.log_file})")
        print("press Ctrl-C to stop")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while True:  # a child that dies is restarted (with backoff) and reported
                time.sleep(1.0)
                stack.supervise()
        except KeyboardInterrupt:
            print("\nstopping ...")
    print("stopped")
    return 0


def _web(args, stack):
    """``up --web``: the web page as a child process beside the stack, stopped with it."""
    import contextlib

    if not args.web:
        return contextlib.nullcontext()
    from .web import WebProcess

    print("starting the web page ...")
    return WebProcess(stack.target, stack.config.work_dir / "web.log", port=args.web_port)


def cmd_web(args) -> int:
    from .web import serve

    serve(args.server or default_target(), host=args.host, port=args.port, root_certificates=args.ca,
          timeout=args.timeout, api_key=args.api_key, client_cert=args.cert, client_key=args.key)
    return 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def cmd_demo(args) -> int:
    from client.demo_motion import demo_template

    source = args.source or _astronaut(args.output.parent)
    driving = args.driving or demo_template(args.frames)
    with _stack(args) as stack:
        bar = ProgressBar()
        with PortraitClient(stack.target) as client:
            summary = client.animate(source, driving, args.output, on_progress=bar)
        bar.done()
    print_summary(summary, args.output)
    return 0


def _astronaut(directory: Path) -> Path:
    """skimage.data.astronaut() (public domain) as a PNG next to the output."""
    import cv2
    from skimage import data

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path
