"""The load engine, reports and AnimatePortrait scenarios against a fake in-process PortraitAnimator.

The fake (a real grpc.aio server with canned streaming) exists to test the load generator itself; the real stack is
exercised in tests/test_load_tests.py.
"""
from __future__ import annotations

import asyncio
import csv
import json
import time

import grpc
import pytest

from load_tests.__main__ import main
from load_tests.engine import CLIENT_OVERLOAD, CUT_OFF, Bounds, ClosedLoop, OpenLoop, run_level
from load_tests.metrics import orchestrator_breakdown, parse, triton_breakdown
from load_tests.scenarios import AnimateCall, Scenario, build_payload, open_channel
from load_tests.stats import Outcome, percentiles_ms, summarise
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc


class FakeAnimator(pb_grpc.PortraitAnimatorServicer):
    """Streams progress, one video chunk per frame (``frame_s`` apart) and a summary; every ``fail_every``-th call
    fails with UNAVAILABLE before any output."""

    def __init__(self, frame_s: float, fail_every: int = 0):
        self.frame_s = frame_s
        self.fail_every = fail_every
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.received_chunks: list[int] = []

    async def AnimatePortrait(self, request_iterator, context):
        self.calls += 1
        call_number = self.calls
        setup, chunks = None, 0
        async for request in request_iterator:
            if request.WhichOneof("part") == "setup":
                setup = request.setup
            else:
                chunks += 1
        self.received_chunks.append(chunks)
        if self.fail_every and call_number % self.fail_every == 0:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "canned failure")
        driving = setup.WhichOneof("driving")
        frames = {"driving_template": setup.driving_template.n_frames, "driving_image": 1}.get(driving, 3)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            yield pb.AnimateResponse(progress=pb.Progress(stage=pb.RENDER, frames_total=frames))
            for i in range(frames):
                await asyncio.sleep(self.frame_s)
                yield pb.AnimateResponse(video=pb.VideoChunk(data=b"x" * 100, offset=i * 100))
            yield pb.AnimateResponse(summary=pb.Summary(frames=frames))
        finally:
            self.running -= 1


class FakeServer:
    def __init__(self, animator: FakeAnimator):
        self.animator = animator
        self.server = None
        self.target = ""

    async def __aenter__(self) -> "FakeServer":
        self.server = grpc.aio.server()
        pb_grpc.add_PortraitAnimatorServicer_to_server(self.animator, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"
        await self.server.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop(grace=None)


async def run_against_fake(animator: FakeAnimator, scenario: Scenario, load, bounds: Bounds):
    async with FakeServer(animator) as server, open_channel(server.target) as channel:
        call = AnimateCall(channel, build_payload(scenario), timeout_s=10)
        return await run_level(call, load, bounds)


def test_percentiles_follow_numpy_linear_interpolation():
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    p = percentiles_ms(samples)
    assert p["p50"] == pytest.approx(50.5)
    assert p["p99"] == pytest.approx(99.01)
    assert p["max"] == pytest.approx(100.0)
    assert percentiles_ms([])["p50"] is None


def test_summary_counts_only_successful_calls_in_throughput_and_latency():
    outcomes = [Outcome("OK", 1.0, 0.1, 5), Outcome("OK", 3.0, 0.2, 5), Outcome("UNAVAILABLE", 0.01)]
    stats = summarise(outcomes, wall_s=4.0)
    assert (stats.requests, stats.ok, stats.errors) == (3, 2, {"UNAVAILABLE": 1})
    assert stats.throughput_rps == pytest.approx(0.5)
    assert stats.frames_per_s == pytest.approx(2.5)
    assert stats.latency_ms["p50"] == pytest.approx(2000.0)
    assert stats.first_result_ms["max"] == pytest.approx(200.0)


def test_closed_loop_keeps_exactly_the_concurrency_in_flight_and_stops_at_the_duration():
    animator = FakeAnimator(frame_s=0.02)
    started = time.monotonic()
    stats, outcomes = asyncio.run(run_against_fake(animator, Scenario("template", frames=4), ClosedLoop(3),
                                                   Bounds(duration_s=1.0)))
    assert time.monotonic() - started < 3.0
    assert animator.max_running == 3
    assert stats.errors == {} and stats.ok == stats.requests == animator.calls
    # each call renders 4 frames of 20 ms: about 3 / 0.08 = 37 calls/s at most
    assert 10 <= stats.throughput_rps <= 40
    assert stats.frames_per_s == pytest.approx(4 * stats.throughput_rps, rel=1e-3)
    lat = stats.latency_ms
    assert 80 <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert all(o.first_result_s < o.latency_s for o in outcomes)
    assert 20 <= stats.first_result_ms["p50"] < lat["p50"]


def test_a_level_stops_after_max_requests():
    animator = FakeAnimator(frame_s=0.001)
    stats, _ = asyncio.run(run_against_fake(animator, Scenario("image"), ClosedLoop(4),
                                            Bounds(duration_s=30, max_requests=10)))
    assert stats.requests == animator.calls == 10
    assert stats.wall_s < 10


def test_open_loop_arrivals_are_poisson_at_the_rate_and_independent_of_latency():
    animator = FakeAnimator(frame_s=0.1)  # 0.3 s per call, arrivals every 50 ms on average: calls overlap
    stats, _ = asyncio.run(run_against_fake(animator, Scenario("video", frames=2), OpenLoop(20.0, seed=1),
                                            Bounds(duration_s=2.0)))
    assert 20 <= stats.requests <= 60  # Poisson(40)
    assert animator.max_running >= 3
    assert stats.ok == stats.requests
    assert all(n >= 1 for n in animator.received_chunks)  # the video travelled as driving_chunk messages


def test_open_loop_counts_arrivals_over_max_in_flight_as_client_overload():
    animator = FakeAnimator(frame_s=0.5)
    stats, _ = asyncio.run(run_against_fake(animator, Scenario("image"), OpenLoop(50.0, max_in_flight=2),
                                            Bounds(duration_s=0.5)))
    assert animator.max_running <= 2
    assert stats.errors.get(CLIENT_OVERLOAD, 0) >= 5


def test_errors_are_counted_by_grpc_status_code():
    animator = FakeAnimator(frame_s=0.001, fail_every=3)
    stats, _ = asyncio.run(run_against_fake(animator, Scenario("image"), ClosedLoop(1),
                                            Bounds(duration_s=30, max_requests=9)))
    assert stats.errors == {"UNAVAILABLE": 3}
    assert stats.ok == 6


def test_calls_still_running_after_the_drain_window_are_cut_off():
    animator = FakeAnimator(frame_s=1.0)
    started = time.monotonic()
    stats, _ = asyncio.run(run_against_fake(animator, Scenario("template", frames=10), ClosedLoop(2),
                                            Bounds(duration_s=0.2, drain_s=0.5)))
    assert time.monotonic() - started < 3.0
    assert stats.errors == {CUT_OFF: 2} and stats.ok == 0


@pytest.mark.parametrize("scenario", ["template", "video", "image"])
def test_run_command_writes_json_csv_and_table(scenario, tmp_path, capsys):
    async def serve_and_run():
        async with FakeServer(FakeAnimator(frame_s=0.01)) as server:
            argv = ["run", "--target", server.target, "--scenario", scenario, "--frames", "3",
                    "--concurrency", "1,2", "--rates", "10", "--duration", "0.5", "--report",
                    str(tmp_path / "r.json")]
            return await asyncio.to_thread(main, argv)

    assert asyncio.run(serve_and_run()) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scenario"] == scenario and report["machine"]["cores"] >= 1
    assert [lv["level"] for lv in report["levels"]] == ["c1", "c2", "r10"]
    expected_frames = {"template": 3, "video": 3, "image": 1}[scenario]
    for lv in report["levels"]:
        assert lv["ok"] > 0 and lv["errors"] == {}
        assert lv["throughput_rps"] > 0
        assert lv["frames_per_s"] == pytest.approx(expected_frames * lv["throughput_rps"], rel=1e-3)
        assert set(lv["latency_ms"]) >= {"p50", "p90", "p95", "p99"}
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["level"] for r in rows] == ["c1", "c2", "r10"]
    assert "p50 ms" in capsys.readouterr().out


TRITON_TEXT = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="warping_spade",version="1"} 10
nv_inference_request_success{model="render_u8",version="1"} 10
# TYPE nv_inference_count counter
nv_inference_count{model="warping_spade",version="1"} 10
nv_inference_count{model="render_u8",version="1"} 10
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="warping_spade",version="1"} 4
nv_inference_exec_count{model="render_u8",version="1"} 10
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="warping_spade",version="1"} 50000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="warping_spade",version="1"} 2000000
# TYPE nv_inference_compute_input_duration_us counter
nv_inference_compute_input_duration_us{model="warping_spade",version="1"} 0
# TYPE nv_inference_compute_output_duration_us counter
nv_inference_compute_output_duration_us{model="warping_spade",version="1"} 0
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="warping_spade",version="1"} 3
"""


def test_triton_breakdown_from_counter_deltas():
    before = parse(TRITON_TEXT)
    after = parse(TRITON_TEXT.replace("} 10\n", "} 30\n").replace("} 4\n", "} 9\n")
                  .replace("50000", "250000").replace("2000000", "6000000"))
    model = triton_breakdown(after.delta(before))["warping_spade"]
    assert model["requests"] == 20 and model["executions"] == 5
    assert model["avg_batch_size"] == pytest.approx(4.0)
    assert model["queue_ms_per_request"] == pytest.approx(10.0)
    assert model["compute_ms_per_request"] == pytest.approx(200.0)


def test_orchestrator_breakdown_reads_liveportrait_metrics():
    from orchestrator.metrics import Metrics
    from prometheus_client import generate_latest

    metrics = Metrics()
    before = parse(generate_latest(metrics.registry).decode())
    metrics.stage_latency.labels("render").observe(0.5)
    metrics.stage_latency.labels("render").observe(1.5)
    metrics.frames.inc(7)
    metrics.requests.labels("AnimatePortrait", "OK").inc()
    out = orchestrator_breakdown(parse(generate_latest(metrics.registry).decode()).delta(before))
    assert out["stages"]["render"] == {"count": 2, "mean_ms": 1000.0}
    assert out["frames_rendered"] == 7
    assert out["requests"] == {"AnimatePortrait:OK": 1}


def test_low_latency_scenarios_ask_for_low_latency_output():
    plain = build_payload(Scenario("template", frames=3)).messages[0].setup
    fast = build_payload(Scenario("template", frames=3, low_latency=True)).messages[0].setup
    assert not plain.output.HasField("low_latency")
    assert fast.output.low_latency
