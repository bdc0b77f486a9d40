"""What the Helm chart's tests (tests/test_chart_*.py) share: the real tools as fixtures (helm v4, promtool,
kubernetes-validate, the CRD validators), rendering with a cache, and lookups in the rendered objects.

The chart (helm/liveportrait) is checked with real tools: helm v4 (lint --strict, template), the Kubernetes
OpenAPI schemas (kubernetes-validate, strict), the KEDA / prometheus-operator CRD schemas (@kubernetes-models
validators under node), promtool for every PromQL expression the chart ships, the local tritonserver's flag list, and
the probe / preStop commands executed for real.

Tools come from `make tools` (scripts/install_tools.sh -> .tools/). Without them the tests skip locally and fail in CI.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "liveportrait"
TOOLS = REPO / ".tools"
KUBE_VERSION = "1.34.0"
NAMESPACE = "lp"
RELEASE = "rel"
FULL = f"{RELEASE}-liveportrait"
EXAMPLES = ["values.yaml", "values-gpu-l4.yaml", "values-keda.yaml", "values-dev-cpu.yaml"]
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
# TLS is on by default and needs a certificate source: the renders of the examples that keep TLS on add this Secret
# (values-dev-cpu.yaml turns TLS off). Calls that set any orchestrator.tls.* value get nothing added.
TLS_SECRET = "orchestrator.tls.secretName=lp-tls"
TLS_MISSING = "orchestrator.tls.enabled is true (the default) but no certificate is configured"


def missing_tool(what: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is missing in CI: `make tools` (scripts/install_tools.sh) must install it")
    pytest.skip(f"{what} is missing: run `make tools`")


@pytest.fixture(scope="session")
def helm() -> str:
    path = TOOLS / "bin" / "helm"
    if not path.is_file():
        missing_tool(str(path))
    return str(path)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = TOOLS / "bin" / "promtool"
    found = str(path) if path.exists() else shutil.which("promtool")
    if not found:
        missing_tool("promtool")
    return found


@pytest.fixture(scope="session")
def kubernetes_validate():
    try:
        import kubernetes_validate as kv
    except ImportError:
        missing_tool("kubernetes-validate (pip)")
    return kv


@pytest.fixture(scope="session")
def crd_validator():
    node = shutil.which("node")
    modules = TOOLS / "node" / "node_modules"
    if not node or not (modules / "@kubernetes-models" / "keda").is_dir():
        missing_tool("node + @kubernetes-models CRD validators")

    def validate(objects: list[dict]) -> subprocess.CompletedProcess:
        return subprocess.run([node, str(REPO / "helm" / "tests" / "validate_crds.mjs"), str(modules)],
                              input=json.dumps(objects), capture_output=True, text=True, timeout=120)
    return validate


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def value_args(values: list[str], sets: list[str]) -> list[str]:
    args = []
    for v in values:
        if v != "values.yaml":
            args += ["-f", str(CHART / v)]
    if "values-dev-cpu.yaml" not in values and not any(s.startswith("orchestrator.tls.") for s in sets):
        sets = [TLS_SECRET, *sets]
    for s in sets:
        args += ["--set", s]
    return args


def template_args(values: list[str], sets: list[str]) -> list[str]:
    return [RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, *value_args(values, sets)]


_cache: dict = {}


def render(helm: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[dict]:
    key = (values, sets)
    if key not in _cache:
        proc = run_helm(helm, "template", *template_args(list(values), list(sets)))
        assert proc.returncode == 0, proc.stderr
        _cache[key] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return _cache[key]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name}, found {[d['metadata']['name'] for d in hits]}"
    return hits[0]


def kinds(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def triton(docs):
    return find(docs, "Deployment", f"{FULL}-triton")


def orchestrator(docs):
    return find(docs, "Deployment", f"{FULL}-orchestrator")


def container(deploy: dict, name: str) -> dict:
    return next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def flags(args: list[str]) -> dict[str, str]:
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        out[k] = v
    return out


def promql_check(promtool: str, exprs: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Parse PromQL expressions with promtool by wrapping each one in a recording rule."""
    rules = {"groups": [{"name": "check", "rules": [
        {"record": f"check:{re.sub(r'[^a-zA-Z0-9_]', '_', k)}", "expr": e} for k, e in exprs.items()]}]}
    path = tmp_path / "exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def pod_spec(deploy: dict) -> dict:
    return deploy["spec"]["template"]["spec"]


def env_values(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def validate_all(kubernetes_validate, docs):
    for doc in docs:
        if not doc["apiVersion"].startswith(CRD_GROUPS + ("cert-manager.io/",)):
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def orchestrator_config(env: dict, monkeypatch):
    """The orchestrator's configuration as its parser reads it from the rendered environment (plain values only;
    secrets and fields are not there outside a pod)."""
    from orchestrator import config as server_config

    for name in [k for k in os.environ if k.startswith("LIVEPORTRAIT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    return server_config.parse_args([])
