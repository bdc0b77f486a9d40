"""Animal mode (issue 11 item 3): `liveportrait-export --model-set animal` writes the contract under `*_animal` names,
served beside the human repository in the same tritonserver; `AnimationOptions.model_set: ANIMAL` runs the official
animal pipeline's motion on them; without an animal detector a request needs a box hint or `crop_source: false`."""
from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from load_tests import scenarios
from orchestrator.embedded import OrchestratorProcess
from orchestrator.keypoints import KeypointComposer, KeypointOptions, Motion, rotation_matrix, source_keypoints
from orchestrator.triton_process import TritonProcess

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"  # 600x704
HINT = [180.0, 120.0, 420.0, 400.0]


def template(name: str, frames: int):
    return scenarios.short_template(EXAMPLES / "templates" / name, frames)


# ---- without a server -------------------------------------------------------------------------------------------

def test_the_export_names_every_liveportrait_model_with_the_suffix():
    from export_scripts.served_models import contract_name, ensembles, for_model_set, served_models
    from export_scripts.profiles import TINY
    from orchestrator.model_names import LIVEPORTRAIT_MODELS

    for ensemble in ensembles(TINY):
        animal = for_model_set(ensemble, "animal")
        assert animal.name == ensemble.name + "_animal"
        assert all(step.model.endswith("_animal") for step in animal.steps)
        assert contract_name(animal.name) == ensemble.name and for_model_set(ensemble, "human") is ensemble
    # the names the orchestrator renames are exactly the exporter's LivePortrait models and ensembles
    assert LIVEPORTRAIT_MODELS == {m.name for m in served_models(TINY)} | {e.name for e in ensembles(TINY)}
    assert "render_i420" in LIVEPORTRAIT_MODELS and "face_detector" not in LIVEPORTRAIT_MODELS


def test_the_animal_keypoints_are_the_official_animal_pipelines():
    """live_portrait_pipeline_animal.py: x_d_i = scale_s * (x_c_s @ R_d_i + exp_d_i) + t_d_i (tz 0), then
    x_s + (x_d_i - x_d_0) * motion_multiplier(x_s, x_d_0), then stitching and driving_multiplier (not here)."""
    rng = np.random.default_rng(0)
    outputs = {"pitch": np.array([[3.0]]), "yaw": np.array([[-5.0]]), "roll": np.array([[2.0]]),
               "t": rng.normal(0, 0.02, (1, 3)), "exp": rng.normal(0, 0.01, (1, 63)), "scale": np.array([[1.4]]),
               "kp": rng.normal(0, 0.3, (1, 63))}
    source = source_keypoints(outputs)
    n = 5
    motion = Motion(np.full(n, 1.7, np.float32), rotation_matrix(rng.normal(0, 10, n), rng.normal(0, 10, n),
                                                                 rng.normal(0, 10, n)),
                    rng.normal(0, 0.01, (n, 21, 3)).astype(np.float32), rng.normal(0, 0.05, (n, 3)).astype(np.float32))
    composer = KeypointComposer(source, KeypointOptions(animal=True), driving_is_video=True)
    ours = np.concatenate([composer.compose(motion[:2]), composer.compose(motion[2:])])
    t = motion.t.copy()
    t[:, 2] = 0
    x_d = source.scale * (source.kp @ motion.R + motion.exp) + t[:, None, :]
    from orchestrator.keypoints import motion_multiplier
    official = source.x_s + (x_d - x_d[0]) * motion_multiplier(source.x_s, x_d[0])
    np.testing.assert_allclose(ours, official, atol=1e-5)
    assert composer.expression_friendly


def test_animal_options_disable_what_the_official_animal_pipeline_disables():
    from orchestrator.errors import FailedPrecondition
    from orchestrator.options import animate_options
    from protos.liveportrait.v1 import portrait_animator_pb2 as pb

    options = animate_options(pb.AnimationOptions(model_set=pb.ANIMAL, face_hint=HINT, eye_retargeting=True,
                                                  lip_retargeting=True, normalize_lip=True, driving_multiplier=1.2,
                                                  stitching=False), pb.OutputOptions())
    assert options.model_set == "animal"
    assert options.keypoints == KeypointOptions(driving_multiplier=np.float32(1.2), stitching=False, animal=True)
    assert animate_options(pb.AnimationOptions(model_set=pb.ANIMAL, crop_source=False), pb.OutputOptions())
    with pytest.raises(FailedPrecondition, match=r"face_hint.*crop_source: false"):
        animate_options(pb.AnimationOptions(model_set=pb.ANIMAL), pb.OutputOptions())
    from orchestrator.errors import InvalidRequest
    from orchestrator.service import keyframe_options
    with pytest.raises(InvalidRequest, match="keyframes"):
        keyframe_options(options)


# ---- served: the tiny animal repository beside the human one in one tritonserver ----------------------------------

@pytest.fixture(scope="module")
def animal_repository() -> Path:
    from export_scripts.cli import ExportRequest, run_export

    output = BUILD / "repo-tiny-cpu-animal"
    run_export(ExportRequest(weights="synthetic", profile="tiny", target="cpu", output=output, model_set="animal"),
               log=lambda *_: None)
    return output


@pytest.fixture(scope="module")
def both_sets(tiny_cpu_repository, animal_repository):
    with TritonProcess(tiny_cpu_repository, log_file=BUILD / "tritonserver-animal.log",
                       extra_args=(f"--model-repository={animal_repository}",)) as server:
        yield server


@pytest.fixture(scope="module")
def client(both_sets):
    with OrchestratorProcess(both_sets.grpc_url, BUILD / "orchestrator-animal.log") as process:
        with PortraitClient(process.target) as c:
            yield c


def inference_counts(triton: TritonProcess) -> dict[str, float]:
    text = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^nv_inference_count\{model="([^"]+)",version="1"\} (\S+)$', text, re.M)}


@pytest.mark.triton
def test_an_animal_request_with_a_box_hint_animates_on_the_animal_models(client, both_sets, tmp_path):
    import av

    before = inference_counts(both_sets)
    summary = client.animate(SOURCE, template("shake_face.pkl", 4), tmp_path / "out.mp4", model_set="animal",
                             face_hint=HINT)  # an animal template: no eye/lip lists
    assert summary.frames == 4 and (summary.width, summary.height) == (600, 704)  # pasted back
    assert list(summary.source_face_box) == HINT
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
    after = inference_counts(both_sets)
    used = {m for m in after if after[m] > before.get(m, 0)}
    assert {"render_i420_animal", "motion_extractor_u8_animal", "stitching_animal"} <= used, used
    assert not used & {"render_i420", "motion_extractor_u8", "stitching", "face_detector"}, used


@pytest.mark.triton
def test_an_animal_request_driven_by_a_video_or_uncropped(client, tmp_path):
    driving = EXAMPLES / "driving" / "d9.jpg"
    summary = client.animate(SOURCE, driving, tmp_path / "a.mp4", model_set="animal", crop_source=False)
    assert summary.frames == 1 and (summary.width, summary.height) == (512, 512)
    summary = client.animate(SOURCE, template("d7.pkl", 3), tmp_path / "b.mp4", model_set="animal",
                             face_hint=HINT, eye_retargeting=True)  # ignored, as the official animal pipeline does
    assert summary.frames == 3


@pytest.mark.triton
def test_an_animal_request_without_a_box_is_failed_precondition_saying_so(client, tmp_path):
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, template("shake_face.pkl", 2), tmp_path / "out.mp4", model_set="animal")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "face_hint" in error.value.details() and "crop_source: false" in error.value.details()


@pytest.mark.triton
def test_a_server_without_the_animal_models_says_how_to_get_them(triton_server, tmp_path):
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-no-animal.log") as process:
        with PortraitClient(process.target) as c, pytest.raises(grpc.RpcError) as error:
            c.animate(SOURCE, template("shake_face.pkl", 2), tmp_path / "out.mp4", model_set="animal",
                      crop_source=False)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION, error.value.details()
    assert "--model-set animal" in error.value.details()


# ---- served: the official-layout animal checkpoints, full size ---------------------------------------------------

@pytest.fixture(scope="module")
def official_animal_client(official_weights_for_seed, tiny_cpu_repository, tmp_path_factory):
    """`liveportrait-export --model-set animal` of official-layout checkpoints (`write_checkpoints.py --animal`,
    `liveportrait_animals/base_models_v1.1/`) served beside the tiny human repository. Official checkpoints are full
    size, so this costs ~60 s of export (50 of them the warping + decoder graph, exported and verified against
    PyTorch) and ~15 s per rendered frame on a 2-core CPU: one frame is rendered."""
    from export_scripts.cli import ExportRequest, run_export

    output = tmp_path_factory.mktemp("repo-full-animal")
    manifest = run_export(ExportRequest(weights=str(official_weights_for_seed(1)), profile="full", target="cpu",
                                        output=output, model_set="animal"), log=lambda *_: None)
    assert "render_i420_animal" in manifest["models"] and "face_detector" not in manifest["models"]
    assert "liveportrait_animals" in json.dumps(manifest["fingerprint"]["checkpoint_files"])
    with TritonProcess(tiny_cpu_repository, log_file=BUILD / "tritonserver-animal-full.log",
                       extra_args=(f"--model-repository={output}",)) as triton:
        with OrchestratorProcess(triton.grpc_url, BUILD / "orchestrator-animal-full.log") as process:
            with PortraitClient(process.target) as c:
                yield c


@pytest.mark.full
@pytest.mark.triton
def test_official_animal_checkpoints_animate_with_a_box_hint_and_refuse_without(official_animal_client, tmp_path):
    with pytest.raises(grpc.RpcError) as error:
        official_animal_client.animate(SOURCE, template("shake_face.pkl", 1), tmp_path / "no.mp4", model_set="animal")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "face_hint" in error.value.details()
    summary = official_animal_client.animate(SOURCE, template("shake_face.pkl", 1), tmp_path / "out.mp4",
                                             model_set="animal", face_hint=HINT)
    assert summary.frames == 1 and (summary.width, summary.height) == (600, 704)
