"""Template conversion: official pickles (old and new key names) through a restricted unpickler, .pb/.json files."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from client.cli import main as cli
from client.templates import TemplateError, convert, load_pickle, read_template

TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "templates"


def official_dict(frames: int, new_keys: bool, ratios: bool = True) -> dict:
    rng = np.random.default_rng(frames)
    motion = [{"scale": np.full((1, 1), 1.5 + 0.01 * i, np.float32),
               ("R" if new_keys else "R_d"): np.eye(3, dtype=np.float32)[None],
               "exp": rng.normal(0, 0.01, (1, 21, 3)).astype(np.float32),
               "t": rng.normal(0, 0.05, (1, 3)).astype(np.float32)} for i in range(frames)]
    data = {"n_frames": frames, "output_fps": 30, "motion": motion}
    if ratios:
        prefix = "c_" if new_keys else "c_d_"
        data[prefix + "eyes_lst"] = [np.array([[0.3, 0.31]], np.float32)] * frames
        data[prefix + "lip_lst"] = [np.array([[0.02]], np.float32)] * frames
    return data


@pytest.mark.parametrize("new_keys", [True, False])
def test_both_official_key_layouts_convert(new_keys):
    data = official_dict(4, new_keys)
    template = load_pickle(pickle.dumps(data))
    assert template.n_frames == len(template.frames) == 4
    assert (template.fps.num, template.fps.den) == (30, 1)
    frame = template.frames[2]
    assert frame.scale == pytest.approx(1.52)
    np.testing.assert_allclose(frame.rotation, np.eye(3).reshape(-1))
    np.testing.assert_allclose(frame.exp, data["motion"][2]["exp"].reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(frame.eye_ratio, [0.3, 0.31], rtol=1e-6)
    assert frame.lip_ratio == pytest.approx(0.02)


def test_shipped_templates_convert(tmp_path):
    for path in sorted(TEMPLATES.glob("*.pkl")):
        with open(path, "rb") as f:
            expected = pickle.load(f)  # trusted example files, to compare with
        for suffix in (".pb", ".json"):
            converted = convert(path, tmp_path / f"{path.stem}{suffix}")
            again = read_template(tmp_path / f"{path.stem}{suffix}")
            assert again == converted
            assert again.n_frames == expected["n_frames"] == len(expected["motion"])
            last = expected["motion"][-1]
            np.testing.assert_allclose(again.frames[-1].exp, last["exp"].reshape(-1), rtol=1e-6)
            has_ratios = "c_eyes_lst" in expected or "c_d_eyes_lst" in expected
            assert bool(again.frames[0].eye_ratio) == has_ratios


class Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/liveportrait-owned",))


def test_restricted_unpickler_refuses_code():
    payload = pickle.dumps({"n_frames": 1, "motion": [Evil()]})
    with pytest.raises(TemplateError, match="refusing to unpickle"):
        load_pickle(payload)
    assert not Path("/tmp/liveportrait-owned").exists()


def test_malformed_templates_are_refused():
    with pytest.raises(TemplateError, match="motion"):
        load_pickle(pickle.dumps({"n_frames": 2}))
    data = official_dict(3, new_keys=True)
    data["n_frames"] = 5
    with pytest.raises(TemplateError, match="n_frames"):
        load_pickle(pickle.dumps(data))
    data = official_dict(2, new_keys=True)
    data["motion"][1]["exp"] = np.zeros((1, 20, 3), np.float32)
    with pytest.raises(TemplateError, match="exp"):
        load_pickle(pickle.dumps(data))
    with pytest.raises(TemplateError, match="cannot read"):
        load_pickle(b"\x80\x04not a pickle")


def test_cli_convert_template(tmp_path, capsys):
    source = tmp_path / "t.pkl"
    source.write_bytes(pickle.dumps(official_dict(3, new_keys=False)))
    assert cli(["convert-template", str(source), str(tmp_path / "t.json")]) == 0
    assert "3 frames" in capsys.readouterr().out
    assert read_template(tmp_path / "t.json").n_frames == 3
    assert cli(["convert-template", str(source), str(tmp_path / "t.pkl2")]) == 1
    assert "pickles are never written" in capsys.readouterr().err


def test_cli_failure_prints_the_status_code_name(tmp_path, capsys):
    import socket

    image = tmp_path / "s.png"
    image.write_bytes(b"not used")
    with socket.socket() as nobody:  # bound, never listening: refused, and no other server can take the port
        nobody.bind(("127.0.0.1", 0))
        code = cli(["animate", "--server", f"127.0.0.1:{nobody.getsockname()[1]}", "--source", str(image),
                    "--driving", str(TEMPLATES / "wink.pkl"), "-o", str(tmp_path / "o.mp4"), "--timeout", "5"])
    assert code == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def _nan_pickle(path: Path, field: str) -> Path:
    data = official_dict(2, new_keys=True)
    if field == "exp":
        data["motion"][1]["exp"][0, 0, 0] = np.nan
    else:
        data["c_eyes_lst"] = [np.array([[0.3, np.nan]], np.float32)] * 2
    path.write_bytes(pickle.dumps(data))
    return path


@pytest.mark.parametrize("case", ["refused pickle", "nan exp", "nan eye ratio", "missing driving", "missing source",
                                  "unreadable json"])
def test_cli_animate_reports_the_local_input_error(tmp_path, capsys, case):
    """Issue 13 defect 3: a refused or malformed template or a missing file is reported with its reason before any
    call (exit 1, no invented gRPC status), not as `UNKNOWN: Exception iterating requests!`."""
    from client.messages import animate_requests
    from orchestrator.triton_process import free_port

    source = tmp_path / "s.png"
    source.write_bytes(b"not used")
    if case == "refused pickle":
        driving, reason = tmp_path / "evil.pkl", "refusing to unpickle posix.system"
        driving.write_bytes(pickle.dumps({"n_frames": 1, "motion": [Evil()]}))
    elif case.startswith("nan"):
        field = case.split(" ", 1)[1]
        driving, reason = _nan_pickle(tmp_path / "nan.pkl", field.split()[0]), "non-finite"
    elif case == "missing driving":
        driving, reason = tmp_path / "missing.mp4", "the driving video"
    elif case == "missing source":
        source, driving, reason = tmp_path / "nope.png", TEMPLATES / "wink.pkl", "the source image"
    else:
        driving, reason = tmp_path / "t.json", "not a liveportrait.v1.MotionTemplate JSON document"
        driving.write_text("{not json")
    with pytest.raises((TemplateError, ValueError)):  # raised when the stream is built, not inside gRPC
        animate_requests(source, driving)
    code = cli(["animate", "--server", f"127.0.0.1:{free_port()}", "--source", str(source), "--driving", str(driving),
                "-o", str(tmp_path / "o.mp4"), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 1
    assert reason in err and err.startswith("error: "), err
    for wrong in ("UNKNOWN", "Exception iterating", "UNAVAILABLE", "Traceback"):
        assert wrong not in err, err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.mp4.part").exists()
