"""Stand-ins for the official face stack files, with the official input/output names and shapes (batch 1).

The real InsightFace / LivePortrait files cannot be downloaded here; these let the official path be tested end to
end. Their behaviour is simple and known, so results can be checked exactly:

* ``det_10g.onnx``: input ``input.1`` [1,3,H,W]; 9 outputs (scores, box distances, keypoint distances for strides
  8/16/32, two anchors per cell). Only stride 32 fires: score = sigmoid(10 x mean normalised brightness of the cell),
  so a bright square on black is "a face"; every box reaches 3 strides around its anchor.
* ``2d106det.onnx``: input ``data`` [1,3,192,192] -> ``fc1`` [1,212]: a fixed face layout in [-1, 1].
* ``landmark.onnx``: input ``input`` [1,3,224,224] -> three outputs, the third [1,406]: a fixed 203-point layout in
  [0, 1] with eye ratios 0.3 / 0.25 and lip ratio 0.2 (official definitions).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .official import DETECTOR_FILE, LANDMARKS106_FILE, LANDMARKS203_FILE, STRIDES

OPSET = 13
STANDIN_EYE_RATIOS = (0.3, 0.25)
STANDIN_LIP_RATIO = 0.2


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _save(nodes, inputs, outputs, path: Path) -> None:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _detector(path: Path) -> None:
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1),
             _const("zero", np.float32(0)), _const("gain", np.float32(10)), _const("off", np.float32(-20)),
             _const("flat1", np.array([-1, 1], np.int64)),
             _const("dist", np.full((1, 4), 3.0, np.float32)),
             _const("kps", np.array([[-0.5, -0.3, 0.5, -0.3, 0.0, 0.0, -0.35, 0.5, 0.35, 0.5]], np.float32))]
    outputs = {}
    for s in STRIDES:
        nodes += [helper.make_node("AveragePool", ["gray"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("Transpose", [f"pool{s}"], [f"hw{s}"], perm=[0, 2, 3, 1]),
                  helper.make_node("Concat", [f"hw{s}", f"hw{s}"], [f"anchors{s}"], axis=3),
                  helper.make_node("Reshape", [f"anchors{s}", "flat1"], [f"cells{s}"])]
        logit = f"cells{s}"
        nodes.append(helper.make_node("Mul", [logit, "gain"], [f"logit{s}"]))
        if s != STRIDES[-1]:
            nodes += [helper.make_node("Mul", [f"logit{s}", "zero"], [f"z{s}"]),
                      helper.make_node("Add", [f"z{s}", "off"], [f"low{s}"])]
            logit = f"low{s}"
        else:
            logit = f"logit{s}"
        nodes += [helper.make_node("Sigmoid", [logit], [f"score_{s}"]),
                  helper.make_node("Mul", [f"cells{s}", "zero"], [f"zeros{s}"]),
                  helper.make_node("Add", [f"zeros{s}", "dist"], [f"bbox_{s}"]),
                  helper.make_node("Add", [f"zeros{s}", "kps"], [f"kps_{s}"])]
        outputs[s] = (f"score_{s}", f"bbox_{s}", f"kps_{s}")
    outs = [helper.make_tensor_value_info(outputs[s][k], TensorProto.FLOAT, [None, w])
            for k, w in enumerate((1, 4, 10)) for s in STRIDES]
    _save(nodes, [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])], outs, path)


def standin_106() -> np.ndarray:
    """A fixed 106-point face in [-1, 1] (x, y), InsightFace indices for eyes (33.. / 87..) and mouth (52, 61)."""
    t = np.linspace(0, 2 * np.pi, 106, endpoint=False)
    pts = np.stack([0.6 * np.cos(t), 0.75 * np.sin(t) + 0.05], axis=1)
    for base, cx in (((33, 35, 40, 39), -0.3), ((87, 89, 94, 93), 0.3)):
        for k, (dx, dy) in zip(base, ((-0.1, 0), (0, -0.04), (0.1, 0), (0, 0.04))):
            pts[k] = (cx + dx, -0.15 + dy)
    pts[52], pts[61] = (-0.25, 0.45), (0.25, 0.45)
    return pts.astype(np.float32)


def standin_203() -> np.ndarray:
    """A fixed 203-point face in [0, 1] whose official eye/lip ratios are the STANDIN_* values."""
    rng = np.random.default_rng(0)
    pts = 0.3 + 0.4 * rng.random((203, 2))
    for (outer, upper, inner, lower), cx, ratio in (((0, 6, 12, 18), 0.38, STANDIN_EYE_RATIOS[0]),
                                                    ((24, 30, 36, 42), 0.62, STANDIN_EYE_RATIOS[1])):
        pts[outer], pts[inner] = (cx - 0.06, 0.42), (cx + 0.06, 0.42)
        pts[upper], pts[lower] = (cx, 0.42 - 0.06 * ratio), (cx, 0.42 + 0.06 * ratio)
    pts[48], pts[66] = (0.4, 0.7), (0.6, 0.7)
    pts[90], pts[102] = (0.5, 0.7 - 0.1 * STANDIN_LIP_RATIO), (0.5, 0.7 + 0.1 * STANDIN_LIP_RATIO)
    return pts.astype(np.float32)


def _fixed_output(path: Path, input_name: str, size: int, values: list[tuple[str, np.ndarray]]) -> None:
    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0), _const("zero", np.float32(0)),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    outs = []
    for name, value in values:
        nodes += [_const(f"{name}_value", value.reshape(1, -1).astype(np.float32)),
                  helper.make_node("Add", [f"{name}_value", "nothing"], [name])]
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, value.size]))
    _save(nodes, [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, size, size])], outs, path)


def write_official_standins(weights_dir: Path) -> None:
    _detector(weights_dir / DETECTOR_FILE)
    _fixed_output(weights_dir / LANDMARKS106_FILE, "data", 192, [("fc1", standin_106())])
    _fixed_output(weights_dir / LANDMARKS203_FILE, "input", 224,
                  [("output", np.zeros(214)), ("853", np.zeros(262)), ("856", standin_203())])
