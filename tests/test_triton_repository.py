"""The CPU model repository served by the real tritonserver: every model READY and equal to in-process onnxruntime."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from export_scripts.onnx_export import example_inputs, relative_l2
from export_scripts.profiles import TINY
from export_scripts.served_models import repository_models, served_models
from orchestrator.triton_client import infer_inputs

SERVED, ENSEMBLES = repository_models(TINY)

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def client(triton_server):
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as c:
        yield c


def infer(client, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    result = client.infer(model, infer_inputs(inputs), outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def test_every_model_is_ready(client):
    names = [s.name for s in SERVED] + [e.name for e in ENSEMBLES]
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert {n: index.get(n) for n in names} == {n: "READY" for n in names}
    assert client.is_server_ready()


@pytest.mark.parametrize("spec", SERVED, ids=lambda s: s.name)
def test_triton_output_equals_onnxruntime(client, tiny_cpu_repository, spec):
    batch = example_inputs(spec, 3, seed=11)
    feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, batch)}
    session = ort.InferenceSession(str(tiny_cpu_repository / spec.name / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = dict(zip([t.name for t in spec.outputs], session.run(None, feeds)))
    served = infer(client, spec.name, feeds, [t.name for t in spec.outputs])
    for name, value in expected.items():
        assert served[name].shape == value.shape
        assert served[name].dtype == value.dtype
        if value.dtype == np.uint8:
            assert np.array_equal(served[name], value), name
        else:
            assert relative_l2(served[name], value) <= 1e-6, name


def test_render_ensemble_equals_its_steps(client):
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    motion = infer(client, "motion_extractor_u8", {"image_u8": source}, ["kp"])
    kp_source = motion["kp"]
    kp_driving = kp_source + rng.normal(0, 0.02, kp_source.shape).astype(np.float32)
    rendered = infer(client, "render_u8", {"source_u8": source, "kp_source": kp_source, "kp_driving": kp_driving},
                     ["image_u8"])["image_u8"]
    image = infer(client, "preprocess_image", {"image_u8": source}, ["image"])["image"]
    feature = infer(client, "appearance_feature_extractor", {"image": image}, ["feature_3d"])["feature_3d"]
    decoded = infer(client, "warping_spade", {"feature_3d": feature, "kp_source": kp_source,
                                              "kp_driving": kp_driving}, ["image"])["image"]
    expected = infer(client, "postprocess_image", {"image": decoded}, ["image_u8"])["image_u8"]
    assert rendered.shape == (2, 512, 512, 3) and rendered.dtype == np.uint8
    assert np.array_equal(rendered, expected)


def test_concurrent_requests_each_get_their_own_answer(client):
    """Dynamic batching merges concurrent requests; each must still get the outputs of its own input."""
    spec = next(s for s in served_models(TINY) if s.name == "motion_extractor")
    images = [example_inputs(spec, 1, seed=s)[0].numpy() for s in range(8)]
    alone = [infer(client, "motion_extractor", {"image": x}, ["kp"])["kp"] for x in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda x: infer(client, "motion_extractor", {"image": x}, ["kp"])["kp"], images))
    for got, expected in zip(together, alone):
        assert relative_l2(got, expected) <= 1e-5
    stats = client.get_inference_statistics("motion_extractor").model_stats[0]
    assert stats.inference_count >= stats.execution_count > 0


def test_render_i420_is_render_u8_in_yuv420(client):
    import cv2

    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    kp_source = infer(client, "motion_extractor_u8", {"image_u8": source}, ["kp"])["kp"]
    feeds = {"source_u8": source, "kp_source": kp_source, "kp_driving": kp_source * 1.05}
    rgb = infer(client, "render_u8", feeds, ["image_u8"])["image_u8"][0]
    i420 = infer(client, "render_i420", feeds, ["image_i420"])["image_i420"][0]
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)[:512]
    assert np.abs(i420[:512].astype(int) - luma.astype(int)).max() <= 1
    assert i420.nbytes == rgb.nbytes // 2
