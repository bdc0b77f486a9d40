"""The PyTorch networks are the official ones: same state-dict layout, official files load strictly, clear errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from export_scripts.build import BASE_NETWORKS, build_networks
from export_scripts.checkpoints import CheckpointError, CheckpointPaths, load_official_checkpoints
from export_scripts.profiles import FULL, TINY
from export_scripts.synthetic_weights import load_synthetic_weights

RETARGETING_MANIFEST_GROUPS = {"retarget_shoulder": "stitching", "retarget_mouth": "lip", "retarget_eye": "eye"}


def manifest_entries(shared_dir: Path, network: str) -> dict[str, tuple[tuple[int, ...], str]]:
    manifest = json.loads((shared_dir / "reference" / f"manifest_{network}.json").read_text())
    return {e["name"]: (tuple(e["shape"]), e["dtype"]) for e in manifest["entries"]}


def state_entries(module: torch.nn.Module, prefix: str = "") -> dict[str, tuple[tuple[int, ...], str]]:
    return {prefix + k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("network", BASE_NETWORKS)
def test_full_profile_state_dict_equals_official_manifest(shared_dir, network):
    networks = build_networks(FULL)
    assert state_entries(getattr(networks, network)) == manifest_entries(shared_dir, network)


def test_retargeting_mlps_equal_official_manifest(shared_dir):
    networks = build_networks(FULL)
    ours = {}
    for group, part in RETARGETING_MANIFEST_GROUPS.items():
        ours.update(state_entries(getattr(networks, part), prefix=f"{group}."))
    assert ours == manifest_entries(shared_dir, "stitching_retargeting_module")


@pytest.fixture(scope="session")
def official_layout_weights(official_weights_for_seed) -> Path:
    """Synthetic checkpoints (seed 1, the golden case A weights) in the official download layout, animal set too.
    Shared with the golden tests; the tests that break files work on a copy."""
    return official_weights_for_seed(1)


def copy_of(weights: Path, tmp_path: Path) -> Path:
    """A private copy of a weights directory that a test may break."""
    return Path(shutil.copytree(weights, tmp_path / "w"))


def test_official_layout_loads_strictly(official_layout_weights):
    networks = build_networks(FULL)
    load_official_checkpoints(networks, CheckpointPaths.in_directory(official_layout_weights))
    saved = torch.load(official_layout_weights / "liveportrait/base_models/spade_generator.pth", weights_only=True)
    loaded = networks.spade_generator.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_animal_set_loads_with_the_human_retargeting_file(official_layout_weights):
    networks = build_networks(FULL)
    load_official_checkpoints(networks, CheckpointPaths.in_directory(official_layout_weights, "animal"))


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="appearance_feature_extractor.pth"):
        load_official_checkpoints(build_networks(FULL), CheckpointPaths.in_directory(tmp_path))


def test_partial_checkpoint_names_file_and_keys(official_layout_weights, tmp_path):
    broken = copy_of(official_layout_weights, tmp_path)
    path = broken / "liveportrait/base_models/motion_extractor.pth"
    state = torch.load(path, weights_only=True)
    del state["detector.fc_kp.bias"]
    state["detector.fc_exp.weight"] = torch.zeros(5, 5)
    state["detector.extra_head.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_official_checkpoints(build_networks(FULL), CheckpointPaths.in_directory(broken))
    message = str(error.value)
    assert "motion_extractor.pth" in message
    assert "missing keys: detector.fc_kp.bias" in message
    assert "unexpected keys: detector.extra_head.weight" in message
    assert "detector.fc_exp.weight (5, 5) != (63, 768)" in message


def test_retargeting_keys_load_with_or_without_ddp_prefix(official_layout_weights, tmp_path):
    groups = torch.load(official_layout_weights / "liveportrait/retargeting_models/stitching_retargeting_module.pth",
                        weights_only=True)
    assert all(k.startswith("module.") for k in groups["retarget_eye"])
    unprefixed = {g: {k.removeprefix("module."): v for k, v in sd.items()} for g, sd in groups.items()}
    weights = copy_of(official_layout_weights, tmp_path)
    torch.save(unprefixed, weights / "liveportrait/retargeting_models/stitching_retargeting_module.pth")
    networks = build_networks(FULL)
    load_official_checkpoints(networks, CheckpointPaths.in_directory(weights))
    assert torch.equal(networks.eye.state_dict()["mlp.0.weight"], groups["retarget_eye"]["module.mlp.0.weight"])


def test_retargeting_file_without_a_group_is_refused(official_layout_weights, tmp_path):
    weights = copy_of(official_layout_weights, tmp_path)
    path = weights / "liveportrait/retargeting_models/stitching_retargeting_module.pth"
    groups = torch.load(path, weights_only=True)
    del groups["retarget_mouth"]
    torch.save(groups, path)
    with pytest.raises(CheckpointError, match="missing group 'retarget_mouth'"):
        load_official_checkpoints(build_networks(FULL), CheckpointPaths.in_directory(weights))


def test_checkpoints_with_pickled_objects_are_refused(official_layout_weights, tmp_path):
    weights = copy_of(official_layout_weights, tmp_path)
    torch.save({"weights": Path("not a tensor")}, weights / "liveportrait/base_models/warping_module.pth")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*warping_module.pth"):
        load_official_checkpoints(build_networks(FULL), CheckpointPaths.in_directory(weights))


def test_synthetic_weights_are_deterministic_and_seeded():
    a, b, c = build_networks(TINY), build_networks(TINY), build_networks(TINY)
    load_synthetic_weights(a, seed=3)
    load_synthetic_weights(b, seed=3)
    load_synthetic_weights(c, seed=4)
    sa, sb, sc = (n.warping_module.state_dict() for n in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fourth.weight"], sc["fourth.weight"])


def test_synthetic_keypoints_stay_inside_the_warping_volume():
    networks = build_networks(TINY)
    load_synthetic_weights(networks, seed=0)
    with torch.no_grad():
        info = networks.motion_extractor.kp_info(torch.rand(2, 3, 256, 256))
    assert 1.0 < float(info["scale"].mean()) < 2.0
    assert float(info["kp"].abs().max()) < 1.5
