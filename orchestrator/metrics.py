"""Prometheus metrics of the orchestrator (``liveportrait_`` prefix, base units), in a registry per server."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
LIVE_LATENCY_BUCKETS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("liveportrait_requests_total", "RPCs handled, by method and gRPC status code",
                                ["method", "code"], registry=r)
        self.request_latency = Histogram("liveportrait_request_duration_seconds", "RPC wall time, by method",
                                         ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_latency = Histogram("liveportrait_stage_duration_seconds",
                                       "Time spent in a pipeline stage per request", ["stage"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.frames = Counter("liveportrait_frames_rendered_total",
                              "Animated frames rendered (one per face: frames x faces)", registry=r)
        self.in_flight = Gauge("liveportrait_requests_in_flight", "Requests being processed", registry=r)
        self.queued = Gauge("liveportrait_requests_queued", "Requests waiting for a processing slot", registry=r)
        self.triton_latency = Histogram("liveportrait_triton_request_duration_seconds", "Triton call latency",
                                        ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.triton_errors = Counter("liveportrait_triton_errors_total", "Failed Triton calls", ["model"],
                                     registry=r)
        self.triton_bytes = Counter("liveportrait_triton_bytes_total", "Tensor bytes exchanged with Triton",
                                    ["direction"], registry=r)
        # per API key name (a bounded label set: the names in the key file; keys themselves never appear)
        self.key_requests = Counter("liveportrait_key_requests_total", "RPCs by API key name and admission outcome "
                                    "(ADMITTED, UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE: "
                                    "the shared quota store did not answer)",
                                    ["key", "outcome"], registry=r)
        self.key_frames = Counter("liveportrait_key_frames_total", "Frames rendered, by API key name", ["key"],
                                  registry=r)
        self.client_bytes = Counter("liveportrait_client_bytes_total",
                                    "Payload bytes received from (in) and sent to (out) clients", ["direction"],
                                    registry=r)
        # live animation (AnimateStream)
        self.live_streams = Gauge("liveportrait_live_streams", "Live animation streams open", registry=r)
        self.live_frame_latency = Histogram(
            "liveportrait_live_frame_latency_seconds", "Live frames: from a driving frame's arrival to its animated "
            "frame's answer (the server's share of the capture-to-display latency)", buckets=LIVE_LATENCY_BUCKETS,
            registry=r)
        self.live_frames = Counter("liveportrait_live_frames_total", "Live driving frames by outcome: rendered, "
                                   "dropped (stale: a newer frame arrived first), no_face", ["outcome"], registry=r)
        # the driving motion cache (pipeline/motion_cache.py; --motion-cache-bytes)
        self.motion_cache_hits = Counter("liveportrait_motion_cache_hits_total", "Driving videos whose motion came "
                                         "from the motion cache (no decode, tracking or motion extraction)", registry=r)
        self.motion_cache_misses = Counter("liveportrait_motion_cache_misses_total", "Driving videos looked up in "
                                           "the motion cache and not found", registry=r)
        self.motion_cache_evictions = Counter("liveportrait_motion_cache_evictions_total", "Motion cache entries "
                                              "dropped to make room (least recently used first)", registry=r)
        self.motion_cache_bytes = Gauge("liveportrait_motion_cache_bytes", "Bytes held by the motion cache",
                                        registry=r)

    def serve(self, port: int, address: str = "0.0.0.0"):
        """Expose /metrics on its own HTTP port; returns the server (``shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
