"""The orchestrator's own CPU time per frame, by stage (a script, not a test); sizes the orchestrator per GPU replica.

    python -m load_tests.cpu_cost [--frames 48] [--sizes 512,1280] [--gpu-fps 250] [--repeats 3] [--encoder-speed fastest]

Each stage runs the orchestrator's real code, in this process, in isolation over N frames of one request (all frames
of a stage before the next stage starts, so that work left running in PyAV's or libx264's threads when a call
returns is not counted in the next stage), and is charged with this process's CPU time (``time.process_time``: every
thread of the process, decoder and encoder threads included). The models run in a tritonserver child process
(the tiny CPU repository, or ``--triton-url``), whose CPU time is not this process's: what is measured is the
orchestrator's side of every Triton call (tensor preparation, gRPC serialisation, post-processing), never the
inference itself.

Stages (per driving frame): ``decode`` (``media.read_frames``: PyAV/FFmpeg H.264 decode to RGB), ``tracking``
(``VideoDriving.prepare``, the service's own: with the driving crop, ``DrivingCropTracker.process`` on every frame,
landmark-model ROI crops and projection, ratios, crop box, driving crop + resize, re-detection when the face is lost;
without it, the face models on the first frame only and each frame resized), ``motion`` (``driving.extract_motion``:
the driving frames' call to ``motion_extractor_u8``), ``keypoints`` (``KeypointStage``: keypoint math and the
stitching call), ``render`` (``pipeline.render``: the client side of the ``render_i420`` call), ``paste-back``
(``yuv_paste.I420Canvas``: the I420 crop warped into the mask's box of the I420 source and blended there; ``--paste
rgb``: the RGB path, ``pipeline.output_frames``: I420 -> RGB, warp into the box, feathered blend) and ``encode``
(``FragmentedMp4Writer``: libx264, flush included; from RGB, OpenCV's RGB -> I420 first). Per-request work (source
decode, detection and crop, source motion, setup) is reported separately.

The crops pasted back and encoded are the driving video's own face crops (upscaled to 512, I420) by default: with
synthetic weights the rendered crops are noise, which costs libx264 far more than a face does; ``--crops rendered``
uses the rendered crops instead.

The driving crop is forced on (``--driving-crop on``): what every non-square (phone) video gets. d0.mp4 is square,
and the orchestrator's default for a square video is no crop, which runs the face models on its first frame only, to
check that it shows a face (``--driving-crop off``).

Orchestrator cores per GPU replica = total CPU seconds per frame x the frames per second one GPU replica renders
(``--gpu-fps``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from orchestrator.config import ServerConfig
from orchestrator.pipeline.driving import VideoDriving, extract_motion
from orchestrator.face import make_analyzer
from orchestrator.face.geometry import DRIVING_CROP
from orchestrator.keypoints import source_keypoints
from orchestrator.media import DEFAULT_ENCODER_SPEED, ENCODER_SPEEDS, FragmentedMp4Writer, probe, read_frames
from orchestrator.metrics import Metrics
from orchestrator.options import AnimateOptions, DrivingCropOptions
from orchestrator.pipeline.context import uncounted
from orchestrator.pipeline.paste import PasteBack, feathered_mask
from orchestrator.pipeline.yuv_paste import I420Canvas
from orchestrator.pipeline import KeypointStage, RequestContext, output_frames, prepare_source, render
from orchestrator.timing import Timings
from orchestrator.triton_client import RequestRunner, Traffic, TritonConfig, TritonRunner

from .report import machine

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"
STAGES = ("decode", "tracking", "motion", "keypoints", "render", "paste-back", "encode")
STAGE_NOTES = {
    "decode": "PyAV H.264 decode to RGB (driving video)",
    "tracking": "face tracker: landmark ROI crop/projection, ratios, crop box, driving crop + resize (crop off: "
                "first frame only, then resize)",
    "motion": "client side of the motion_extractor_u8 call (driving frames)",
    "keypoints": "keypoint math + client side of the stitching call",
    "render": "client side of the render_i420 call",
    "paste-back": "I420 crop warped into the mask's box, blended in I420 (--paste rgb: I420 -> RGB, box, blend)",
    "encode": "libx264 (--encoder-speed's preset and crf) + fragmented MP4, flush included (--paste rgb: RGB -> I420 "
              "first)",
}
SETUP = ("source", "source motion", "setup")
SETUP_NOTES = {
    "source": "decode the portrait, detect the face, crop (prepare_source)",
    "source motion": "client side of the source's motion_extractor_u8 call + keypoints.start",
    "setup": "paste-back setup (source -> I420, mask warped into its box) + encoder opened (served: while the first "
             "chunk renders)",
}


@dataclass(frozen=True)
class CpuCostConfig:
    frames: int = 48
    sizes: tuple[int, ...] = (512, 1280)
    gpu_fps: float = 250.0
    repeats: int = 3
    chunk: int = 8  # frames per Triton call, as the orchestrator sends them (Limits.chunk_frames)
    source: Path = EXAMPLES / "source" / "s1.jpg"
    video: Path = EXAMPLES / "driving" / "d0.mp4"
    driving_crop: bool = True
    crops: str = "driving"  # what is pasted back and encoded: "driving" face crops or the "rendered" crops
    paste: str = "yuv"  # the paste-back path: "yuv" (videos) or "rgb" (images, live frames; the videos' before)
    face_stack: str = "mediapipe"
    encoder_speed: str = DEFAULT_ENCODER_SPEED  # a key of media.ENCODER_SPEEDS
    opencv_threads: int = ServerConfig().opencv_threads  # the orchestrator's --opencv-threads (0: one per core)
    triton_url: str | None = None  # None: start a tritonserver child process on the tiny CPU repository
    repository: Path | None = None  # None: load_tests.replicas.tiny_cpu_repository()
    log_dir: Path = REPO_ROOT / "build" / "load"


@dataclass
class Clock:
    """Process CPU seconds and wall seconds summed per stage."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall


def square_portrait(path: Path, size: int) -> bytes:
    """The portrait's centred square, resized to size x size, as JPEG bytes (what a client uploads)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read the source portrait {path}")
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    square = image[y:y + side, x:x + side]
    square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if size < side else cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", square, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def decode_frames(path: Path, frames: int, chunk: int) -> list[np.ndarray]:
    """``frames`` RGB frames of the driving video (read again from the start when it is shorter)."""
    out: list[np.ndarray] = []
    while len(out) < frames:
        with closing(read_frames(path, chunk, max_frames=10 ** 9)) as batches:
            for batch in batches:
                out.extend(batch)
                if len(out) >= frames:
                    break
    return out[:frames]


async def track(driving: VideoDriving, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The driving inputs (256x256) of the frames, as the service prepares them (``VideoDriving.prepare``: the face
    tracker on every frame when cropping, on the first frame only otherwise)."""
    inputs: list[np.ndarray] = []
    for frame in frames:
        inputs += [image for image, _, _ in await driving.prepare(frame)]
    if len(inputs) < len(frames):
        raise RuntimeError(f"no face was found in the driving video's {len(frames) - len(inputs)} frames")
    return inputs


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def driving_planes(inputs: list[np.ndarray]) -> np.ndarray:
    """Face crops with real content in the render's output layout: each 256x256 driving input upscaled to 512 and
    converted to I420 ([n, 768, 512] uint8, like ``render_i420``)."""
    return np.stack([cv2.cvtColor(cv2.resize(image, (512, 512), interpolation=cv2.INTER_LINEAR),
                                  cv2.COLOR_RGB2YUV_I420) for image in inputs])


async def one_pass(config: CpuCostConfig, runner: RequestRunner, source_bytes: bytes, frames: int) -> Clock:
    """Every stage of one request over ``frames`` driving frames, one stage after the other."""
    clock = Clock()
    options = AnimateOptions(encoder_speed=config.encoder_speed)
    analyzer = make_analyzer(runner, config.face_stack)
    ctx = RequestContext(runner, analyzer, Timings(), uncounted)
    fps = probe(config.video).fps
    with clock.stage("source"):
        source = await prepare_source(source_bytes, options, ctx)
    if source.M_c2o is None:
        raise RuntimeError("the source was not cropped: paste-back would not run")
    with clock.stage("source motion"):
        outputs = await runner.infer("motion_extractor_u8", {"image_u8": source.crop_256[None]})
        keypoints = KeypointStage(source, source_keypoints(outputs), options, True, runner)
        await keypoints.start()
    with clock.stage("setup"):
        if config.paste == "yuv":
            canvas = I420Canvas(source.image, [source.M_c2o], feathered_mask())
        else:
            paste = PasteBack(source.image, source.M_c2o, feathered_mask())
        height, width = source.image.shape[:2]
        writer = FragmentedMp4Writer(width, height, fps, options.encode_settings)

    with clock.stage("decode"):
        images = decode_frames(config.video, frames, config.chunk)
    driving = VideoDriving(config.video, probe(config.video), runner, analyzer,
                           DrivingCropOptions(config.driving_crop, DRIVING_CROP), False, Timings())
    with clock.stage("tracking"):
        inputs = await track(driving, images)
    with clock.stage("motion"):
        motions = [await extract_motion(runner, part) for part in chunks(inputs, config.chunk)]
    with clock.stage("keypoints"):
        kp_driving = [await keypoints(motion) for motion in motions]
    with clock.stage("render"):
        rendered = [await render(runner, source.crop_256, keypoints.kp.x_s, kp) for kp in kp_driving]
    planes = rendered if config.crops == "rendered" else [driving_planes(part) for part in chunks(inputs, config.chunk)]
    size = 0
    if config.paste == "yuv":  # the canvas reuses its frames from chunk to chunk: each chunk encoded before the next
        for part in planes:
            with clock.stage("paste-back"):
                frames = canvas([part])
            with clock.stage("encode"):
                size += len(writer.write(frames))
    else:
        with clock.stage("paste-back"):
            video_frames = [output_frames(p, paste) for p in planes]
        with clock.stage("encode"):
            size += sum(len(writer.write(part)) for part in video_frames)
    with clock.stage("encode"):
        size += len(writer.close())
    if size <= 0:
        raise RuntimeError("the encoder produced no bytes")
    return clock


async def measure(config: CpuCostConfig, triton_url: str) -> dict:
    runner = TritonRunner(TritonConfig(url=triton_url), Metrics())
    cv2.setNumThreads(config.opencv_threads or -1)  # as the orchestrator's ``serve`` does
    load_before = os.getloadavg()[0]
    try:
        request = RequestRunner(runner, Traffic(), deadline=None)
        rows = []
        for size in config.sizes:
            source_bytes = square_portrait(config.source, size)
            await one_pass(config, request, source_bytes, min(config.frames, config.chunk))  # warm-up
            passes = [await one_pass(config, request, source_bytes, config.frames) for _ in range(config.repeats)]
            row = {"size": size, "stages": {}, "per_request": {}}
            for name in STAGES:
                cpu = [1000 * p.cpu[name] / config.frames for p in passes]
                row["stages"][name] = {
                    "cpu_ms_per_frame": statistics.median(cpu), "cpu_ms_per_frame_min": min(cpu),
                    "cpu_ms_per_frame_max": max(cpu),
                    "wall_ms_per_frame": 1000 * statistics.median(p.wall[name] for p in passes) / config.frames}
            for name in SETUP:
                row["per_request"][name] = {"cpu_ms": 1000 * statistics.median(p.cpu[name] for p in passes),
                                            "wall_ms": 1000 * statistics.median(p.wall[name] for p in passes)}
            total = sum(s["cpu_ms_per_frame"] for s in row["stages"].values())
            row["total_cpu_ms_per_frame"] = total
            totals = [1000 * sum(p.cpu[name] for name in STAGES) / config.frames for p in passes]
            row["total_cpu_ms_per_frame_min"], row["total_cpu_ms_per_frame_max"] = min(totals), max(totals)
            row["cores_at_1_fps"] = total / 1000
            row["cores_per_gpu_replica"] = total / 1000 * config.gpu_fps
            rows.append(row)
        return {"kind": "cpu_cost", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                "frames": config.frames, "repeats": config.repeats, "gpu_fps": config.gpu_fps,
                "source": str(config.source), "video": str(config.video), "driving_crop": config.driving_crop,
                "crops": config.crops, "paste": config.paste, "face_stack": config.face_stack,
                "encoder_speed": config.encoder_speed, "opencv_threads": config.opencv_threads,
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "sizes": rows}
    finally:
        await runner.close()


def run_cpu_cost(config: CpuCostConfig, log=print) -> dict:
    """Measure against ``config.triton_url``, or a tritonserver child process on the tiny CPU repository."""
    if config.triton_url:
        return asyncio.run(measure(config, config.triton_url))
    from orchestrator.triton_process import TritonProcess

    from .replicas import tiny_cpu_repository

    repository = config.repository or tiny_cpu_repository()
    log(f"starting tritonserver on {repository} (log: {config.log_dir / 'triton-cpu-cost.log'})")
    with TritonProcess(repository, log_file=config.log_dir / "triton-cpu-cost.log") as server:
        return asyncio.run(measure(config, server.grpc_url))


def cpu_cost_table(report: dict) -> str:
    cores = report["machine"]["cores"]
    fps = report["gpu_fps"]
    lines = [f"Orchestrator CPU per frame ({report['frames']} frames of {Path(report['video']).name}, median of "
             f"{report['repeats']}; source {Path(report['source']).name} resized; driving crop "
             f"{'on' if report['driving_crop'] else 'off'}; pasted/encoded crops: {report['crops']}; "
             f"paste-back in {report.get('paste', 'rgb').upper()}; encoder speed "
             f"{report.get('encoder_speed', 'smallest')}; OpenCV threads per call "
             f"{report.get('opencv_threads') or 'one per core'}; {cores} cores, {report['machine']['cpu']}; "
             f"1-min load average {report['load_average'][0]:g} before, {report['load_average'][1]:g} after)", "",
             "| source | stage | CPU ms/frame | (min-max of the passes) | wall ms/frame "
             "| what runs in the orchestrator |",
             "|---|---|---|---|---|---|"]
    for row in report["sizes"]:
        label = f"{row['size']}x{row['size']}"
        for name, stage in row["stages"].items():
            lines.append(f"| {label} | {name} | {stage['cpu_ms_per_frame']:.2f} | {stage['cpu_ms_per_frame_min']:.2f}-"
                         f"{stage['cpu_ms_per_frame_max']:.2f} | {stage['wall_ms_per_frame']:.2f} | "
                         f"{STAGE_NOTES[name]} |")
        lines.append(f"| {label} | **total** | **{row['total_cpu_ms_per_frame']:.2f}** | "
                     f"{row['total_cpu_ms_per_frame_min']:.2f}-{row['total_cpu_ms_per_frame_max']:.2f} | | |")
    lines += ["", f"| source | total CPU ms/frame | cores at 1 frame/s | cores per GPU replica at {fps:g} frames/s |",
              "|---|---|---|---|"]
    for row in report["sizes"]:
        lines.append(f"| {row['size']}x{row['size']} | {row['total_cpu_ms_per_frame']:.2f} | "
                     f"{row['cores_at_1_fps']:.4f} | {row['cores_per_gpu_replica']:.2f} |")
    lines += ["", f"cores per GPU replica = total CPU ms per frame x {fps:g} frames/s / 1000 "
                  "(rerun with --gpu-fps <measured> or multiply the 1 frame/s column)", "",
              "| source | per request | CPU ms | wall ms | what |", "|---|---|---|---|---|"]
    for row in report["sizes"]:
        for name, cost in row["per_request"].items():
            lines.append(f"| {row['size']}x{row['size']} | {name} | {cost['cpu_ms']:.1f} | {cost['wall_ms']:.1f} | "
                         f"{SETUP_NOTES[name]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = CpuCostConfig()
    p = argparse.ArgumentParser(prog="python -m load_tests.cpu_cost", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=defaults.frames, help="driving frames per measured pass")
    p.add_argument("--sizes", default=",".join(map(str, defaults.sizes)), help="square source sizes, e.g. 512,1280")
    p.add_argument("--gpu-fps", type=float, default=defaults.gpu_fps,
                   help="frames/s one GPU (Triton) replica renders; gives the orchestrator cores per replica")
    p.add_argument("--repeats", type=int, default=defaults.repeats, help="measured passes (median per stage)")
    p.add_argument("--source", type=Path, default=defaults.source, help="source portrait (its centred square)")
    p.add_argument("--video", type=Path, default=defaults.video, help="driving video")
    p.add_argument("--driving-crop", choices=("on", "off"), default="on" if defaults.driving_crop else "off")
    p.add_argument("--crops", choices=("driving", "rendered"), default=defaults.crops,
                   help="what is pasted back and encoded: the driving face crops (default) or the rendered crops")
    p.add_argument("--paste", choices=("yuv", "rgb"), default=defaults.paste,
                   help="paste-back path: in I420 (videos, default) or in RGB (images and live frames)")
    p.add_argument("--face-stack", choices=("mediapipe", "official"), default=defaults.face_stack)
    p.add_argument("--encoder-speed", choices=tuple(ENCODER_SPEEDS), default=defaults.encoder_speed,
                   help="the output's encoder speed (OutputOptions.encoder_speed; default: the service's)")
    p.add_argument("--opencv-threads", type=int, default=defaults.opencv_threads,
                   help="threads of one OpenCV call (the orchestrator's --opencv-threads; 0: one per core)")
    p.add_argument("--triton-url", default=None, help="a running Triton (default: start the tiny CPU repository)")
    p.add_argument("--report", type=Path, default=None, help="also write the figures as JSON")
    a = p.parse_args(argv)
    if a.frames < 1 or a.repeats < 1:
        p.error("--frames and --repeats must be >= 1")
    config = CpuCostConfig(frames=a.frames, sizes=tuple(int(s) for s in a.sizes.split(",") if s.strip()),
                           gpu_fps=a.gpu_fps, repeats=a.repeats, source=a.source, video=a.video,
                           driving_crop=a.driving_crop == "on", crops=a.crops, paste=a.paste, face_stack=a.face_stack,
                           encoder_speed=a.encoder_speed, opencv_threads=a.opencv_threads,
                           triton_url=a.triton_url)
    report = run_cpu_cost(config)
    if a.report:
        a.report.parent.mkdir(parents=True, exist_ok=True)
        a.report.write_text(json.dumps(report, indent=2) + "\n")
    print(cpu_cost_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
