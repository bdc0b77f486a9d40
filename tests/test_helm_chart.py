"""The Helm chart (helm/liveportrait), checked with real tools: helm v4 (lint --strict, template), the Kubernetes
OpenAPI schemas (kubernetes-validate, strict), the KEDA / prometheus-operator CRD schemas (@kubernetes-models
validators under node), promtool for every PromQL expression the chart ships, the local tritonserver's flag list, and
the probe / preStop commands executed for real.

Tools come from `make tools` (scripts/install_tools.sh -> .tools/). Without them the tests skip locally and fail in CI.
"""
from __future__ import annotations

import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
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
BOTTLENECK = {"warping_spade", "appearance_feature_extractor", "motion_extractor"}


def _missing(what: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is missing in CI: `make tools` (scripts/install_tools.sh) must install it")
    pytest.skip(f"{what} is missing: run `make tools`")


@pytest.fixture(scope="session")
def helm() -> str:
    path = TOOLS / "bin" / "helm"
    if not path.is_file():
        _missing(str(path))
    return str(path)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = TOOLS / "bin" / "promtool"
    found = str(path) if path.exists() else shutil.which("promtool")
    if not found:
        _missing("promtool")
    return found


@pytest.fixture(scope="session")
def kubernetes_validate():
    try:
        import kubernetes_validate as kv
    except ImportError:
        _missing("kubernetes-validate (pip)")
    return kv


@pytest.fixture(scope="session")
def crd_validator():
    node = shutil.which("node")
    modules = TOOLS / "node" / "node_modules"
    if not node or not (modules / "@kubernetes-models" / "keda").is_dir():
        _missing("node + @kubernetes-models CRD validators")

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


# ---------------------------------------------------------------------------------------------------------------------
# lint, render, validate every example
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", EXAMPLES)
def test_lint_strict(helm, values):
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
            *value_args([values], [])]
    proc = run_helm(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", EXAMPLES)
def test_rendered_objects_match_kubernetes_schemas(helm, kubernetes_validate, values):
    docs = render(helm, (values,))
    core = [d for d in docs if not d["apiVersion"].startswith(CRD_GROUPS)]
    assert len(core) >= 8
    for doc in core:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("values,sets", [
    ("values.yaml", ()),
    ("values-keda.yaml", ()),
    ("values.yaml", ("metrics.serviceMonitor.enabled=false", "metrics.podMonitor.enabled=true")),
])
def test_custom_resources_match_crd_schemas(helm, crd_validator, values, sets):
    docs = render(helm, (values,), sets)
    crs = [d for d in docs if d["apiVersion"].startswith(CRD_GROUPS)]
    assert crs
    proc = crd_validator(crs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("VALID") == len(crs)


def test_validators_reject_broken_objects(helm, kubernetes_validate, crd_validator):
    """Negative controls: the validators used above do catch mistakes."""
    docs = render(helm)
    deploy = json.loads(json.dumps(triton(docs)))
    deploy["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)
    deploy = json.loads(json.dumps(triton(docs)))
    deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "two minutes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)

    so = json.loads(json.dumps(find(render(helm, ("values-keda.yaml",)), "ScaledObject", f"{FULL}-triton")))
    so["spec"]["minReplicaCount"] = "one"
    rule = json.loads(json.dumps(find(docs, "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"] = "not a list"
    proc = crd_validator([so, rule])
    assert proc.returncode == 1
    assert proc.stdout.count("INVALID") == 2, proc.stdout


def test_kubectl_installed():
    path = TOOLS / "bin" / "kubectl"
    if not path.is_file():
        _missing(str(path))
    out = subprocess.run([str(path), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["clientVersion"]["minor"].startswith("34")


def test_helm_is_v4(helm):
    assert run_helm(helm, "version", "--short").stdout.startswith("v4.")


# ---------------------------------------------------------------------------------------------------------------------
# bad values fail with a clear message
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values,sets,message", [
    ("values.yaml", ["triton.replicaCount=-1"], "/triton/replicaCount"),
    ("values.yaml", ["orchestrator.replicaCount=-3"], "/orchestrator/replicaCount"),
    ("values-gpu-l4.yaml", ["triton.gpu.count=0"], "/triton/gpu/count"),
    ("values.yaml", ["triton.modelRepository.source=pvc"], "/triton/modelRepository/pvc/claimName"),
    ("values.yaml", ["triton.modelRepository.source=cloud"], "/triton/modelRepository/cloud/uri"),
    ("values.yaml", ["triton.modelRepository.source=cloud", "triton.modelRepository.cloud.uri=http://x/y"],
     "/triton/modelRepository/cloud/uri"),
    ("values.yaml", ["triton.modelRepository.source=initContainer"], "/triton/modelRepository/initContainer"),
    ("values.yaml", ["triton.modelRepository.source=nfs"], "/triton/modelRepository/source"),
    ("values.yaml", ["triton.modelRepository.path="], "/triton/modelRepository/path"),
    ("values.yaml", ["triton.target=tpu"], "/triton/target"),
    ("values.yaml", ["triton.autoscaling.minReplicas=0"], "/triton/autoscaling/minReplicas"),
    ("values.yaml", ["autoscaling.engine=vpa"], "/autoscaling/engine"),
    ("values.yaml", ["triton.resourcez.cpu=1"], "additional properties 'resourcez'"),
    ("values.yaml", ["orchestrator.healthPort=0"], "/orchestrator/healthPort"),
    ("values.yaml", [TLS_SECRET, "orchestrator.tls.certManager.issuer=ca"], "additional properties 'issuer'"),
    ("values.yaml", [TLS_SECRET, "orchestrator.apiKeys.file=keys.json"], "additional properties 'file'"),
    ("values.yaml", ["orchestrator.faceStack=retinaface"], "/orchestrator/faceStack"),
    ("values.yaml", ["orchestrator.cpuPerGpuReplica=-1"], "/orchestrator/cpuPerGpuReplica"),
])
def test_bad_values_fail_lint_with_a_clear_message(helm, values, sets, message):
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *value_args([values], sets)]
    proc = run_helm(helm, *args)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("sets,message", [
    (["triton.gpu.count=0"], "triton.gpu.count must be >= 1 when triton.target is gpu"),
    (["triton.target=pytorch", "triton.gpu.count=0"], "triton.gpu.count must be >= 1 when triton.target is pytorch"),
    (["triton.modelRepository.source=pvc"], "triton.modelRepository.pvc.claimName is required"),
    (["triton.modelRepository.source=cloud"], "triton.modelRepository.cloud.uri must be an s3://, gs:// or as://"),
    (["triton.modelRepository.source=initContainer"], "initContainer.image.repository and .command are required"),
    (["triton.terminationGracePeriodSeconds=90"], "must be larger than triton.drain.preStopSleepSeconds"),
    (["orchestrator.terminationGracePeriodSeconds=100"], "must be larger than orchestrator.drain.preStopSleepSeconds"),
    (["metrics.podMonitor.enabled=true"], "enable only one of metrics.serviceMonitor and metrics.podMonitor"),
    (["triton.autoscaling.minReplicas=5"], "minReplicas must not exceed"),
    (["orchestrator.resources.requests=null"], "orchestrator.resources.requests.cpu must be set"),
    (["orchestrator.tls.enabled=true"], TLS_MISSING),
    (["orchestrator.tls.certManager.enabled=true"], "orchestrator.tls.certManager.issuerRef.name is required"),
    (["orchestrator.tls.enabled=false", "orchestrator.tls.clientCA.secretName=lp-ca"],
     "orchestrator.tls.clientCA.secretName (mTLS) needs orchestrator.tls.enabled=true"),
    (["orchestrator.healthPort=50051"], "orchestrator.healthPort (50051) must differ"),
    (["orchestrator.healthPort=9100"], "orchestrator.healthPort (9100) must differ"),
])
def test_template_guards_without_schema(helm, sets, message):
    """Cross-field rules the schema cannot express, and the same guards when schema validation is skipped."""
    args = ["template", *template_args([], sets), "--skip-schema-validation"]
    proc = run_helm(helm, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Triton Deployment
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values,gpus", [("values.yaml", 1), ("values-gpu-l4.yaml", 1), ("values-keda.yaml", 1)])
def test_gpu_scheduling(helm, values, gpus):
    d = triton(render(helm, (values,)))
    pod = d["spec"]["template"]["spec"]
    c = container(d, "triton")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "--allow-gpu-metrics=true" in c["args"]
    if values == "values-gpu-l4.yaml":
        term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.product", "operator": "In",
                                             "values": ["NVIDIA-L4"]}]


def test_pytorch_target_is_scheduled_on_a_gpu_and_sizes_the_orchestrator_like_gpu(helm):
    pytorch = render(helm, sets=("triton.target=pytorch",))
    c = container(triton(pytorch), "triton")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and "--allow-gpu-metrics=true" in c["args"]
    assert [d for d in render(helm) if d["kind"] == "HorizontalPodAutoscaler"] == \
        [d for d in pytorch if d["kind"] == "HorizontalPodAutoscaler"]


def test_live_stream_limits_reach_the_orchestrator(helm):
    env = {e["name"]: e.get("value") for e in container(orchestrator(render(helm, sets=(
        "orchestrator.live.maxStreams=16", "orchestrator.live.maxFps=25"))), "orchestrator")["env"]}
    assert (env["LIVEPORTRAIT_LIVE_MAX_STREAMS"], env["LIVEPORTRAIT_LIVE_MAX_FPS"]) == ("16", "25")
    assert env["LIVEPORTRAIT_LIVE_MAX_SESSION_SECONDS"] == "1800"


def test_the_animal_repository_is_served_beside_the_human_one(helm):
    args = container(triton(render(helm, sets=("triton.modelRepository.extraRepositories[0]=/models-animal",))),
                     "triton")["args"]
    assert [a for a in args if a.startswith("--model-repository=")] == ["--model-repository=/models",
                                                                         "--model-repository=/models-animal"]


def test_scheduling_knobs_from_values(helm):
    d = triton(render(helm, sets=("triton.runtimeClassName=nvidia", "triton.gpu.count=2",
                                  "triton.nodeSelector.pool=gpu-l4", "triton.tolerations[0].key=dedicated",
                                  "triton.tolerations[0].operator=Exists")))
    pod = d["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"pool": "gpu-l4"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]
    assert container(d, "triton")["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "runtimeClassName" not in triton(render(helm))["spec"]["template"]["spec"]


def test_dev_cpu_has_no_gpu(helm):
    d = triton(render(helm, ("values-dev-cpu.yaml",)))
    pod = d["spec"]["template"]["spec"]
    text = json.dumps(d)
    assert "nvidia.com/gpu" not in text
    assert "tolerations" not in pod and "affinity" not in pod
    assert "--allow-gpu-metrics=false" in container(d, "triton")["args"]
    assert d["spec"]["replicas"] == 1


def test_triton_server_flags(helm):
    c = container(triton(render(helm)), "triton")
    f = flags(c["args"])
    assert c["command"] == ["tritonserver"]
    assert f["--model-repository"] == "/models"
    assert f["--model-control-mode"] == "none"
    assert f["--strict-readiness"] == "true"
    assert int(f["--exit-timeout-secs"]) == 60
    assert int(f["--grpc-max-connection-age"]) > 0 and int(f["--grpc-max-connection-age-grace"]) > 0
    assert f["--metrics-port"] == "8002" and f["--grpc-port"] == "8001" and f["--http-port"] == "8000"
    assert f["--metrics-config"] == "summary_latencies=true"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}


def test_triton_flags_exist_in_tritonserver(helm):
    """Every flag the chart passes is accepted by tritonserver 2.51 (= NGC 24.10), the project's embedded build."""
    binary = REPO / ".triton" / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        _missing(f"{binary} (make setup)")
    env = dict(os.environ, LD_LIBRARY_PATH=f"{binary.parent.parent / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60, env=env)
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", out.stdout + out.stderr, re.M))
    assert len(known) > 50, out.stdout + out.stderr
    for values in EXAMPLES:
        c = container(triton(render(helm, (values,))), "triton")
        used = {a.split("=")[0] for a in c["args"]}
        assert used <= known, used - known


def test_probes(helm):
    for values in EXAMPLES:
        c = container(triton(render(helm, (values,))), "triton")
        s, live, ready = c["startupProbe"], c["livenessProbe"], c["readinessProbe"]
        assert s["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
        # model load + TensorRT engine build + warm-up: at least 10 minutes on GPU
        window = s["periodSeconds"] * s["failureThreshold"]
        assert window >= (600 if values != "values-dev-cpu.yaml" else 300), (values, window)
        assert live["httpGet"] == {"path": "/v2/health/live", "port": "http"}
        assert "/v2/health/ready" in ready["exec"]["command"][-1]
        assert "/tmp/liveportrait-draining" in ready["exec"]["command"][-1]
    # the orchestrator: native gRPC probes on the plaintext health-only port, TLS on (default) or off (dev values),
    # with the timings of values.yaml
    values = yaml.safe_load((CHART / "values.yaml").read_text())["orchestrator"]
    for example in ("values.yaml", "values-dev-cpu.yaml"):
        o = container(orchestrator(render(helm, (example,))), "orchestrator")
        assert {p["name"]: p["containerPort"] for p in o["ports"]}["health"] == 8086
        env = {e["name"]: e.get("value") for e in o["env"]}
        assert env["LIVEPORTRAIT_HEALTH_PORT"] == "8086"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert o[probe]["grpc"] == {"port": 8086}, (example, probe)
            assert not {"tcpSocket", "exec", "httpGet"} & set(o[probe])
            if example == "values.yaml":
                timing = {k: o[probe][k] for k in ("periodSeconds", "failureThreshold", "timeoutSeconds")}
                assert timing == values[probe], probe
    o = container(orchestrator(render(helm, sets=("orchestrator.healthPort=9000",))), "orchestrator")
    assert o["livenessProbe"]["grpc"] == {"port": 9000}
    assert {"name": "health", "containerPort": 9000, "protocol": "TCP"} in o["ports"]


@pytest.mark.parametrize("values", EXAMPLES)
def test_drain_inequality(helm, values):
    docs = render(helm, (values,))
    d = triton(docs)
    c = container(d, "triton")
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    sleep = int(re.search(r"sleep (\d+)", pre[-1]).group(1))
    exit_timeout = int(flags(c["args"])["--exit-timeout-secs"])
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert sleep > 0 and exit_timeout > 0
    assert grace > sleep + exit_timeout, (grace, sleep, exit_timeout)
    o = orchestrator(docs)
    oc = container(o, "orchestrator")
    osleep = int(re.search(r"sleep (\d+)", oc["lifecycle"]["preStop"]["exec"]["command"][-1]).group(1))
    timeout = int(next(e["value"] for e in oc["env"] if e["name"] == "LIVEPORTRAIT_MAX_REQUEST_SECONDS"))
    assert o["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > osleep + timeout


def test_prestop_really_marks_unready_then_sleeps(helm, tmp_path):
    """Run the rendered preStop under /bin/sh (the `sh -c touch ...; sleep` form is easy to get wrong)."""
    c = container(triton(render(helm, sets=("triton.drain.preStopSleepSeconds=1",))), "triton")
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[:2] == ["/bin/sh", "-c"]
    marker = tmp_path / "draining"
    script = cmd[2].replace("/tmp/liveportrait-draining", str(marker))
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        code = type(self).status if self.path == "/v2/health/ready" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_readiness_probe_script_runs(helm, tmp_path):
    """The exec readiness probe: 200 from /v2/health/ready and no drain marker -> ready; otherwise not."""
    bash = shutil.which("bash")
    if not bash:
        pytest.skip("bash is not installed")
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = container(triton(render(helm, sets=(f"triton.ports.http={port}",))), "triton")
        cmd = c["readinessProbe"]["exec"]["command"]
        marker = tmp_path / "draining"
        script = cmd[-1].replace("/tmp/liveportrait-draining", str(marker))

        def probe() -> int:
            return subprocess.run([bash, "-c", script], capture_output=True, timeout=30).returncode
        assert probe() == 0
        _Ready.status = 503
        assert probe() != 0
        _Ready.status = 200
        marker.touch()
        assert probe() != 0
    finally:
        _Ready.status = 200
        server.shutdown()


def test_security_contexts(helm):
    for values in EXAMPLES:
        for d in render(helm, (values,)):
            if d["kind"] == "Deployment":
                pod = d["spec"]["template"]["spec"]
            elif d["kind"] == "Pod":
                pod = d["spec"]
            else:
                continue
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            for c in pod["containers"] + pod.get("initContainers", []):
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, c["name"]
                assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
                assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, c["name"]
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]


def test_volumes_shm_tmp_and_resources(helm):
    d = triton(render(helm))
    vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    c = container(d, "triton")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm" and mounts["/tmp"] == "tmp"
    # the GPU configs write ORT-TensorRT engines to /tmp/trt_cache (model_repository/gpu/*/config.pbtxt)
    cache_path = re.search(r'key: "trt_engine_cache_path"\s+value: "([^"]+)"',
                           (REPO / "model_repository/gpu/warping_spade/config.pbtxt").read_text()).group(1)
    assert mounts[cache_path] == "engine-cache"
    for deploy in (d, orchestrator(render(helm))):
        for c in deploy["spec"]["template"]["spec"]["containers"]:
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"]
    l4 = triton(render(helm, ("values-gpu-l4.yaml",)))
    vols = {v["name"]: v for v in l4["spec"]["template"]["spec"]["volumes"]}
    assert vols["engine-cache"]["persistentVolumeClaim"]["claimName"] == "liveportrait-trt-cache-l4"


def test_model_repository_sources(helm):
    pvc = triton(render(helm, sets=("triton.modelRepository.source=pvc", "triton.modelRepository.pvc.claimName=models")))
    vols = {v["name"]: v for v in pvc["spec"]["template"]["spec"]["volumes"]}
    assert vols["model-repository"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert flags(container(pvc, "triton")["args"])["--model-repository"] == "/models"

    cloud = triton(render(helm, sets=("triton.modelRepository.source=cloud",
                                      "triton.modelRepository.cloud.uri=s3://bucket/liveportrait/gpu",
                                      "triton.modelRepository.cloud.credentialsSecret=aws-creds")))
    c = container(cloud, "triton")
    assert flags(c["args"])["--model-repository"] == "s3://bucket/liveportrait/gpu"
    assert c["envFrom"] == [{"secretRef": {"name": "aws-creds"}}]
    assert "model-repository" not in {v["name"] for v in cloud["spec"]["template"]["spec"]["volumes"]}

    gcs = container(triton(render(helm, sets=("triton.modelRepository.source=cloud",
                                              "triton.modelRepository.cloud.uri=gs://b/repo",
                                              "triton.modelRepository.cloud.gcsCredentialsSecret=gcs-key"))), "triton")
    env = {e["name"]: e.get("value") for e in gcs["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/secrets/liveportrait/gcs/key.json"

    init = triton(render(helm, sets=("triton.modelRepository.source=initContainer",
                                     "triton.modelRepository.initContainer.image.repository=exporter",
                                     "triton.modelRepository.initContainer.image.tag=1",
                                     "triton.modelRepository.initContainer.command={liveportrait-export}",
                                     "triton.modelRepository.initContainer.args={--output,/models}")))
    pod = init["spec"]["template"]["spec"]
    ic = pod["initContainers"][0]
    assert ic["image"] == "exporter:1" and ic["command"] == ["liveportrait-export"]
    assert {"name": "model-repository", "mountPath": "/models"} in ic["volumeMounts"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["model-repository"]["emptyDir"]["sizeLimit"] == "20Gi"


def test_audio_models_are_exported_by_the_init_container_and_the_audio_limit_reaches_the_orchestrator(helm):
    exporter = ("triton.modelRepository.source=initContainer", "triton.modelRepository.initContainer.image.repository=e",
                "triton.modelRepository.initContainer.image.tag=1", "triton.modelRepository.audio=true",
                "orchestrator.maxAudioSeconds=120")
    docs = render(helm, sets=(TLS_SECRET, *exporter, "triton.modelRepository.initContainer.command={liveportrait-export}",
                              "triton.modelRepository.initContainer.args={--output,/models}"))
    init = triton(docs)["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == ["liveportrait-export"] and init["args"] == ["--output", "/models", "--audio"]
    env = {e["name"]: e.get("value") for e in container(orchestrator(docs), "orchestrator")["env"]}
    assert env["LIVEPORTRAIT_MAX_AUDIO_SECONDS"] == "120"
    # a copy of an exported repository (not the exporter) is left as it is: the models must be in the copy
    copy = render(helm, sets=(TLS_SECRET, *exporter, "triton.modelRepository.initContainer.command={rclone}",
                              "triton.modelRepository.initContainer.args={copy,remote:repo,/models}"))
    assert triton(copy)["spec"]["template"]["spec"]["initContainers"][0]["args"] == ["copy", "remote:repo", "/models"]


# ---------------------------------------------------------------------------------------------------------------------
# Services, orchestrator, PDB, NetworkPolicy
# ---------------------------------------------------------------------------------------------------------------------

def test_headless_triton_service_and_orchestrator_target(helm):
    docs = render(helm)
    grpc = find(docs, "Service", f"{FULL}-triton-grpc")
    assert grpc["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in grpc["spec"]["ports"]}["grpc"] == 8001
    assert grpc["spec"]["selector"]["app.kubernetes.io/component"] == "triton"
    metrics = find(docs, "Service", f"{FULL}-triton-metrics")
    assert [p["port"] for p in metrics["spec"]["ports"]] == [8002]
    env = {e["name"]: e.get("value") for e in container(orchestrator(docs), "orchestrator")["env"]}
    assert env["LIVEPORTRAIT_TRITON_URL"] == f"dns:///{FULL}-triton-grpc.{NAMESPACE}.svc.cluster.local:8001"
    # the Deployment's pod labels are what the headless Service selects
    labels = triton(docs)["spec"]["template"]["metadata"]["labels"]
    assert grpc["spec"]["selector"].items() <= labels.items()


def test_orchestrator_config(helm):
    docs = render(helm, sets=("orchestrator.tls.enabled=true", "orchestrator.tls.secretName=lp-tls",
                              "orchestrator.maxConcurrentRequests=3"))
    o = orchestrator(docs)
    c = container(o, "orchestrator")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["LIVEPORTRAIT_MAX_CONCURRENT"] == "3"
    assert env["LIVEPORTRAIT_MAX_QUEUED"] == "32"
    assert env["LIVEPORTRAIT_MAX_MESSAGE_BYTES"] == "33554432"
    assert env["LIVEPORTRAIT_MAX_REQUEST_SECONDS"] == "120"
    assert env["LIVEPORTRAIT_FACE_STACK"] == "mediapipe"  # the orchestrator's --face-stack
    assert env["LIVEPORTRAIT_PORT"] == "50051" and env["LIVEPORTRAIT_METRICS_PORT"] == "9100"
    assert env["LIVEPORTRAIT_TLS_CERT"] == "/etc/liveportrait/tls/tls.crt"
    assert env["LIVEPORTRAIT_TLS_KEY"] == "/etc/liveportrait/tls/tls.key"
    vols = {v["name"]: v for v in o["spec"]["template"]["spec"]["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "lp-tls"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 50051, "metrics": 9100, "health": 8086}
    assert "nvidia.com/gpu" not in json.dumps(o)
    assert "LIVEPORTRAIT_TLS_CERT" not in json.dumps(orchestrator(render(helm, sets=("orchestrator.tls.enabled=false",))))
    svc = find(docs, "Service", f"{FULL}-orchestrator")
    assert svc["spec"]["ports"][0]["port"] == 50051
    assert find(docs, "Service", f"{FULL}-orchestrator-headless")["spec"]["clusterIP"] == "None"


# ---------------------------------------------------------------------------------------------------------------------
# TLS (on by default), mTLS, API keys
# ---------------------------------------------------------------------------------------------------------------------

def _pod(deploy: dict) -> dict:
    return deploy["spec"]["template"]["spec"]


def _env(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def _validate_all(kubernetes_validate, docs):
    for doc in docs:
        if not doc["apiVersion"].startswith(CRD_GROUPS + ("cert-manager.io/",)):
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_tls_is_on_by_default_and_needs_a_certificate_source(helm, kubernetes_validate):
    # no source: template and install stop with a message that says what to set (helm lint treats `fail` as
    # informational in lint mode)
    for cmd in (["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION],
                ["install", RELEASE, str(CHART), "--dry-run=client"]):
        proc = run_helm(helm, *cmd)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert TLS_MISSING in out and "orchestrator.tls.secretName" in out, out
        assert "orchestrator.tls.certManager.enabled=true" in out and "orchestrator.tls.enabled=false" in out
    # a user Secret: mounted read-only (tls.crt, tls.key only, 0440) and passed as --tls-cert / --tls-key
    docs = render(helm, sets=("orchestrator.tls.secretName=lp-tls",))
    _validate_all(kubernetes_validate, docs)
    d = orchestrator(docs)
    c = container(d, "orchestrator")
    vols = {v["name"]: v for v in _pod(d)["volumes"]}
    assert vols["tls"]["secret"] == {"secretName": "lp-tls", "defaultMode": 0o440,
                                     "items": [{"key": "tls.crt", "path": "tls.crt"},
                                               {"key": "tls.key", "path": "tls.key"}]}
    assert {"name": "tls", "mountPath": "/etc/liveportrait/tls", "readOnly": True} in c["volumeMounts"]
    env = _env(c)
    assert env["LIVEPORTRAIT_TLS_CERT"] == "/etc/liveportrait/tls/tls.crt"
    assert env["LIVEPORTRAIT_TLS_KEY"] == "/etc/liveportrait/tls/tls.key"
    assert "LIVEPORTRAIT_TLS_CLIENT_CA" not in env and "LIVEPORTRAIT_API_KEYS" not in env
    assert not [x for x in docs if x["kind"] == "Certificate"]
    # dev values: plaintext, on purpose (values-dev-cpu.yaml says so)
    dev = render(helm, ("values-dev-cpu.yaml",))
    _validate_all(kubernetes_validate, dev)
    c = container(orchestrator(dev), "orchestrator")
    assert not [k for k in _env(c) if k.startswith("LIVEPORTRAIT_TLS")]
    assert [v["name"] for v in _pod(orchestrator(dev))["volumes"]] == ["tmp"]
    assert "tls:\n    enabled: false" in (CHART / "values-dev-cpu.yaml").read_text()


@pytest.mark.parametrize("headless", [True, False])
def test_cert_manager_certificate(helm, kubernetes_validate, headless):
    sets = ("orchestrator.tls.certManager.enabled=true", "orchestrator.tls.certManager.issuerRef.name=lp-ca",
            "orchestrator.tls.certManager.issuerRef.kind=Issuer", f"orchestrator.service.headless={str(headless).lower()}",
            "web.enabled=true")
    docs = render(helm, sets=sets)
    _validate_all(kubernetes_validate, docs)
    cert = find(docs, "Certificate", f"{FULL}-orchestrator")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    spec = cert["spec"]
    secret = f"{FULL}-orchestrator-tls"
    assert spec["secretName"] == secret
    assert spec["issuerRef"] == {"name": "lp-ca", "kind": "Issuer", "group": "cert-manager.io"}
    svcs = [f"{FULL}-orchestrator"] + ([f"{FULL}-orchestrator-headless"] if headless else [])
    expected = [n for s in svcs for n in (s, f"{s}.{NAMESPACE}", f"{s}.{NAMESPACE}.svc",
                                          f"{s}.{NAMESPACE}.svc.cluster.local")] + ["localhost"]
    assert spec["dnsNames"] == expected
    # every name a client of this chart dials is covered (the Services, the web page's default target)
    services = {s["metadata"]["name"] for s in kinds(docs, "Service") if "grpc" in [p["name"] for p in s["spec"]["ports"]]
                and s["metadata"]["name"].startswith(f"{FULL}-orchestrator")}
    assert {f"{s}.{NAMESPACE}.svc.cluster.local" for s in services} <= set(spec["dnsNames"])
    web_target = container(find(docs, "Deployment", f"{FULL}-web"), "web")["args"][2]
    assert web_target.rsplit(":", 1)[0] in spec["dnsNames"]
    assert "server auth" in spec["usages"] and spec["duration"] == "2160h" and spec["renewBefore"] == "360h"
    assert all(len(n) <= 253 for n in spec["dnsNames"])
    # the orchestrator mounts the Secret cert-manager writes; the chart's clients trust its ca.crt
    d = orchestrator(docs)
    assert {v["name"]: v for v in _pod(d)["volumes"]}["tls"]["secret"]["secretName"] == secret
    assert _env(container(d, "orchestrator"))["LIVEPORTRAIT_TLS_CERT"] == "/etc/liveportrait/tls/tls.crt"
    for pod in (_pod(find(docs, "Deployment", f"{FULL}-web")), find(docs, "Pod")["spec"]):
        tls = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert tls["secret"] == {"secretName": secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # a fixed Secret name and extra names; the chart refuses a Certificate without an issuer
    spec = find(render(helm, sets=sets + ("orchestrator.tls.secretName=lp-tls",
                                          "orchestrator.tls.certManager.extraDnsNames={lp.example.org}")),
                "Certificate")["spec"]
    assert spec["secretName"] == "lp-tls" and spec["dnsNames"][-1] == "lp.example.org" and "localhost" not in \
        spec["dnsNames"]
    assert not [x for x in render(helm, ("values-dev-cpu.yaml",), sets) if x["kind"] == "Certificate"]


def test_orchestrator_reads_the_rendered_environment(helm, monkeypatch):
    """liveportrait-orchestrator's own parser turns the chart's LIVEPORTRAIT_* environment into its settings."""
    from orchestrator import config as server_config
    sets = ("orchestrator.tls.clientCA.secretName=lp-client-ca", "orchestrator.apiKeys.secretName=lp-keys",
            "orchestrator.requestTimeoutSeconds=100")
    for example, tls in (("values.yaml", True), ("values-dev-cpu.yaml", False)):
        docs = render(helm, (example,), (TLS_SECRET, *sets) if tls else sets[1:])
        env = _env(container(orchestrator(docs), "orchestrator"))
        for name in [k for k in os.environ if k.startswith("LIVEPORTRAIT_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            if isinstance(value, str):
                monkeypatch.setenv(name, value)
        config = server_config.parse_args([])
        assert config.port == 50051 and config.metrics_port == 9100 and config.health_port == 8086
        assert config.drain_s == 100  # running requests may finish within the grace period
        assert str(config.api_keys) == "/etc/liveportrait/keys/keys.json"
        if tls:
            assert (str(config.tls_cert), str(config.tls_key)) == ("/etc/liveportrait/tls/tls.crt",
                                                                  "/etc/liveportrait/tls/tls.key")
            assert str(config.tls_client_ca) == "/etc/liveportrait/client-ca/ca.crt"
        else:
            assert config.tls_cert is None and config.tls_client_ca is None


def test_certificate_matches_cert_manager_crd(helm):
    """The Certificate against cert-manager's CRD schema (@kubernetes-models/cert-manager), where installed."""
    node, modules = shutil.which("node"), TOOLS / "node" / "node_modules"
    if not node or not (modules / "@kubernetes-models" / "cert-manager").is_dir():
        pytest.skip("@kubernetes-models/cert-manager is not installed in .tools/node")
    cert = find(render(helm, sets=("orchestrator.tls.certManager.enabled=true",
                                   "orchestrator.tls.certManager.issuerRef.name=lp-ca")), "Certificate")
    broken = json.loads(json.dumps(cert))
    broken["spec"]["usages"] = ["serverauth"]
    proc = subprocess.run([node, str(REPO / "helm" / "tests" / "validate_crds.mjs"), str(modules)],
                          input=json.dumps([cert, broken]), capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[0].startswith("VALID "), proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("INVALID "), proc.stdout


def test_mtls_client_ca(helm, kubernetes_validate):
    sets = (TLS_SECRET, "orchestrator.tls.clientCA.secretName=lp-client-ca", "web.enabled=true")
    docs = render(helm, sets=sets)
    _validate_all(kubernetes_validate, docs)
    d = orchestrator(docs)
    c = container(d, "orchestrator")
    vols = {v["name"]: v for v in _pod(d)["volumes"]}
    assert vols["client-ca"]["secret"] == {"secretName": "lp-client-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert {"name": "client-ca", "mountPath": "/etc/liveportrait/client-ca", "readOnly": True} in c["volumeMounts"]
    assert _env(c)["LIVEPORTRAIT_TLS_CLIENT_CA"] == "/etc/liveportrait/client-ca/ca.crt"  # --tls-client-ca
    # without a client certificate for the chart's own clients the helm test says what to set
    script = find(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert "set orchestrator.tls.clientCA.clientSecretName" in script and "exit 1" in script
    assert subprocess.run(["/bin/sh", "-n", "-c", script], capture_output=True).returncode == 0
    # with one: the test pod and the web page present it
    docs = render(helm, sets=sets + ("orchestrator.tls.clientCA.clientSecretName=lp-client",))
    _validate_all(kubernetes_validate, docs)
    client_flags = ["--ca", "/etc/liveportrait/tls/ca.crt", "--cert", "/etc/liveportrait/client-tls/tls.crt",
                    "--key", "/etc/liveportrait/client-tls/tls.key"]
    script = find(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert f'CA_ARGS="{" ".join(client_flags)}"' in script and "exit 1" not in script
    web = container(find(docs, "Deployment", f"{FULL}-web"), "web")
    assert web["args"][-6:] == client_flags
    for pod in (find(docs, "Pod")["spec"], _pod(find(docs, "Deployment", f"{FULL}-web"))):
        c = pod["containers"][0]
        assert {"name": "client-tls", "mountPath": "/etc/liveportrait/client-tls", "readOnly": True} \
            in c["volumeMounts"]
        assert next(v for v in pod["volumes"] if v["name"] == "client-tls")["secret"] == {
            "secretName": "lp-client", "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}
    # the project's CLI accepts these flags (health of the test pod, the web page's arguments)
    check = "import sys; from client import cli; cli.parser().parse_args(sys.argv[1:])"
    for args in (["health", "--server", "h:1", *client_flags], web["args"]):
        proc = subprocess.run([sys.executable, "-c", check, *args], capture_output=True, text=True, cwd=REPO,
                              timeout=60)
        assert proc.returncode == 0, (args, proc.stderr)
    assert "LIVEPORTRAIT_TLS_CLIENT_CA" not in json.dumps(orchestrator(render(helm)))


def test_api_keys_secret(helm, kubernetes_validate, tmp_path):
    assert "api-keys" not in json.dumps(orchestrator(render(helm)))
    docs = render(helm, sets=("orchestrator.apiKeys.secretName=lp-keys", "web.enabled=true"))
    _validate_all(kubernetes_validate, docs)
    d = orchestrator(docs)
    c = container(d, "orchestrator")
    vols = {v["name"]: v for v in _pod(d)["volumes"]}
    assert vols["api-keys"]["secret"] == {"secretName": "lp-keys", "defaultMode": 0o440,
                                          "items": [{"key": "keys.json", "path": "keys.json"}]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-keys")
    # a directory mount: a subPath mount would never see the Secret's updates (keys reload without restart)
    assert mount == {"name": "api-keys", "mountPath": "/etc/liveportrait/keys", "readOnly": True}
    assert _env(c)["LIVEPORTRAIT_API_KEYS"] == "/etc/liveportrait/keys/keys.json"  # --api-keys
    # health needs no key: the test checks health and skips the animation without a key of its own
    script = find(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert "liveportrait health" in script and "liveportrait animate" not in script
    assert "tests.apiKeySecretName is not set" in script
    assert "LIVEPORTRAIT_API_KEY" not in json.dumps(find(docs, "Deployment", f"{FULL}-web"))
    docs = render(helm, sets=("orchestrator.apiKeys.secretName=lp-keys", "web.enabled=true",
                              "tests.apiKeySecretName=lp-test-key", "web.apiKeySecretName=lp-web-key"))
    _validate_all(kubernetes_validate, docs)
    pod = find(docs, "Pod")["spec"]
    assert "liveportrait animate" in pod["containers"][0]["command"][2]
    for c, secret in ((pod["containers"][0], "lp-test-key"),
                      (container(find(docs, "Deployment", f"{FULL}-web"), "web"), "lp-web-key")):
        assert _env(c)["LIVEPORTRAIT_API_KEY"] == {"secretKeyRef": {"name": secret, "key": "api-key"}}
    # the key file the README tells to build from `python -m orchestrator.auth NAME` is what the server reads
    proc = subprocess.run([sys.executable, "-m", "orchestrator.auth", "studio-a"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout.strip().splitlines()[-1])
    key = proc.stdout.split("key (give it to the caller; it is not stored): ", 1)[1].split()[0]
    from orchestrator import keys as key_file
    keys = key_file.parse_key_file(json.dumps({"keys": [entry]}))
    assert keys[key_file.key_digest(key)].name == "studio-a"
    readme = (CHART / "README.md").read_text()
    assert "python -m orchestrator.auth" in readme and "keys.json" in readme


@pytest.mark.parametrize("values", ["values.yaml", "values-gpu-l4.yaml", "values-keda.yaml"])
def test_pdb_for_both_deployments(helm, values):
    docs = render(helm, (values,))
    for comp in ("triton", "orchestrator"):
        pdb = find(docs, "PodDisruptionBudget", f"{FULL}-{comp}")
        assert pdb["spec"]["maxUnavailable"] == 1
        deploy = find(docs, "Deployment", f"{FULL}-{comp}")
        assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    assert not kinds(render(helm, ("values-dev-cpu.yaml",)), "PodDisruptionBudget")


def test_network_policies(helm):
    docs = render(helm)
    tp = find(docs, "NetworkPolicy", f"{FULL}-triton")["spec"]
    assert tp["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "triton"
    assert tp["policyTypes"] == ["Ingress"]
    by_port = {r["ports"][0]["port"]: r["from"] for r in tp["ingress"]}
    assert set(by_port) == {"grpc", "metrics"}  # nothing else (HTTP 8000 has no peer)
    assert by_port["grpc"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "liveportrait", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "orchestrator"}}}]
    assert by_port["metrics"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    op = find(docs, "NetworkPolicy", f"{FULL}-orchestrator")["spec"]
    ports = {r["ports"][0]["port"]: r.get("from") for r in op["ingress"]}
    assert ports["grpc"] is None and ports["metrics"] == by_port["metrics"]
    # the plaintext health port has no peer (the kubelet's probes are not subject to NetworkPolicy)
    assert {p["port"] for r in op["ingress"] for p in r["ports"]} == {"grpc", "metrics"}
    # restricting the orchestrator's callers keeps the helm test pod allowed
    docs = render(helm, sets=("networkPolicy.orchestratorClients[0].podSelector.matchLabels.role=frontend",))
    op = find(docs, "NetworkPolicy", f"{FULL}-orchestrator")["spec"]
    peers = next(r["from"] for r in op["ingress"] if r["ports"][0]["port"] == "grpc")
    assert peers[0] == {"podSelector": {"matchLabels": {"role": "frontend"}}}
    test_pod = find(docs, "Pod")
    assert peers[1]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()
    # dev values: Prometheus from any namespace (namespaceSelector: {})
    dev = find(render(helm, ("values-dev-cpu.yaml",)), "NetworkPolicy", f"{FULL}-triton")["spec"]
    metrics_from = next(r["from"] for r in dev["ingress"] if r["ports"][0]["port"] == "metrics")
    assert metrics_from[0]["namespaceSelector"] == {}


# ---------------------------------------------------------------------------------------------------------------------
# Shared quotas in Redis (quota.redis)
# ---------------------------------------------------------------------------------------------------------------------

KEYS_SECRET = "orchestrator.apiKeys.secretName=lp-keys"
IN_CHART_REDIS = (KEYS_SECRET, "quota.redis.inChart.enabled=true", "quota.redis.passwordSecret=lp-redis")


def test_without_quota_redis_each_replica_keeps_its_own_quotas(helm):
    docs = render(helm, sets=(KEYS_SECRET,))
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULL}-redis"]
    assert not any(name.startswith("LIVEPORTRAIT_QUOTA") for name in _env(container(orchestrator(docs),
                                                                                    "orchestrator")))


def test_in_chart_redis_is_reached_by_the_orchestrator_alone(helm, kubernetes_validate):
    docs = render(helm, sets=IN_CHART_REDIS)
    _validate_all(kubernetes_validate, docs)
    env = _env(container(orchestrator(docs), "orchestrator"))
    assert env["LIVEPORTRAIT_QUOTA_REDIS_URL"] == f"redis://{FULL}-redis.{NAMESPACE}.svc.cluster.local:6379/0"
    assert env["LIVEPORTRAIT_QUOTA_REDIS_FAIL"] == "closed"  # the default: a Redis outage refuses, never overspends
    assert env["LIVEPORTRAIT_QUOTA_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "lp-redis", "key": "password"}}
    redis = find(docs, "Deployment", f"{FULL}-redis")
    pod = _pod(redis)
    c = container(redis, "redis")
    assert c["args"][c["args"].index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert _env(c)["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "lp-redis", "key": "password"}}
    assert c["args"][c["args"].index("--appendonly") + 1] == "no" and "emptyDir" in pod["volumes"][0]
    assert not kinds(docs, "PersistentVolumeClaim")  # no PVC unless asked for
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["capabilities"] == {
        "drop": ["ALL"]}
    service = find(docs, "Service", f"{FULL}-redis")["spec"]
    assert service["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert service["ports"][0]["port"] == 6379
    policy = find(docs, "NetworkPolicy", f"{FULL}-redis")["spec"]
    assert policy["podSelector"]["matchLabels"] == service["selector"]
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "liveportrait", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "orchestrator"}}}], "ports": [{"port": "redis", "protocol": "TCP"}]}]
    # the orchestrator's policies restrict ingress only: its egress to Redis is open
    assert find(docs, "NetworkPolicy", f"{FULL}-orchestrator")["spec"]["policyTypes"] == ["Ingress"]
    docs = render(helm, sets=(*IN_CHART_REDIS, "quota.redis.inChart.persistence.enabled=true",
                              "quota.redis.inChart.persistence.storageClassName=fast"))
    _validate_all(kubernetes_validate, docs)
    claim = find(docs, "PersistentVolumeClaim", f"{FULL}-redis")["spec"]
    assert claim["storageClassName"] == "fast" and claim["resources"]["requests"]["storage"] == "1Gi"
    redis = find(docs, "Deployment", f"{FULL}-redis")
    assert _pod(redis)["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"{FULL}-redis"
    assert redis["spec"]["strategy"] == {"type": "Recreate"}  # one writer of the volume at a time
    c = container(redis, "redis")
    assert c["args"][c["args"].index("--appendonly") + 1] == "yes"


def test_the_in_chart_redis_command_line_runs_the_real_redis_server_with_its_password(helm, tmp_path):
    binary = shutil.which("redis-server")
    if not binary:
        _missing("redis-server")
    from orchestrator.triton_process import free_port
    import redis as redis_py

    c = container(find(render(helm, sets=IN_CHART_REDIS), "Deployment", f"{FULL}-redis"), "redis")
    port = free_port()
    # the pod's password, port and /data, moved to this machine
    moved = {"$(REDIS_PASSWORD)": "s3cret", "6379": str(port), "/data": str(tmp_path)}
    process = subprocess.Popen([binary, *(moved.get(a, a) for a in c["args"]), "--bind", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            try:
                assert redis_py.Redis("127.0.0.1", port, password="s3cret", socket_timeout=1).ping()
                break
            except redis_py.ConnectionError:
                time.sleep(0.05)
        assert process.poll() is None, "redis-server refused the rendered command line"
        assert redis_py.Redis("127.0.0.1", port, password="s3cret", socket_timeout=1).ping()
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis("127.0.0.1", port, socket_timeout=1).ping()
    finally:
        process.terminate()
        process.wait(10)


def test_an_external_redis_and_the_fail_mode_reach_the_orchestrators_parser(helm, monkeypatch, kubernetes_validate):
    from orchestrator import config as server_config
    docs = render(helm, sets=(KEYS_SECRET, "quota.redis.url=rediss://quota.example.org:6380/2",
                              "quota.redis.passwordSecret=lp-redis", "quota.redis.passwordKey=pw",
                              "quota.redis.failMode=open"))
    _validate_all(kubernetes_validate, docs)
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULL}-redis"]  # no in-chart Redis
    env = _env(container(orchestrator(docs), "orchestrator"))
    assert env["LIVEPORTRAIT_QUOTA_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "lp-redis", "key": "pw"}}
    for name in [k for k in os.environ if k.startswith("LIVEPORTRAIT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    config = server_config.parse_args([])
    assert config.quota_redis_url == "rediss://quota.example.org:6380/2" and config.quota_redis_fail == "open"


@pytest.mark.parametrize("sets,message", [
    (("quota.redis.inChart.enabled=true",), "quota.redis keeps the API keys' quotas: it needs "
                                            "orchestrator.apiKeys.secretName"),
    ((KEYS_SECRET, "quota.redis.inChart.enabled=true", "quota.redis.url=redis://r:6379/0"),
     "set one of quota.redis.url (an external Redis) and quota.redis.inChart.enabled"),
])
def test_quota_redis_guards(helm, sets, message):
    proc = run_helm(helm, "template", *template_args([], list(sets)))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("sets,message", [
    ((KEYS_SECRET, "quota.redis.url=http://r:6379"), "/quota/redis/url"),
    ((KEYS_SECRET, "quota.redis.failMode=maybe"), "/quota/redis/failMode"),
])
def test_quota_redis_values_are_checked_by_the_schema(helm, sets, message):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *value_args([], list(sets)))
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Autoscaling
# ---------------------------------------------------------------------------------------------------------------------

def _rules() -> dict:
    return yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())


def _recorded() -> dict[str, str]:
    return {r["record"]: r["expr"] for g in _rules()["groups"] for r in g["rules"] if "record" in r}


def test_hpa_on_adapter_metrics(helm):
    docs = render(helm)
    adapter = yaml.safe_load((CHART / "prometheus-adapter-values.yaml").read_text())
    served = {r["name"]["as"]: r["seriesQuery"].split("{")[0] for r in adapter["rules"]["custom"]}
    hpa = find(docs, "HorizontalPodAutoscaler", f"{FULL}-triton")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{FULL}-triton"}
    metrics = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["spec"]["metrics"]}
    assert all(m["type"] == "Pods" for m in hpa["spec"]["metrics"])
    assert metrics["liveportrait_triton_queue_us_per_request"] == {"type": "AverageValue", "averageValue": "50000"}
    assert metrics["liveportrait_triton_pending_requests"] == {"type": "AverageValue", "averageValue": "16"}
    # each HPA metric is served by an adapter rule whose series is one of the chart's recording rules
    recorded = _recorded()
    for name in metrics:
        assert served[name] in recorded, name
    assert served["liveportrait_triton_queue_us_per_request"] == "liveportrait:triton_queue_us_per_request:rate1m"
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
    assert "replicas" not in triton(docs)["spec"] and "replicas" not in orchestrator(docs)["spec"]
    ohpa = find(docs, "HorizontalPodAutoscaler", f"{FULL}-orchestrator")
    assert ohpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "liveportrait_requests_in_flight"
    assert served["liveportrait_requests_in_flight"] == "liveportrait_requests_in_flight"
    assert not kinds(docs, "ScaledObject")


def test_keda_scaled_objects(helm, promtool, tmp_path):
    docs = render(helm, ("values-keda.yaml",))
    assert not kinds(docs, "HorizontalPodAutoscaler")
    so = find(docs, "ScaledObject", f"{FULL}-triton")["spec"]
    assert so["scaleTargetRef"]["name"] == f"{FULL}-triton"
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (1, 6)
    assert so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    triggers = {t["name"]: t for t in so["triggers"]}
    q = triggers["queue_us_per_request"]
    assert q["type"] == "prometheus" and q["metricType"] == "Value"
    assert q["metadata"]["threshold"] == "50000"
    assert q["metadata"]["serverAddress"].startswith("http://")
    # summed numerator over summed denominator, restricted to this release's Triton pods
    query = q["metadata"]["query"]
    assert re.fullmatch(r"sum\(liveportrait:triton_queue_us:rate1m\{[^}]+\}\)\s*/\s*clamp_min\("
                        r"sum\(liveportrait:triton_requests:rate1m\{[^}]+\}\), 0\.001\)", query), query
    assert f'pod=~"{FULL}-triton-[a-z0-9]+-[a-z0-9]+"' in query and f'namespace="{NAMESPACE}"' in query
    assert triggers["pending_requests"]["metadata"]["threshold"] == "16"
    oso = find(docs, "ScaledObject", f"{FULL}-orchestrator")["spec"]
    oq = oso["triggers"][0]["metadata"]["query"]
    assert "liveportrait_requests_in_flight" in oq and f"{FULL}-orchestrator-" in oq
    # every series the triggers read is recorded by the chart's rules, and every query parses
    recorded = _recorded()
    queries = {t["name"]: t["metadata"]["query"] for t in so["triggers"] + oso["triggers"]}
    for name, text in queries.items():
        for metric in re.findall(r"(liveportrait:[a-z_0-9:]+)", text):
            assert metric in recorded, (name, metric)
    proc = promql_check(promtool, queries, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the pod regex matches Deployment pod names and nothing of the orchestrator
    pod_re = re.search(r'pod=~"([^"]+)"', query).group(1)
    assert re.fullmatch(pod_re, f"{FULL}-triton-7d9f8c6b5-x2k4q")
    assert not re.fullmatch(pod_re, f"{FULL}-orchestrator-7d9f8c6b5-x2k4q")


def test_autoscaling_off_keeps_replicas(helm):
    docs = render(helm, sets=("triton.autoscaling.enabled=false", "triton.replicaCount=3"))
    assert triton(docs)["spec"]["replicas"] == 3
    assert [h["metadata"]["name"] for h in kinds(docs, "HorizontalPodAutoscaler")] == [f"{FULL}-orchestrator"]


def test_orchestrator_bounds_feed_the_gpus(helm):
    """orchestrator.cpuPerGpuReplica (from `python -m load_tests.cpu_cost`) raises the orchestrator's replica bounds to
    ceil(GPUs x cores per GPU / CPU request per pod)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    o, t = values["orchestrator"], values["triton"]
    per_gpu, cores = o["cpuPerGpuReplica"], float(o["resources"]["requests"]["cpu"])
    assert per_gpu > 0 and o["resources"]["limits"]["cpu"] == o["resources"]["requests"]["cpu"]
    hpa = find(render(helm), "HorizontalPodAutoscaler", f"{FULL}-orchestrator")["spec"]
    assert hpa["minReplicas"] == max(o["autoscaling"]["minReplicas"],
                                     math.ceil(t["autoscaling"]["minReplicas"] * per_gpu / cores))
    assert hpa["maxReplicas"] == max(o["autoscaling"]["maxReplicas"],
                                     math.ceil(t["autoscaling"]["maxReplicas"] * per_gpu / cores))
    assert hpa["minReplicas"] * cores >= per_gpu  # the always-on GPU is fed without waiting for a scale-up
    # GPUs per pod, millicores, the KEDA engine
    sets = ("orchestrator.cpuPerGpuReplica=10", "orchestrator.resources.requests.cpu=2500m", "triton.gpu.count=2",
            "triton.autoscaling.maxReplicas=3")
    hpa = find(render(helm, sets=sets), "HorizontalPodAutoscaler", f"{FULL}-orchestrator")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (8, 24)  # ceil(1 x 2 x 10 / 2.5), ceil(3 x 2 x 10 / 2.5)
    so = find(render(helm, ("values-keda.yaml",), sets), "ScaledObject", f"{FULL}-orchestrator")["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"], so["fallback"]["replicas"]) == (8, 24, 8)
    # fixed sizes feed every GPU the release runs
    docs = render(helm, sets=("orchestrator.autoscaling.enabled=false", "triton.autoscaling.enabled=false",
                              "triton.replicaCount=3", "orchestrator.cpuPerGpuReplica=6"))
    assert orchestrator(docs)["spec"]["replicas"] == max(o["replicaCount"], math.ceil(3 * 6 / cores))
    # explicit bounds only: turned off, CPU Triton (the figure is per GPU), no Triton in this release
    for sets in (("orchestrator.cpuPerGpuReplica=0",), ("triton.enabled=false",)):
        hpa = find(render(helm, sets=sets), "HorizontalPodAutoscaler", f"{FULL}-orchestrator")["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (o["autoscaling"]["minReplicas"],
                                                            o["autoscaling"]["maxReplicas"])
    assert orchestrator(render(helm, ("values-dev-cpu.yaml",)))["spec"]["replicas"] == 1


# ---------------------------------------------------------------------------------------------------------------------
# Monitoring objects
# ---------------------------------------------------------------------------------------------------------------------

def test_prometheus_rule_embeds_the_rules_file(helm):
    docs = render(helm)
    rule = find(docs, "PrometheusRule")
    assert rule["spec"] == _rules()
    assert "liveportrait:triton_queue_us_per_request:rate1m" in _recorded()


def test_monitors_select_metrics_services(helm):
    docs = render(helm)
    services = {s["metadata"]["name"]: s for s in kinds(docs, "Service")}
    for sm in kinds(docs, "ServiceMonitor"):
        sel = sm["spec"]["selector"]["matchLabels"]
        hits = [n for n, s in services.items() if sel.items() <= s["metadata"]["labels"].items()]
        assert len(hits) == 1 and hits[0].endswith("-metrics"), (sm["metadata"]["name"], hits)
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert len(kinds(docs, "ServiceMonitor")) == 2 and not kinds(docs, "PodMonitor")
    docs = render(helm, sets=("metrics.serviceMonitor.enabled=false", "metrics.podMonitor.enabled=true"))
    pms = kinds(docs, "PodMonitor")
    assert len(pms) == 2 and not kinds(docs, "ServiceMonitor")
    for pm in pms:
        deploy = find(docs, "Deployment", pm["metadata"]["name"])
        assert pm["spec"]["selector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    off = render(helm, ("values-dev-cpu.yaml",))
    assert not [d for d in off if d["apiVersion"].startswith("monitoring.coreos.com/")]


def test_grafana_dashboard(helm, promtool, tmp_path):
    docs = render(helm)
    cm = find(docs, "ConfigMap", f"{FULL}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["liveportrait.json"])
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("requests", "percentiles", "queue vs compute", "load spread", "gpu utilisation"):
        assert topic in titles, topic
    exprs = {f"{p['id']}_{t['refId']}": t["expr"].replace("$namespace", ".*")
             for p in dash["panels"] for t in p["targets"]}
    assert len(exprs) >= 12
    proc = promql_check(promtool, exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = _recorded()
    for e in exprs.values():
        for metric in re.findall(r"(liveportrait:[a-z_0-9:]+)", e):
            assert metric in recorded, metric


# ---------------------------------------------------------------------------------------------------------------------
# helm test hook, NOTES
# ---------------------------------------------------------------------------------------------------------------------

def test_helm_test_pod(helm, tmp_path):
    pod = find(render(helm), "Pod", f"{FULL}-test-animate")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/liveportrait-serving/orchestrator:0.1.0"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SERVER"] == f"{FULL}-orchestrator.{NAMESPACE}.svc.cluster.local:50051"
    script = c["command"][2]
    assert c["command"][:2] == ["/bin/sh", "-ec"]
    assert 'liveportrait health --server "$SERVER" $CA_ARGS' in script
    assert 'CA_ARGS="--ca /etc/liveportrait/tls/ca.crt"' in script  # TLS is on by default
    plain = find(render(helm, ("values-dev-cpu.yaml",)), "Pod")
    assert 'CA_ARGS=""' in plain["spec"]["containers"][0]["command"][2]
    assert [v["name"] for v in plain["spec"]["volumes"]] == ["tmp"]
    assert '"--no-crop-source"' in script  # the synthetic portrait is not a detectable face
    assert "liveportrait animate --server" in script and "test -s /tmp/out.mp4" in script
    assert subprocess.run(["/bin/sh", "-n", "-c", script], capture_output=True).returncode == 0
    # the embedded generator writes a decodable portrait and a 4-frame driving clip
    gen = re.search(r"python - <<'PY'\n(.*?)\nPY\n", script, re.S).group(1).replace("/tmp/", f"{tmp_path}/")
    proc = subprocess.run([sys.executable, "-c", gen], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import cv2
    assert cv2.imread(str(tmp_path / "source.png")).shape == (256, 256, 3)
    cap = cv2.VideoCapture(str(tmp_path / "driving.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 4
    # the CLI accepts the rendered arguments (parsed by the project's own `liveportrait` argument parser)
    line = re.search(r"liveportrait animate (.*?)\n\s*-o (\S+)(.*)\n", script)
    extra = [a.strip('"') for a in line.group(3).split()]
    args = ["animate", "--server", "h:1", "--ca", "ca.crt", "--source", "s.png", "--driving", "d.mp4", "-o", "o.mp4",
            *extra]
    check = "import sys; from client import cli; cli.parser().parse_args(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", check, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-c", check, "health", "--server", "h:1", "--ca", "ca.crt"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # TLS: the test client trusts the Secret's CA, and gets only ca.crt (never the serving key)
    tls = find(render(helm, sets=("orchestrator.tls.enabled=true", "orchestrator.tls.secretName=lp-tls")), "Pod")
    assert 'CA_ARGS="--ca /etc/liveportrait/tls/ca.crt"' in tls["spec"]["containers"][0]["command"][2]
    assert {"name": "tls", "secret": {"secretName": "lp-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}} \
        in tls["spec"]["volumes"]
    assert {"name": "tls", "mountPath": "/etc/liveportrait/tls", "readOnly": True} in \
        tls["spec"]["containers"][0]["volumeMounts"]
    tls = find(render(helm, sets=("orchestrator.tls.secretName=lp-tls", "orchestrator.tls.caSecretName=lp-ca")), "Pod")
    assert next(v for v in tls["spec"]["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "lp-ca"
    # user-supplied inputs
    pod = find(render(helm, sets=("tests.animate.inputsConfigMap=lp-inputs",)), "Pod")
    assert "SRC=/inputs/source.jpg" in pod["spec"]["containers"][0]["command"][2]
    assert {"name": "inputs", "configMap": {"name": "lp-inputs"}} in pod["spec"]["volumes"]


def test_web_page_is_optional_and_calls_the_orchestrator_service(helm, kubernetes_validate):
    """web.enabled: `liveportrait web` (Gradio) from the orchestrator image, pointed at the orchestrator Service."""
    assert not [d for d in render(helm) if d["metadata"]["name"] == f"{FULL}-web"]
    docs = render(helm, sets=("web.enabled=true",))
    deploy = find(docs, "Deployment", f"{FULL}-web")
    service = find(docs, "Service", f"{FULL}-web")
    for doc in (deploy, service):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    c = container(deploy, "web")
    assert c["image"] == container(orchestrator(docs), "orchestrator")["image"]
    assert c["command"] == ["liveportrait"]
    assert c["args"] == ["web", "--server", f"{FULL}-orchestrator.{NAMESPACE}.svc.cluster.local:50051",
                         "--host", "0.0.0.0", "--port", "7860", "--ca", "/etc/liveportrait/tls/ca.crt"]
    plain = container(find(render(helm, ("values-dev-cpu.yaml",), ("web.enabled=true",)), "Deployment", f"{FULL}-web"),
                      "web")
    assert plain["args"][-2:] == ["--port", "7860"] and "--ca" not in plain["args"]
    assert c["ports"] == [{"name": "http", "containerPort": 7860, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/", "port": "http"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["HOME"] == "/tmp" and env["GRADIO_TEMP_DIR"].startswith("/tmp/")
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http" and service["spec"]["ports"][0]["port"] == 7860
    assert not [p for p in kinds(docs, "Deployment") if p is not deploy
                and p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()], "selectors overlap"
    # TLS: the page trusts the orchestrator's CA; restricted callers still include the page
    docs = render(helm, sets=("web.enabled=true", "web.port=8080", "web.args={--timeout,600}",
                              "web.image.repository=example.org/web", "web.image.tag=1.2",
                              "orchestrator.tls.enabled=true", "orchestrator.tls.secretName=lp-tls",
                              "networkPolicy.orchestratorClients[0].podSelector.matchLabels.role=frontend"))
    deploy = find(docs, "Deployment", f"{FULL}-web")
    kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)
    c = container(deploy, "web")
    assert c["image"] == "example.org/web:1.2"
    assert c["args"][-6:] == ["--port", "8080", "--ca", "/etc/liveportrait/tls/ca.crt", "--timeout", "600"]
    assert {"name": "tls", "secret": {"secretName": "lp-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}} \
        in deploy["spec"]["template"]["spec"]["volumes"]
    op = find(docs, "NetworkPolicy", f"{FULL}-orchestrator")["spec"]
    peers = next(r["from"] for r in op["ingress"] if r["ports"][0]["port"] == "grpc")
    assert any(p["podSelector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
               for p in peers)
    # another server; without one and without the orchestrator the chart refuses
    c = container(find(render(helm, sets=("web.enabled=true", "orchestrator.enabled=false",
                                          "web.server=lp.example.org:443")), "Deployment", f"{FULL}-web"), "web")
    assert c["args"][:3] == ["web", "--server", "lp.example.org:443"]
    assert "--ca" in c["args"]  # trusts orchestrator.tls.secretName's CA; without any CA Secret: plaintext
    c = container(find(render(helm, sets=("web.enabled=true", "orchestrator.enabled=false", "orchestrator.tls.enabled=true",
                                          "web.server=lp.example.org:443")), "Deployment", f"{FULL}-web"), "web")
    assert "--ca" not in c["args"] and "volumeMounts" in c and len(c["volumeMounts"]) == 1
    proc = run_helm(helm, "template", *template_args([], ["web.enabled=true", "orchestrator.enabled=false"]))
    assert proc.returncode != 0 and "web.enabled needs orchestrator.enabled or web.server" in proc.stderr
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
                    *value_args([], ["web.enabled=true"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *value_args([], ["web.port=0"]))
    assert proc.returncode != 0, "the schema bounds web.port"


def test_notes_tell_how_to_call_animate_portrait(helm):
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                    *value_args([], []))
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{FULL}-orchestrator 50051:50051" in notes
    assert "liveportrait animate --server localhost:50051 --ca ca.crt" in notes  # TLS on by default
    assert "get secret lp-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > ca.crt" in notes
    assert "grpcurl -cacert ca.crt" in notes and "API keys are on" not in notes
    assert "AnimatePortrait" in notes and f"helm test {RELEASE}" in notes
    assert "Web page" not in notes
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                    *value_args(["values-dev-cpu.yaml"], ["orchestrator.apiKeys.secretName=lp-keys"]))
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "liveportrait animate --server localhost:50051 --source" in notes and "grpcurl -plaintext" in notes
    assert "API keys are on (Secret lp-keys" in notes and "python -m orchestrator.auth NAME" in notes
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                    *value_args([], ["web.enabled=true"]))
    assert f"port-forward svc/{FULL}-web 7860:7860" in proc.stdout.split("NOTES:", 1)[1]


def test_dockerfiles_reference_existing_paths():
    docker = REPO / "helm" / "docker"
    for name in ("orchestrator.Dockerfile", "triton.Dockerfile"):
        text = (docker / name).read_text()
        assert re.search(r"^FROM ", text, re.M)
        for src in re.findall(r"^COPY (?!--from)(?:--chown=\S+ )?(\S+) ", text, re.M):
            assert (REPO / src).exists(), (name, src)
        # the build context skips local environments and outputs (BuildKit's per-Dockerfile ignore file)
        ignored = (docker / f"{name}.dockerignore").read_text().split()
        assert {".venv", ".triton", ".tools", "build"} <= set(ignored)
        assert "pip install" in text
    triton_df = (docker / "triton.Dockerfile").read_text()
    assert "nvcr.io/nvidia/tritonserver" in triton_df and "liveportrait-export" in triton_df


GATEWAY_TURN = ("gateway.enabled=true", "gateway.media.turn.secretName=lp-turn", "gateway.media.turn.inChart.enabled=true",
                "gateway.media.turn.inChart.externalIP=203.0.113.7",
                "networkPolicy.gatewayClients[0].podSelector.matchLabels.role=ingress",
                "networkPolicy.orchestratorClients[0].podSelector.matchLabels.role=frontend")


def _gateway_cli_accepts(args: list[str]) -> None:
    check = ("import argparse, sys; from client.gateway.cli import add_parser; p = argparse.ArgumentParser(); "
             "add_parser(p.add_subparsers()); p.parse_args(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", check, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, (args, proc.stderr)


def test_gateway_is_optional_and_its_turn_media_path_opens_no_inbound_udp(helm, kubernetes_validate):
    """gateway.enabled with media.mode turn and the in-chart coturn: the gateway pods reach the TURN server (outbound),
    their NetworkPolicy opens the signalling port only; coturn runs on its node's network with the relay range."""
    assert not [d for d in render(helm) if "gateway" in d["metadata"]["name"] or "turn" in d["metadata"]["name"]]
    docs = render(helm, sets=GATEWAY_TURN)
    deploy, turn = find(docs, "Deployment", f"{FULL}-gateway"), find(docs, "Deployment", f"{FULL}-turn")
    policy = find(docs, "NetworkPolicy", f"{FULL}-gateway")
    for doc in (deploy, turn, policy, find(docs, "Service", f"{FULL}-gateway")):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    c = container(deploy, "gateway")
    assert c["args"][:3] == ["gateway", "--target", f"{FULL}-orchestrator.{NAMESPACE}.svc.cluster.local:50051"]
    _gateway_cli_accepts(c["args"])
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["LIVEPORTRAIT_GATEWAY_ICE_SERVERS"] == "turn:203.0.113.7:3478?transport=udp"
    assert env["LIVEPORTRAIT_GATEWAY_ICE_CREDENTIAL"] == {"secretKeyRef": {"name": "lp-turn", "key": "credential"}}
    assert "hostNetwork" not in _pod(deploy)
    rules = policy["spec"]["ingress"]
    assert [p for r in rules for p in r["ports"]] == [{"port": "http", "protocol": "TCP"}]  # no UDP, no other port
    assert {"podSelector": {"matchLabels": {"role": "ingress"}}} in rules[0]["from"]
    op = find(docs, "NetworkPolicy", f"{FULL}-orchestrator")["spec"]
    callers = next(r["from"] for r in op["ingress"] if r["ports"][0]["port"] == "grpc")
    assert any(p["podSelector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
               for p in callers)
    coturn = container(turn, "coturn")
    assert _pod(turn)["hostNetwork"] is True
    assert {"--external-ip=203.0.113.7", "--min-port=49160", "--max-port=49260", "--lt-cred-mech",
            "--denied-peer-ip=10.0.0.0-10.255.255.255"} <= set(coturn["args"])


def test_gateway_host_network_mode_binds_its_udp_range_one_pod_per_node(helm, kubernetes_validate):
    docs = render(helm, sets=("gateway.enabled=true", "gateway.media.mode=hostNetwork",
                              "gateway.media.stunUrls={stun:stun.example.org:3478}", "gateway.media.udpPorts=41000-41199"))
    deploy = find(docs, "Deployment", f"{FULL}-gateway")
    kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)
    pod, c = _pod(deploy), container(deploy, "gateway")
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == \
        "kubernetes.io/hostname"
    assert c["args"][c["args"].index("--udp-ports") + 1] == "41000-41199"
    _gateway_cli_accepts(c["args"])
    assert not [d for d in kinds(docs, "NetworkPolicy") if d["metadata"]["name"] == f"{FULL}-gateway"]
    for sets, message in ((("gateway.enabled=true",), "gateway.media.mode turn needs a TURN server"),
                          (("gateway.enabled=true", "gateway.media.turn.urls={turn:t.example.org:3478}"),
                           "gateway.media.turn needs secretName")):
        proc = run_helm(helm, "template", *template_args([], list(sets)))
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
