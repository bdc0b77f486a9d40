"""libx264 settings by measurement: CPU per frame, bytes and quality of presets x tunes x threads (a script).

    python -m load_tests.encoder_study [--frames 48] [--sizes 512,1280] [--presets veryfast,faster,superfast,ultrafast]
                                       [--tunes none,zerolatency,fastdecode] [--threads 0,1] [--match-ssim]

The frames are what the service encodes: the driving video's face crops (I420, upscaled to 512, as
``load_tests.cpu_cost`` uses them) pasted back in I420 into the centred square of the source portrait, resized to
each size, with a crop square of 64% of its side. Each setting encodes them as the service does (fragmented MP4,
yuv420p, a keyframe every second, the given crf) and is charged with this process's CPU time for the encode (flush
included, libx264's threads counted); the output is decoded again and its luma compared with the uncompressed
frames: PSNR and SSIM (Gaussian 11x11, sigma 1.5), the mean over every third frame. Settings run interleaved (every
setting once, then again) and each figure is the median of the passes.

``--match-ssim``: each setting's crf is the largest whose SSIM still reaches the baseline's (the service's: veryfast,
no tune, automatic threads, crf 18), so that the settings are compared by CPU and bytes at equal quality.
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from orchestrator.face.geometry import CropRect, crop_transform_from_rect
from orchestrator.pipeline.paste import feathered_mask
from orchestrator.pipeline.yuv_paste import I420Canvas

from .cpu_cost import EXAMPLES, chunks, decode_frames, driving_planes, square_portrait


@dataclass(frozen=True)
class Setting:
    preset: str
    tune: str  # "none" or an x264 tune
    threads: int  # 0: libx264's automatic thread count
    crf: int

    @property
    def label(self) -> str:
        return f"{self.preset} / {self.tune} / {'auto' if self.threads == 0 else self.threads} threads / crf {self.crf}"


def study_frames(source: Path, video: Path, size: int, frames: int) -> list[np.ndarray]:
    """The I420 frames the service would encode for a source of ``size`` x ``size``."""
    image = cv2.imdecode(np.frombuffer(square_portrait(source, size), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    rect = CropRect(np.array([size * 0.5, size * 0.45], np.float32), size * 0.64, 0.05)
    canvas = I420Canvas(np.ascontiguousarray(image), [crop_transform_from_rect(rect, 512).M_c2o], feathered_mask())
    inputs = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in decode_frames(video, frames, 8)]
    return [frame.copy() for part in chunks(inputs, 8) for frame in canvas([driving_planes(part)])]


def encode(frames: list[np.ndarray], width: int, height: int, setting: Setting, fps: Fraction = Fraction(25)) -> bytes:
    """Fragmented MP4 as ``media.FragmentedMp4Writer`` writes it, with the setting's preset, tune and threads."""
    sink = io.BytesIO()
    with av.open(sink, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / fps
        stream.codec_context.gop_size = max(1, round(fps))
        options = {"crf": str(setting.crf), "preset": setting.preset, "threads": str(setting.threads)}
        if setting.tune != "none":
            options["tune"] = setting.tune
        stream.options = options
        for i, yuv in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return sink.getvalue()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 8-bit planes (Wang et al. 2004: Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = (lambda x: cv2.GaussianBlur(x, (11, 11), 1.5))
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    value = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(value[5:-5, 5:-5].mean())


def quality(data: bytes, frames: list[np.ndarray], height: int) -> tuple[float, float]:
    """(PSNR dB, SSIM) of the decoded luma against the uncompressed frames', the mean over every third frame."""
    with av.open(io.BytesIO(data)) as container:
        decoded = [f.to_ndarray(format="yuv420p")[:height] for f in container.decode(video=0)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"{len(decoded)} frames decoded of {len(frames)}")
    psnrs, ssims = [], []
    for got, want in list(zip(decoded, frames))[::3]:
        mse = float(np.mean((got.astype(np.float64) - want[:height]) ** 2))
        psnrs.append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
        ssims.append(ssim(got, want[:height]))
    return float(np.mean(psnrs)), float(np.mean(ssims))


def measure(frames: list[np.ndarray], size: int, setting: Setting) -> dict:
    started = time.process_time()
    data = encode(frames, size, size, setting)
    cpu = time.process_time() - started
    psnr, ssim_value = quality(data, frames, size)
    return {"cpu_ms_per_frame": 1000 * cpu / len(frames), "bytes": len(data), "psnr": psnr, "ssim": ssim_value}


def run(frames: list[np.ndarray], size: int, settings: list[Setting], repeats: int) -> dict[Setting, dict]:
    passes: dict[Setting, list[dict]] = {s: [] for s in settings}
    for _ in range(repeats):
        for setting in settings:
            passes[setting].append(measure(frames, size, setting))
    return {s: {key: statistics.median(p[key] for p in runs) for key in runs[0]} for s, runs in passes.items()}


def matched(frames: list[np.ndarray], size: int, setting: Setting, target: float, lowest: int = 8,
            highest: int = 30) -> Setting:
    """The setting with the largest crf (``lowest`` to ``highest``) whose SSIM still reaches ``target``: the fewest
    bytes at the baseline's quality."""
    def reaches(crf: int) -> bool:
        return measure(frames, size, Setting(setting.preset, setting.tune, setting.threads, crf))["ssim"] >= target

    crf = setting.crf
    if reaches(crf):
        while crf < highest and reaches(crf + 1):
            crf += 1
    else:
        while crf > lowest and not reaches(crf - 1):
            crf -= 1
        crf = max(lowest, crf - 1)
    return Setting(setting.preset, setting.tune, setting.threads, crf)


def table(size: int, results: dict[Setting, dict], baseline: Setting) -> str:
    base = results[baseline]
    lines = [f"{size}x{size} (baseline {baseline.label}: {base['cpu_ms_per_frame']:.2f} CPU ms/frame, "
             f"{base['bytes']:.0f} bytes, SSIM {base['ssim']:.4f})", "",
             "| preset / tune / threads / crf | CPU ms/frame | x baseline | bytes | x baseline | PSNR dB | SSIM |",
             "|---|---|---|---|---|---|---|"]
    for setting, r in sorted(results.items(), key=lambda item: item[1]["cpu_ms_per_frame"]):
        lines.append(f"| {setting.label} | {r['cpu_ms_per_frame']:.2f} | "
                     f"{r['cpu_ms_per_frame'] / base['cpu_ms_per_frame']:.2f} | {r['bytes']:.0f} | "
                     f"{r['bytes'] / base['bytes']:.2f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.encoder_study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--sizes", default="512,1280")
    p.add_argument("--presets", default="veryfast,faster,superfast,ultrafast")
    p.add_argument("--tunes", default="none,zerolatency,fastdecode")
    p.add_argument("--threads", default="0,1", help="libx264 threads (0: automatic)")
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--match-ssim", action="store_true",
                   help="each setting at the largest crf that keeps the baseline's SSIM")
    p.add_argument("--source", type=Path, default=EXAMPLES / "source" / "s1.jpg")
    p.add_argument("--video", type=Path, default=EXAMPLES / "driving" / "d0.mp4")
    a = p.parse_args(argv)
    split = (lambda text: [v.strip() for v in text.split(",") if v.strip()])
    baseline = Setting("veryfast", "none", 0, a.crf)
    settings = [Setting(preset, tune, int(threads), a.crf) for preset in split(a.presets) for tune in split(a.tunes)
                for threads in split(a.threads)]
    if baseline not in settings:
        settings.insert(0, baseline)
    for size in (int(s) for s in split(a.sizes)):
        frames = study_frames(a.source, a.video, size, a.frames)
        chosen = settings
        if a.match_ssim:
            target = measure(frames, size, baseline)["ssim"]
            chosen = [baseline] + [matched(frames, size, s, target) for s in settings if s != baseline]
        print(table(size, run(frames, size, chosen, a.repeats), baseline) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
