"""The official LivePortrait face stack, when the user supplies its files (InsightFace buffalo_l, non-commercial).

Expected under the weights directory (the official download layout):
``insightface/models/buffalo_l/det_10g.onnx`` (SCRFD detector), ``insightface/models/buffalo_l/2d106det.onnx``
(106-point landmarks) and ``liveportrait/landmark.onnx`` (203-point landmarks).

Those files have a fixed batch of 1. For Triton's dynamic batcher each one is wrapped in a new graph: uint8 NHWC
input, the official normalisation, then an ONNX ``Scan`` that runs the original graph once per batch item. The
original graph is embedded unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..model_spec import BatchingSpec, ServedModel, TensorSpec

DETECTOR_FILE = Path("insightface/models/buffalo_l/det_10g.onnx")
LANDMARKS106_FILE = Path("insightface/models/buffalo_l/2d106det.onnx")
LANDMARKS203_FILE = Path("liveportrait/landmark.onnx")
DET_SIZE = 512
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
L106_SIZE = 192
L203_SIZE = 224
BATCHING = BatchingSpec(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=1000)


OFFICIAL_FILES = (DETECTOR_FILE, LANDMARKS106_FILE, LANDMARKS203_FILE)


def official_files_present(weights_dir: Path) -> bool:
    return all((weights_dir / f).is_file() for f in OFFICIAL_FILES)


def _cells(stride: int) -> int:
    return (DET_SIZE // stride) ** 2 * ANCHORS_PER_CELL


def detector_outputs() -> tuple[TensorSpec, ...]:
    """SCRFD outputs in insightface's order: scores, then box distances, then keypoint distances, per stride."""
    return tuple(TensorSpec(f"{kind}_{s}", (_cells(s), width))
                 for kind, width in (("scores", 1), ("bbox", 4), ("kps", 10)) for s in STRIDES)


def official_served_models() -> list[ServedModel]:
    return [
        ServedModel("official_face_detector", (TensorSpec("image", (DET_SIZE, DET_SIZE, 3), "UINT8"),),
                    detector_outputs(), "InsightFace SCRFD det_10g on a 512x512 RGB letterbox (top-left)",
                    batching=BATCHING),
        ServedModel("official_landmarks_106", (TensorSpec("image", (L106_SIZE, L106_SIZE, 3), "UINT8"),),
                    (TensorSpec("landmarks", (212,)),), "InsightFace 2d106det on a 192x192 RGB face crop",
                    batching=BATCHING),
        ServedModel("official_landmarks_203", (TensorSpec("image", (L203_SIZE, L203_SIZE, 3), "UINT8"),),
                    (TensorSpec("landmarks", (406,)),), "LivePortrait landmark.onnx (203 points) on a 224x224 crop",
                    batching=BATCHING),
    ]


def insightface_normalisation(model: onnx.ModelProto) -> tuple[float, float]:
    """(mean, std) as insightface's Landmark class decides it: graphs that normalise internally get (0, 1)."""
    find_sub = find_mul = False
    for index, node in enumerate(model.graph.node[:8]):
        find_sub |= node.name.startswith(("Sub", "_minus"))
        find_mul |= node.name.startswith(("Mul", "_mul"))
        if index < 3 and node.name == "bn_data":
            find_sub = find_mul = True
    return (0.0, 1.0) if find_sub and find_mul else (127.5, 128.0)


def wrap_batched(model: onnx.ModelProto, spec: ServedModel, mean: float, std: float,
                 output_indices: tuple[int, ...]) -> onnx.ModelProto:
    """uint8 [N,H,W,3] -> (x - mean) / std -> NCHW -> Scan(original graph per item) -> outputs [N, *spec dims]."""
    inner = model.graph
    original_input = inner.input[0].name
    body_nodes = [helper.make_node("Unsqueeze", ["lp_item", "lp_axis0"], [original_input])]
    body_nodes += list(inner.node)
    body_outputs = []
    for spec_out, index in zip(spec.outputs, output_indices):
        name = inner.output[index].name
        shape = numpy_helper.from_array(np.array(spec_out.dims, np.int64), f"lp_shape_{spec_out.name}")
        body_nodes.insert(0, helper.make_node("Constant", [], [shape.name], value=shape))
        body_nodes.append(helper.make_node("Reshape", [name, shape.name], [f"lp_{spec_out.name}_item"]))
        body_outputs.append(helper.make_tensor_value_info(f"lp_{spec_out.name}_item", TensorProto.FLOAT, spec_out.dims))
    axis0 = numpy_helper.from_array(np.array([0], np.int64), "lp_axis0")
    body_nodes.insert(0, helper.make_node("Constant", [], ["lp_axis0"], value=axis0))
    size = spec.inputs[0].dims[0]
    body = helper.make_graph(
        body_nodes, "item_graph",
        [helper.make_tensor_value_info("lp_item", TensorProto.FLOAT, [3, size, size])],
        body_outputs, initializer=list(inner.initializer))
    in_name = spec.inputs[0].name
    nodes = [
        helper.make_node("Cast", [in_name], ["lp_as_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["lp_as_float", "lp_mean"], ["lp_centred"]),
        helper.make_node("Div", ["lp_centred", "lp_std"], ["lp_normalised"]),
        helper.make_node("Transpose", ["lp_normalised"], ["lp_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Scan", ["lp_nchw"], [o.name for o in spec.outputs], body=body, num_scan_inputs=1),
    ]
    graph = helper.make_graph(
        nodes, spec.name,
        [helper.make_tensor_value_info(in_name, TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(o.name, TensorProto.FLOAT, ["batch", *o.dims]) for o in spec.outputs],
        initializer=[numpy_helper.from_array(np.array(mean, np.float32), "lp_mean"),
                     numpy_helper.from_array(np.array(std, np.float32), "lp_std")])
    opsets = [o for o in model.opset_import]
    wrapped = helper.make_model(graph, opset_imports=opsets, producer_name="liveportrait-export")
    wrapped.ir_version = model.ir_version
    onnx.checker.check_model(wrapped)
    return wrapped


def export_official_models(weights_dir: Path, output_dir: Path) -> dict[str, Path]:
    specs = {s.name: s for s in official_served_models()}
    detector = onnx.load(str(weights_dir / DETECTOR_FILE))
    l106 = onnx.load(str(weights_dir / LANDMARKS106_FILE))
    l203 = onnx.load(str(weights_dir / LANDMARKS203_FILE))
    plans = {
        "official_face_detector": (detector, 127.5, 128.0, tuple(range(9))),
        "official_landmarks_106": (l106, *insightface_normalisation(l106), (0,)),
        "official_landmarks_203": (l203, 0.0, 255.0, (2,)),
    }
    written = {}
    for name, (model, mean, std, outputs) in plans.items():
        path = output_dir / f"{name}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(wrap_batched(model, specs[name], mean, std, outputs), str(path))
        written[name] = path
    return written
