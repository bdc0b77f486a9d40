"""Benchmark of the served path against the same models in-process (a script, not a test).

    python -m load_tests.served_benchmark [--profile tiny] [--frames 48] [--concurrency 1 4]

* served: template-driven AnimatePortrait requests through the embedded stack (tritonserver + orchestrator):
  frames/s over all concurrent requests, per-frame latency (request time / frames), Triton bytes per frame;
* in-process: the same per-frame work (stitching + appearance + warping/decoding + uint8 conversion, batches of
  8) with onnxruntime on the repository's ONNX files, no encoding or paste-back; overhead = in-process fps / served;
* orchestrator RSS after driving videos of growing length (d0.mp4's frames, repeated).
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np

from client.api import PortraitClient
from client.demo_motion import demo_template
from orchestrator.embedded import EmbeddedStack, StackConfig
from orchestrator.triton_process import free_port


def portrait(path: Path) -> Path:
    from skimage import data

    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def served(stack: EmbeddedStack, source: Path, frames: int, concurrency: int) -> dict:
    template = demo_template(frames)

    def one(_):
        with PortraitClient(stack.target) as client:
            started = time.perf_counter()
            summary = client.animate(source, template, sink=_Null())
            return time.perf_counter() - started, summary

    with PortraitClient(stack.target) as client:  # warm-up
        client.animate(source, demo_template(8), sink=_Null())
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(concurrency)))
    wall = time.perf_counter() - started
    total = sum(s.frames for _, s in results)
    traffic = sum(s.triton_bytes_sent + s.triton_bytes_received for _, s in results)
    return {"fps": total / wall, "latency_ms": 1000 * np.mean([t / s.frames for t, s in results]),
            "bytes_per_frame": traffic / total}


def in_process(repository: Path, frames: int, concurrency: int, threads: int = 2) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(repository / name / "1" / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
                for name in ("stitching", "appearance_feature_extractor", "warping_spade", "postprocess_image")}
    rng = np.random.default_rng(0)
    source = rng.random((8, 3, 256, 256), np.float32)
    kp = rng.normal(0, 0.3, (8, 21, 3)).astype(np.float32)

    def batch(n: int) -> None:
        stitched = sessions["stitching"].run(None, {"kp_source": kp[:n], "kp_driving": kp[:n]})[0]
        feature = sessions["appearance_feature_extractor"].run(None, {"image": source[:n]})[0]
        image = sessions["warping_spade"].run(None, {"feature_3d": feature, "kp_source": kp[:n],
                                                     "kp_driving": stitched})[0]
        sessions["postprocess_image"].run(None, {"image": image})

    def request(_):
        started = time.perf_counter()
        for start in range(0, frames, 8):
            batch(min(8, frames - start))
        return time.perf_counter() - started

    batch(8)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(request, range(concurrency)))
    wall = time.perf_counter() - started
    return {"fps": concurrency * frames / wall, "latency_ms": 1000 * np.mean(times) / frames}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def test_video(path: Path, frames: int, size: int = 512) -> Path:
    """``frames`` frames of d0.mp4, played again from the start when it is shorter (an uncropped square driving
    video must show a face in its first frame)."""
    with av.open(str(Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "driving" / "d0.mp4")) as inp:
        source = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            image = np.ascontiguousarray(cv2.resize(source[i % len(source)], (size, size)))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def rss_vs_length(stack: EmbeddedStack, source: Path, lengths: list[int], work: Path) -> list[tuple[int, float]]:
    rows = []
    for frames in lengths:
        video = test_video(work / f"v{frames}.mp4", frames)
        peak = [0.0]

        def on_progress(_):
            peak[0] = max(peak[0], rss_mb(stack.orchestrator.pid))

        with PortraitClient(stack.target) as client:
            client.animate(source, video, sink=_Null(), on_progress=on_progress)
        rows.append((frames, peak[0]))
    return rows


class _Null:
    def write(self, data: bytes) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.served_benchmark")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--weights", default="synthetic")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 400])
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(StackConfig(
            profile=a.profile, weights=a.weights, port=free_port(), metrics_port=free_port())) as stack:
        work = Path(tmp)
        source = portrait(work / "astronaut.png")
        print("\n| concurrency | served fps | served ms/frame | in-process fps | in-process ms/frame | "
              "overhead (in-process fps / served fps) | Triton bytes/frame |")
        print("|---|---|---|---|---|---|---|")
        for c in a.concurrency:
            s = served(stack, source, a.frames, c)
            r = in_process(stack.config.repository, a.frames, c)
            print(f"| {c} | {s['fps']:.2f} | {s['latency_ms']:.0f} | {r['fps']:.2f} | {r['latency_ms']:.0f} | "
                  f"{r['fps'] / s['fps']:.2f} | {s['bytes_per_frame'] / 1e6:.3f} MB |")
        print("\n| driving video frames | orchestrator peak RSS |\n|---|---|")
        for frames, peak in rss_vs_length(stack, source, a.lengths, work):
            print(f"| {frames} | {peak:.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
