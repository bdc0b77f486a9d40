"""Installs are reproducible: every dependency is pinned with hashes in requirements/*.lock, the locks agree with
pyproject.toml, and the environment the tests run in is the locked one (an old environment cannot hide a drift)."""
from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
# lock file -> the extras of pyproject.toml it resolves (None: a lock of its own .in file)
LOCKS = {
    "dev.lock": ("export", "web", "webrtc", "dev"),
    "web.lock": ("web",),
    "export.lock": ("export",),
    "webrtc.lock": ("webrtc",),
    "triton-python.lock": None,
}


def read_lock(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a pip-compile lock with --generate-hashes."""
    pins: dict[str, tuple[Version, int]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)(.*)$", line)
        assert match, f"{path.name}: not an exact pin: {line[:80]}"
        name, version, rest = match.groups()
        pins[canonicalize_name(name)] = (Version(version), len(re.findall(r"--hash=sha256:[0-9a-f]{64}", rest)))
    return pins


def wanted(extras) -> list[Requirement]:
    """The requirements of pyproject.toml (runtime + the given extras), or of the lock's .in file."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def in_file(lock: str) -> list[Requirement]:
    text = (REQUIREMENTS / lock.replace(".lock", ".in")).read_text()
    return [Requirement(line.split("#", 1)[0]) for line in text.splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_requirement_is_pinned_by_the_lock_within_its_range(lock):
    pins = read_lock(REQUIREMENTS / lock)
    requirements = in_file(lock) if LOCKS[lock] is None else wanted(LOCKS[lock])
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {requirement.name}: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{lock} pins {requirement.name}=={version}, outside pyproject's {requirement.specifier}: run `make lock`"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_has_hashes(lock):
    pins = read_lock(REQUIREMENTS / lock)
    assert pins
    unhashed = [name for name, (_, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"{lock}: pins without a hash: {unhashed}"


def test_the_dev_lock_includes_the_build_backend():
    """`make setup` installs the project with --no-build-isolation: setuptools comes from the lock too."""
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = read_lock(REQUIREMENTS / "dev.lock")
    for requirement in map(Requirement, build):
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)][0])


def test_the_locks_agree_on_shared_packages():
    """The orchestrator image (web.lock), the exporter (export.lock), the gateway (webrtc.lock) and the tests
    (dev.lock) run the same versions."""
    dev = read_lock(REQUIREMENTS / "dev.lock")
    for lock in ("web.lock", "export.lock", "webrtc.lock"):
        for name, (version, _) in read_lock(REQUIREMENTS / lock).items():
            assert dev[name][0] == version, f"{lock} pins {name}=={version}, dev.lock {dev[name][0]}: run `make lock`"


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not in a virtual environment made by `make setup`")
def test_the_test_environment_is_the_locked_one():
    """`make setup` reinstalls when a lock changes; an environment that drifted would test other releases."""
    drifted = []
    for name, (version, _) in read_lock(REQUIREMENTS / "dev.lock").items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            drifted.append(f"{name} (not installed)")
            continue
        if installed != version:
            drifted.append(f"{name} {installed} (lock: {version})")
    assert not drifted, "the environment is not the locked one (run `make setup`): " + ", ".join(drifted)


def test_the_embedded_server_lock_keeps_numpy_below_2():
    """nvidia-pytriton's Python-backend stub needs numpy<2; the project's own environment does not."""
    assert read_lock(REQUIREMENTS / "triton-python.lock")["numpy"][0] < Version("2")
