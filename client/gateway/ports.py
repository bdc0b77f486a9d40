"""ICE's UDP ports within a range (``--udp-ports 40000-40099``): what a firewall or a Kubernetes ``hostNetwork``
deployment opens for the media path.

aioice binds each host candidate's socket to port 0 (any free port). ``restrict_udp_ports`` wraps the running event
loop's ``create_datagram_endpoint`` so that a bind to port 0 takes a free port of the range instead (tried in a
random order; ``OSError`` when all are taken, which fails that candidate as a full port space would).
"""
from __future__ import annotations

import asyncio
import random


def port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise ValueError(f"--udp-ports {text!r} is not FIRST-LAST (e.g. 40000-40099)") from None
    if not 1024 <= first <= last <= 65535:
        raise ValueError(f"--udp-ports {text!r}: the ports must be in 1024..65535, first <= last")
    return first, last


def restrict_udp_ports(loop: asyncio.AbstractEventLoop, first: int, last: int) -> None:
    original = loop.create_datagram_endpoint

    async def create_datagram_endpoint(protocol_factory, local_addr=None, **kwargs):
        if local_addr is None or local_addr[1] != 0:
            return await original(protocol_factory, local_addr=local_addr, **kwargs)
        ports = list(range(first, last + 1))
        random.shuffle(ports)
        for port in ports:
            try:
                return await original(protocol_factory, local_addr=(local_addr[0], port), **kwargs)
            except OSError:
                continue
        raise OSError(f"no free UDP port in {first}-{last} on {local_addr[0]}")

    loop.create_datagram_endpoint = create_datagram_endpoint
