"""The chart's Triton Deployment: GPU scheduling, server flags checked against tritonserver itself, probes and the
preStop drain executed for real, security contexts, volumes, the model repository's sources.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading

import pytest
import yaml

from chart_fixtures import (
    CHART, EXAMPLES, REPO, TLS_SECRET, container, flags, missing_tool, orchestrator, render, triton,
)


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
        missing_tool(f"{binary} (make setup)")
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
