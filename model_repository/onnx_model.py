"""Generic Triton Python-backend model: runs the ONNX file next to it with onnxruntime on the CPU.

This is the CPU target of the model repository (the tritonserver shipped in the nvidia-pytriton wheel has the Python
backend but no onnxruntime backend). Every model of the CPU target uses this same file; what it runs comes from its
``config.pbtxt``: tensor names and types, and the parameters ``onnx_file`` and ``intra_op_threads``.

The Python-backend stub starts an isolated interpreter that ignores PYTHONPATH; the directories holding numpy and
onnxruntime for it are taken from ``LIVEPORTRAIT_BACKEND_PYTHONPATH`` (set by the project's Triton launcher).

Triton's dynamic batcher hands ``execute`` several requests at once: their inputs are concatenated along the batch
axis, run in one onnxruntime call, and the outputs are split back per request.
"""
import json
import os
import sys

for _path in reversed(os.environ.get("LIVEPORTRAIT_BACKEND_PYTHONPATH", "").split(os.pathsep)):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(version_dir, params.get("onnx_file", "model.onnx")), options,
            providers=["CPUExecutionProvider"])
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]

    def execute(self, requests):
        batches = [
            {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            for request in requests
        ]
        sizes = [next(iter(b.values())).shape[0] for b in batches]
        # one request (the common case at low load) is fed as is: concatenating would copy every input
        feed = batches[0] if len(batches) == 1 else {
            name: np.concatenate([b[name] for b in batches]) for name in self.input_names}
        try:
            outputs = self.session.run(self.output_names, feed)
        except Exception as exc:  # report per request; the model stays loaded
            error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]))
                       for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
