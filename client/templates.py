"""Motion template files: the schema'd ``liveportrait.v1.MotionTemplate`` (``.pb`` binary, ``.json``), and official
``.pkl`` templates read with a restricted unpickler (numpy arrays, dtypes and plain containers only).

Official keys: ``n_frames``, ``output_fps``, ``motion`` (per frame ``scale`` (1,1), ``R`` or legacy ``R_d`` (1,3,3),
``exp`` (1,21,3), ``t`` (1,3)), and ``c_eyes_lst`` / legacy ``c_d_eyes_lst`` ((1,2) per frame), ``c_lip_lst`` /
legacy ``c_d_lip_lst`` ((1,1) per frame); animal templates have no ratio lists.

Every template read here is checked with the server's own check (``orchestrator.templates.from_proto``: shapes,
finite values, the documented bounds, the frame rate), so a template the server would refuse is refused here first,
and ``convert`` never writes one.
"""
from __future__ import annotations

import io
import math
import numbers
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from orchestrator.quoting import quote
from orchestrator.templates import InvalidTemplateError, from_proto
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

TEMPLATE_SUFFIXES = (".pb", ".json", ".pkl")
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("builtins", "set"), ("builtins", "frozenset"),
}


class TemplateError(ValueError):
    """A template file is unsafe, malformed or of an unknown type."""


class RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes and scalars and plain containers; any other class or function is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise TemplateError(f"refusing to unpickle {module}.{name}: a motion template may only hold numpy "
                                "arrays and plain containers")
        return super().find_class(module, name)


def _array(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.size != int(np.prod(shape)):
        raise TemplateError(f"{what} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise TemplateError(f"{what} holds non-finite values")
    return array.reshape(shape)


def from_official_dict(data: dict, origin: str = "") -> pb.MotionTemplate:
    if not isinstance(data, dict) or "motion" not in data:
        raise TemplateError("not a LivePortrait motion template (no 'motion' key)")
    motion = data["motion"]
    if not isinstance(motion, list) or not motion:
        raise TemplateError("the template's 'motion' must be a non-empty list of frames")
    n = int(data.get("n_frames", len(motion)))
    if n != len(motion):
        raise TemplateError(f"n_frames is {n} but 'motion' has {len(motion)} frames")
    eyes = data.get("c_eyes_lst", data.get("c_d_eyes_lst"))
    lips = data.get("c_lip_lst", data.get("c_d_lip_lst"))
    for name, values in (("eye", eyes), ("lip", lips)):
        if values is not None and len(values) != n:
            raise TemplateError(f"the {name} ratio list has {len(values)} entries for {n} frames")
    fps = _fps(data.get("output_fps", 25))
    frames = []
    for i, item in enumerate(motion):
        if not isinstance(item, dict):
            raise TemplateError(f"frame {i} is not a dict")
        rotation = item.get("R", item.get("R_d"))
        missing = [k for k, v in (("scale", item.get("scale")), ("R", rotation), ("exp", item.get("exp")),
                                  ("t", item.get("t"))) if v is None]
        if missing:
            raise TemplateError(f"frame {i} lacks {', '.join(missing)}")
        frame = pb.MotionFrame(scale=float(_array(item["scale"], (1,), f"frame {i} scale")[0]),
                               rotation=_array(rotation, (9,), f"frame {i} R").tolist(),
                               exp=_array(item["exp"], (63,), f"frame {i} exp").tolist(),
                               t=_array(item["t"], (3,), f"frame {i} t").tolist())
        if eyes is not None:
            frame.eye_ratio.extend(_array(eyes[i], (2,), f"frame {i} eye ratios").tolist())
        if lips is not None:
            frame.lip_ratio = float(_array(lips[i], (1,), f"frame {i} lip ratio")[0])
        frames.append(frame)
    return pb.MotionTemplate(format_version=1, fps=pb.FrameRate(num=fps.numerator, den=fps.denominator),
                             n_frames=n, frames=frames, origin=origin)


def _fps(value) -> Fraction:
    """The official ``output_fps``: a finite number > 0 (its range is checked with the rest, by the server's check)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise TemplateError(f"output_fps must be a number of frames per second > 0, got {quote(value, 40)}")
    return Fraction(value).limit_denominator(1_000_000)


def check(template: pb.MotionTemplate) -> pb.MotionTemplate:
    """The template, if the server would accept it (its check, run here); ``TemplateError`` saying why not."""
    try:
        from_proto(template)
    except InvalidTemplateError as exc:
        raise TemplateError(str(exc)) from None
    return template


def load_pickle(data: bytes, origin: str = "") -> pb.MotionTemplate:
    try:
        loaded = RestrictedUnpickler(io.BytesIO(data)).load()
    except TemplateError:
        raise
    except Exception as exc:  # any malformed pickle
        raise TemplateError(f"cannot read the pickle: {exc}") from None
    return check(from_official_dict(loaded, origin))


def read_template(path: Path) -> pb.MotionTemplate:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return load_pickle(path.read_bytes(), path.name)
    if suffix == ".pb":
        message = pb.MotionTemplate()
        try:
            message.ParseFromString(path.read_bytes())
        except DecodeError as exc:
            raise TemplateError(f"not a liveportrait.v1.MotionTemplate message: {exc}") from None
        return check(message)
    if suffix == ".json":
        try:
            return check(json_format.Parse(path.read_text(), pb.MotionTemplate()))
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise TemplateError(f"not a liveportrait.v1.MotionTemplate JSON document: {exc}") from None
    raise TemplateError(f"unknown template type {suffix!r}; use one of {', '.join(TEMPLATE_SUFFIXES)}")


def write_template(template: pb.MotionTemplate, path: Path) -> None:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pb":
        path.write_bytes(template.SerializeToString())
    elif suffix == ".json":
        path.write_text(json_format.MessageToJson(template, preserving_proto_field_name=True))
    else:
        raise TemplateError(f"write templates as .pb or .json, not {suffix!r} (pickles are never written)")


def convert(source: Path, destination: Path) -> pb.MotionTemplate:
    template = read_template(source)
    write_template(template, destination)
    return template
