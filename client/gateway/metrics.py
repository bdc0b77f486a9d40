"""Prometheus metrics of the gateway (``liveportrait_gateway_`` prefix, base units), in its own registry, served at
the gateway's ``/metrics``."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("liveportrait_gateway_sessions", "Peer connections held (each one live stream)",
                              registry=r)
        self.offers = Counter("liveportrait_gateway_offers_total", "WHIP offers answered, by HTTP status",
                              ["status"], registry=r)
        self.viewers = Gauge("liveportrait_gateway_viewers", "WHEP viewers held (each one peer connection)",
                             registry=r)
        self.viewer_offers = Counter("liveportrait_gateway_viewer_offers_total",
                                     "WHEP offers (viewers) answered, by HTTP status", ["status"], registry=r)
        self.ended = Counter("liveportrait_gateway_sessions_ended_total", "Sessions ended, by why", ["reason"],
                             registry=r)
        self.frames = Counter("liveportrait_gateway_frames_total",
                              "Video frames received from peers (in), sent to the orchestrator (driving) and sent "
                              "back animated (out)", ["direction"], registry=r)
        self.dropped = Counter("liveportrait_gateway_frames_dropped_total",
                               "Frames dropped rather than queued: over the stream's rate (rate), replaced before "
                               "the orchestrator took them (client), stale on the orchestrator (server), replaced "
                               "before the peer's encoder took them (output)", ["where"], registry=r)
        self.latency = Histogram("liveportrait_gateway_frame_latency_seconds",
                                 "A driving frame's arrival at the gateway (voice mode: the audio of its time) -> "
                                 "its animated frame ready to send", buckets=LATENCY_BUCKETS, registry=r)
        self.audio = Counter("liveportrait_gateway_audio_seconds_total",
                             "Voice mode: seconds of audio received from peers (in) and sent to the orchestrator "
                             "(driving)", ["direction"], registry=r)
