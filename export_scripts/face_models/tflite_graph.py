"""Rebuild a small float TFLite graph as a PyTorch module, so it can be exported to ONNX with a dynamic batch axis.

Supported: CONV_2D, DEPTHWISE_CONV_2D, PAD, ADD, RELU, PRELU, MAX_POOL_2D, RESHAPE, CONCATENATION and DEQUANTIZE of
fp16 constants (folded into float32 weights). This is exactly the op set of MediaPipe's BlazeFace short-range detector
and FaceMesh models. Anything else raises ``UnsupportedGraphError``.

Activations run in NCHW. 4-D TFLite tensors (NHWC) are kept as NCHW and converted back at the graph outputs; axes of
PAD, CONCATENATION and RESHAPE are remapped. TF "SAME" padding (asymmetric) is reproduced with explicit padding.
A batch size of 1 in RESHAPE targets becomes -1, so the module accepts any batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from torch import nn

_OPS = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_SUPPORTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "ADD", "RELU", "PRELU", "MAX_POOL_2D", "RESHAPE",
              "CONCATENATION", "DEQUANTIZE"}
_DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
           tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64}


class UnsupportedGraphError(ValueError):
    """The TFLite graph uses an operator or layout this rebuilder does not handle."""


@dataclass(frozen=True)
class Op:
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


def _op_name(model: tflite.Model, op: tflite.Operator) -> str:
    code = model.OperatorCodes(op.OpcodeIndex())
    return _OPS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")


def _options(kind: str, op: tflite.Operator) -> dict:
    table = op.BuiltinOptions()
    if kind == "CONV_2D":
        o = tflite.Conv2DOptions()
    elif kind == "DEPTHWISE_CONV_2D":
        o = tflite.DepthwiseConv2DOptions()
    elif kind == "MAX_POOL_2D":
        o = tflite.Pool2DOptions()
    elif kind == "ADD":
        o = tflite.AddOptions()
    elif kind == "CONCATENATION":
        o = tflite.ConcatenationOptions()
    else:
        return {}
    o.Init(table.Bytes, table.Pos)
    out = {"activation": o.FusedActivationFunction()}
    if kind == "CONCATENATION":
        out["axis"] = o.Axis()
        return out
    if kind == "ADD":
        return out
    out.update(stride=(o.StrideH(), o.StrideW()), same=o.Padding() == tflite.Padding.SAME)
    if kind == "MAX_POOL_2D":
        out["kernel"] = (o.FilterHeight(), o.FilterWidth())
    else:
        out["dilation"] = (o.DilationHFactor(), o.DilationWFactor())
    return out


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF SAME padding for one axis: (before, after); the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class TFLiteModule(nn.Module):
    """A TFLite graph replayed with torch ops. Inputs and outputs keep the TFLite layouts (NHWC for 4-D)."""

    def __init__(self, flatbuffer: bytes):
        super().__init__()
        model = tflite.Model.GetRootAsModel(flatbuffer, 0)
        if model.SubgraphsLength() != 1:
            raise UnsupportedGraphError("only single-subgraph models are supported")
        graph = model.Subgraphs(0)
        self.shapes = {i: tuple(int(d) for d in graph.Tensors(i).ShapeAsNumpy())
                       for i in range(graph.TensorsLength())}
        self.names = {i: graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())}
        self.input_ids = tuple(int(i) for i in graph.InputsAsNumpy())
        self.output_ids = tuple(int(i) for i in graph.OutputsAsNumpy())
        constants = _read_constants(model, graph)
        self.ops: list[Op] = []
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            kind = _op_name(model, op)
            if kind not in _SUPPORTED:
                raise UnsupportedGraphError(f"unsupported TFLite operator {kind}")
            ins, outs = tuple(int(i) for i in op.InputsAsNumpy()), tuple(int(i) for i in op.OutputsAsNumpy())
            if kind == "DEQUANTIZE":
                constants[outs[0]] = constants[ins[0]].astype(np.float32)
                continue
            self.ops.append(Op(kind, ins, outs, _options(kind, op)))
        self._constants = constants
        self._register_weights()

    def _register_weights(self) -> None:
        """Store every float constant an op reads, converted to the layout the torch op expects."""
        for op in self.ops:
            if op.kind == "CONV_2D":
                self._buffer(op.inputs[1], np.transpose(self._constants[op.inputs[1]], (0, 3, 1, 2)))
                self._buffer(op.inputs[2], self._constants[op.inputs[2]])
            elif op.kind == "DEPTHWISE_CONV_2D":
                self._buffer(op.inputs[1], np.transpose(self._constants[op.inputs[1]], (3, 0, 1, 2)))
                self._buffer(op.inputs[2], self._constants[op.inputs[2]])
            elif op.kind == "PRELU":
                alpha = self._constants[op.inputs[1]]
                self._buffer(op.inputs[1], alpha.reshape(-1)[:, None, None] if alpha.ndim == 3 else alpha)

    def _buffer(self, tensor_id: int, value: np.ndarray) -> None:
        self.register_buffer(f"t{tensor_id}", torch.from_numpy(np.ascontiguousarray(value, np.float32)))

    def _w(self, tensor_id: int) -> torch.Tensor:
        return getattr(self, f"t{tensor_id}")

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = {}
        for tid, x in zip(self.input_ids, inputs):
            values[tid] = x.permute(0, 3, 1, 2) if x.dim() == 4 else x
        for op in self.ops:
            values[op.outputs[0]] = self._run(op, values)
        outs = []
        for tid in self.output_ids:
            y = values[tid]
            outs.append(y.permute(0, 2, 3, 1) if y.dim() == 4 else y)
        return tuple(outs)

    def _run(self, op: Op, values: dict[int, torch.Tensor]) -> torch.Tensor:
        x = values.get(op.inputs[0])
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            y = self._conv(op, x)
        elif op.kind == "MAX_POOL_2D":
            y = self._pool(op, x)
        elif op.kind == "ADD":
            y = x + values[op.inputs[1]]
        elif op.kind == "RELU":
            return F.relu(x)
        elif op.kind == "PRELU":
            return F.relu(x) - self._w(op.inputs[1]) * F.relu(-x)
        elif op.kind == "PAD":
            return self._pad(op, x)
        elif op.kind == "RESHAPE":
            return self._reshape(op, x)
        elif op.kind == "CONCATENATION":
            return self._concat(op, values)
        else:  # pragma: no cover - filtered in __init__
            raise UnsupportedGraphError(op.kind)
        return _activation(y, op.options["activation"])

    def _conv(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        weight = self._w(op.inputs[1])
        kh, kw = weight.shape[2:]
        sh, sw = op.options["stride"]
        dh, dw = op.options["dilation"]
        if op.options["same"]:
            h, w = self.shapes[op.inputs[0]][1:3]
            top, bottom = _same_padding(h, kh, sh, dh)
            left, right = _same_padding(w, kw, sw, dw)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        groups = x.shape[1] if op.kind == "DEPTHWISE_CONV_2D" else 1
        return F.conv2d(x, weight, self._w(op.inputs[2]), stride=(sh, sw), dilation=(dh, dw), groups=groups)

    def _pool(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        kh, kw = op.options["kernel"]
        sh, sw = op.options["stride"]
        if op.options["same"]:
            h, w = self.shapes[op.inputs[0]][1:3]
            top, bottom = _same_padding(h, kh, sh)
            left, right = _same_padding(w, kw, sw)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, (kh, kw), (sh, sw))

    def _pad(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        pads = self._constants[op.inputs[1]].astype(int)  # [[before, after]] per NHWC axis
        if pads[0].any():
            raise UnsupportedGraphError("padding the batch axis")
        if x.dim() != 4:
            raise UnsupportedGraphError("PAD on a tensor that is not 4-D")
        (t, b), (l, r), (c0, c1) = pads[1], pads[2], pads[3]
        return F.pad(x, (int(l), int(r), int(t), int(b), int(c0), int(c1)))

    def _reshape(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        target = list(self.shapes[op.outputs[0]])
        target[0] = -1
        y = x.reshape(target)
        return y.permute(0, 3, 1, 2) if y.dim() == 4 else y

    def _concat(self, op: Op, values: dict[int, torch.Tensor]) -> torch.Tensor:
        parts = [values[i] for i in op.inputs]
        axis = op.options["axis"]
        rank = parts[0].dim()
        axis = axis % rank
        if rank == 4:
            axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]
        return _activation(torch.cat(parts, dim=axis), op.options["activation"])


def _activation(y: torch.Tensor, code: int) -> torch.Tensor:
    if code == tflite.ActivationFunctionType.NONE:
        return y
    if code == tflite.ActivationFunctionType.RELU:
        return F.relu(y)
    if code == tflite.ActivationFunctionType.RELU6:
        return torch.clamp(y, 0.0, 6.0)
    raise UnsupportedGraphError(f"unsupported fused activation {code}")


def _read_constants(model: tflite.Model, graph: tflite.SubGraph) -> dict[int, np.ndarray]:
    constants = {}
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            continue
        dtype = _DTYPES.get(tensor.Type())
        if dtype is None:
            raise UnsupportedGraphError(f"constant {tensor.Name()!r} has unsupported type {tensor.Type()}")
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
        constants[i] = np.frombuffer(data.tobytes(), dtype=dtype).reshape(shape)
    return constants
