"""``liveportrait gateway``: serve the WebRTC gateway (WHIP signalling, ``/metrics``) in front of an orchestrator.

    liveportrait gateway --target orchestrator:50051 --port 8080 --ice-server stun:stun.example.org:3478 \\
        --ice-server turn:turn.example.org:3478 --ice-username u --ice-credential p --max-sessions 16

Environment defaults: ``LIVEPORTRAIT_SERVER`` (--target), ``LIVEPORTRAIT_GATEWAY_ICE_SERVERS`` (comma-separated
URLs), ``LIVEPORTRAIT_GATEWAY_ICE_USERNAME`` and ``LIVEPORTRAIT_GATEWAY_ICE_CREDENTIAL`` (the TURN credentials: keep
them out of the command line, e.g. from a Kubernetes Secret).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    g = sub.add_parser("gateway", help="WebRTC gateway: browsers (WHIP) send a camera track (or a microphone "
                                       "track: ?mode=voice) and get the animated portrait back as a video track, "
                                       "or watch a session over WHEP; needs the webrtc extra")
    env = os.environ.get
    g.add_argument("--target", "--server", dest="target", default=None,
                   help="orchestrator HOST:PORT (default $LIVEPORTRAIT_SERVER or localhost:50051)")
    g.add_argument("--ca", type=Path, default=None, help="CA certificates for TLS to the orchestrator")
    g.add_argument("--cert", type=Path, default=None, help="client certificate (PEM) for mutual TLS")
    g.add_argument("--key", type=Path, default=None, help="the client certificate's private key (PEM)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1; 0.0.0.0: all]")
    g.add_argument("--port", type=int, default=8080, help="HTTP port of the signalling and /metrics [8080]")
    g.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS with this certificate (PEM)")
    g.add_argument("--tls-key", type=Path, default=None, help="... and its private key (PEM)")
    add_ice_options(g)
    g.add_argument("--max-sessions", type=int, default=int(env("LIVEPORTRAIT_GATEWAY_MAX_SESSIONS", "8")),
                   help="peer connections at once (one more: 503 with Retry-After) [8]")
    g.add_argument("--max-viewers", type=int, default=int(env("LIVEPORTRAIT_GATEWAY_MAX_VIEWERS", "4")),
                   help="WHEP viewers of one session at once (POST /whep?session=ID; one more: 503) [4]")
    g.add_argument("--max-session-seconds", type=float,
                   default=float(env("LIVEPORTRAIT_GATEWAY_MAX_SESSION_SECONDS", "1800")),
                   help="a session is ended after this long [1800]")
    g.add_argument("--udp-ports", default=os.environ.get("LIVEPORTRAIT_GATEWAY_UDP_PORTS"), metavar="FIRST-LAST",
                   help="ICE (media) UDP ports in this range, e.g. 40000-40099 (what a firewall or hostNetwork opens) "
                        "[any free port]")
    g.add_argument("--fps", type=float, default=25.0,
                   help="driving frames per second sent to the orchestrator unless the offer's ?fps= says [25]")
    g.add_argument("--input-format", choices=["jpeg", "i420"], default="jpeg",
                   help="driving frames to the orchestrator (i420: the camera's decoded planes as they are, ~10x "
                        "the bytes of JPEG; for a gateway beside its orchestrator) [jpeg]")
    g.add_argument("--output-format", choices=["jpeg", "i420"], default="jpeg",
                   help="animated frames from the orchestrator (i420: raw planes, no JPEG encode there nor decode "
                        "here, ~15x the bytes) [jpeg]")
    return g


def add_ice_options(g) -> None:
    """The STUN/TURN flags (``liveportrait gateway`` and the web page's gateway); ``ice_config`` reads them."""
    g.add_argument("--ice-server", action="append", default=None, metavar="URL",
                   help="STUN/TURN server (stun:, turn:, turns: URL; repeat for several) used by the gateway and "
                        "announced to peers [$LIVEPORTRAIT_GATEWAY_ICE_SERVERS, comma-separated]")
    g.add_argument("--ice-username", default=os.environ.get("LIVEPORTRAIT_GATEWAY_ICE_USERNAME"),
                   help="TURN username [$LIVEPORTRAIT_GATEWAY_ICE_USERNAME]")
    g.add_argument("--ice-credential", default=os.environ.get("LIVEPORTRAIT_GATEWAY_ICE_CREDENTIAL"),
                   help="TURN credential (prefer the environment) [$LIVEPORTRAIT_GATEWAY_ICE_CREDENTIAL]")


def ice_config(args) -> list:
    """The ``IceServer``s of ``add_ice_options``' flags (or their environment variables); ValueError in words."""
    from .signalling import ice_servers

    urls = args.ice_server or [u for u in os.environ.get("LIVEPORTRAIT_GATEWAY_ICE_SERVERS", "").split(",") if u]
    return ice_servers(urls, args.ice_username, args.ice_credential)


def cmd_gateway(args) -> int:
    import uvicorn

    from ..channel import default_target
    from .app import GatewayConfig, gateway_app
    from .ports import port_range

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    config = GatewayConfig(target=args.target or default_target(), root_certificates=args.ca, client_cert=args.cert,
                           client_key=args.key, ice_servers=ice_config(args), max_sessions=args.max_sessions,
                           max_viewers=args.max_viewers,
                           max_session_seconds=args.max_session_seconds, default_fps=args.fps,
                           udp_ports=port_range(args.udp_ports) if args.udp_ports else None,
                           input_format=args.input_format, output_format=args.output_format)
    print(f"gateway: http{'s' if args.tls_cert else ''}://{args.host}:{args.port}/whip -> {config.target}",
          flush=True)
    uvicorn.run(gateway_app(config), host=args.host, port=args.port, log_level="warning", loop="asyncio",
                ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m client.gateway.cli ...``: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="liveportrait")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gateway", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cmd_gateway(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
