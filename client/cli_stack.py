"""``liveportrait up``, ``demo`` and ``web``: the service (and its web page) run on this machine."""
from __future__ import annotations

import time
from pathlib import Path

from .api import PortraitClient, default_target
from .console import ProgressBar, print_summary


def _stack(args):
    from orchestrator.embedded import EmbeddedStack, StackConfig, orchestrator_argv
    from orchestrator.triton_process import free_port

    given = getattr(args, "orchestrator_options", ())  # `up`: the orchestrator's flags, passed on
    return EmbeddedStack(StackConfig(profile=args.profile, weights=args.weights, port=args.port or free_port(),
                                     metrics_port=args.metrics_port or free_port(), face_stack=args.face_stack,
                                     animal=getattr(args, "animal", False), audio=getattr(args, "audio", False),
                                     orchestrator_args=orchestrator_argv(given, args),
                                     drain_s=getattr(args, "drain_seconds", 30.0)))


def cmd_up(args) -> int:
    """Until Ctrl-C or SIGTERM; then the orchestrator drains (running requests finish within --drain-seconds) before
    everything stops. A second Ctrl-C stops at once."""
    import argparse
    import signal

    from orchestrator.config import check_options

    check_options(argparse.ArgumentParser(prog="liveportrait up", usage="liveportrait up [options]"), args)
    web_port = _web_port(args)
    stack = _stack(args)
    signal.signal(signal.SIGTERM, _interrupt)  # from here on, SIGTERM stops the children too
    web = None
    try:
        stack.start()
        web = _web(args, stack, web_port)
        _serve(args, stack, web)
    except KeyboardInterrupt:
        print(f"\nstopping: running requests may finish for up to {stack.config.drain_s:.0f} s (Ctrl-C again: stop "
              f"at once) ...", flush=True)
    finally:
        _stop(stack, web)
    print("stopped")
    return 0


def _stop(stack, web) -> None:
    """The orchestrator drains first (the web page's requests finish too), then the rest stops; a second Ctrl-C
    (or SIGTERM) stops everything at once."""
    try:
        stack.stop()
        if web:
            web.stop()
    except KeyboardInterrupt:
        stack.stop(timeout_s=0)
        if web:
            web.stop(timeout_s=0)


def _serve(args, stack, web) -> None:
    if args.weights == "synthetic":
        print("NOTE: synthetic weights (the output is structured noise, not a face); pass --weights DIR with "
              "the official LivePortrait weights and --profile full for real results.")
    credentials = (" --ca CA.pem" if args.tls_cert else "") + (" --api-key KEY" if args.api_keys else "")
    print(f"ready: liveportrait animate --server {stack.target}{credentials} --source S --driving D -o out.mp4")
    print(f"logs: {stack.config.log_dir}")
    if web:
        print(f"web page: {web.url} (log {web.log_file})")
    print("press Ctrl-C to stop", flush=True)
    while True:  # a child that dies is restarted (with backoff) and reported
        time.sleep(1.0)
        stack.supervise()


def _web_port(args) -> int:
    """``--web-port``, checked before anything starts: one in use is an error naming the flag; 0: a free one."""
    from orchestrator.embedded import StackError
    from orchestrator.ports import port_in_use
    from orchestrator.triton_process import free_port

    if not args.web:
        return args.web_port
    if not args.web_port:
        return free_port()
    if port_in_use("127.0.0.1", args.web_port):
        raise StackError(f"the web page's port {args.web_port} is in use (another `liveportrait up --web` or "
                         f"`liveportrait web`?); choose another with --web-port N (0: any free port)")
    return args.web_port


def _web(args, stack, port: int):
    """``up --web``: the web page as a child process beside the stack, stopped after it (None without ``--web``)."""
    if not args.web:
        return None
    from .web import WebProcess

    print("starting the web page ...")
    return WebProcess(stack.target, stack.config.log_dir / "web.log", port=port).start()


def cmd_web(args) -> int:
    from .web import serve

    from .gateway.cli import ice_config

    serve(args.server or default_target(), host=args.host, port=args.port, root_certificates=args.ca,
          timeout=args.timeout, api_key=args.api_key, client_cert=args.cert, client_key=args.key,
          ice_servers=ice_config(args))
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
