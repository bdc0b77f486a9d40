"""The chart's helm test hook and NOTES, the optional web page and WebRTC gateway (its TURN and hostNetwork media
paths), and the Dockerfiles it builds from.
"""
from __future__ import annotations

import re
import subprocess
import sys


from chart_fixtures import (
    CHART, FULL, KUBE_VERSION, NAMESPACE, RELEASE, REPO, container, find, kinds, orchestrator, pod_spec, render,
    run_helm, template_args, value_args,
)


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
    assert c["args"][c["args"].index("--max-viewers") + 1] == "4"  # WHEP viewers of a session
    _gateway_cli_accepts(c["args"])
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["LIVEPORTRAIT_GATEWAY_ICE_SERVERS"] == "turn:203.0.113.7:3478?transport=udp"
    assert env["LIVEPORTRAIT_GATEWAY_ICE_CREDENTIAL"] == {"secretKeyRef": {"name": "lp-turn", "key": "credential"}}
    assert "hostNetwork" not in pod_spec(deploy)
    rules = policy["spec"]["ingress"]
    assert [p for r in rules for p in r["ports"]] == [{"port": "http", "protocol": "TCP"}]  # no UDP, no other port
    assert {"podSelector": {"matchLabels": {"role": "ingress"}}} in rules[0]["from"]
    op = find(docs, "NetworkPolicy", f"{FULL}-orchestrator")["spec"]
    callers = next(r["from"] for r in op["ingress"] if r["ports"][0]["port"] == "grpc")
    assert any(p["podSelector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
               for p in callers)
    coturn = container(turn, "coturn")
    assert pod_spec(turn)["hostNetwork"] is True
    assert {"--external-ip=203.0.113.7", "--min-port=49160", "--max-port=49260", "--lt-cred-mech",
            "--denied-peer-ip=10.0.0.0-10.255.255.255"} <= set(coturn["args"])


def test_gateway_host_network_mode_binds_its_udp_range_one_pod_per_node(helm, kubernetes_validate):
    docs = render(helm, sets=("gateway.enabled=true", "gateway.media.mode=hostNetwork",
                              "gateway.media.stunUrls={stun:stun.example.org:3478}", "gateway.media.udpPorts=41000-41199"))
    deploy = find(docs, "Deployment", f"{FULL}-gateway")
    kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)
    pod, c = pod_spec(deploy), container(deploy, "gateway")
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
