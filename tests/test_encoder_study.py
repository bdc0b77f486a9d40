"""The libx264 settings study (``python -m load_tests.encoder_study``) on a few small frames, so that its code path
(the service's frames, encode, decode and quality, the crf matched to the baseline's SSIM, the table) cannot rot."""
from __future__ import annotations

from load_tests.encoder_study import Setting, main, matched, measure, study_frames
from load_tests.cpu_cost import EXAMPLES

SOURCE, VIDEO = EXAMPLES / "source" / "s1.jpg", EXAMPLES / "driving" / "d0.mp4"


def test_a_matched_setting_keeps_the_baseline_quality_at_the_largest_such_crf():
    frames = study_frames(SOURCE, VIDEO, 128, 6)
    assert len(frames) == 6 and frames[0].shape == (192, 128)  # I420 frames of a 128x128 source
    target = measure(frames, 128, Setting("veryfast", "none", 0, 18))["ssim"]
    fast = matched(frames, 128, Setting("ultrafast", "zerolatency", 1, 18), target)
    result = measure(frames, 128, fast)
    assert result["ssim"] >= target and result["bytes"] > 0
    assert fast.crf == 30 or measure(frames, 128, Setting(fast.preset, fast.tune, fast.threads, fast.crf + 1))[
        "ssim"] < target


def test_the_study_prints_a_row_per_setting_beside_the_baseline(capsys):
    assert main(["--frames", "4", "--sizes", "128", "--presets", "veryfast,superfast", "--tunes", "none,fastdecode",
                 "--threads", "0", "--repeats", "1"]) == 0
    table = capsys.readouterr().out
    assert "128x128 (baseline veryfast / none / auto threads / crf 18" in table
    for label in ("veryfast / none", "veryfast / fastdecode", "superfast / none", "superfast / fastdecode"):
        assert f"| {label} / auto threads / crf 18 |" in table
