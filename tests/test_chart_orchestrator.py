"""The chart's orchestrator: its Services and configuration, TLS (on by default), mTLS, API keys, PodDisruptionBudgets
and NetworkPolicies.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from chart_fixtures import (
    CHART, FULL, KUBE_VERSION, NAMESPACE, RELEASE, REPO, TLS_MISSING, TLS_SECRET, TOOLS, container, env_values,
    find, kinds, orchestrator, orchestrator_config, pod_spec, render, run_helm, triton, validate_all,
)


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
    validate_all(kubernetes_validate, docs)
    d = orchestrator(docs)
    c = container(d, "orchestrator")
    vols = {v["name"]: v for v in pod_spec(d)["volumes"]}
    assert vols["tls"]["secret"] == {"secretName": "lp-tls", "defaultMode": 0o440,
                                     "items": [{"key": "tls.crt", "path": "tls.crt"},
                                               {"key": "tls.key", "path": "tls.key"}]}
    assert {"name": "tls", "mountPath": "/etc/liveportrait/tls", "readOnly": True} in c["volumeMounts"]
    env = env_values(c)
    assert env["LIVEPORTRAIT_TLS_CERT"] == "/etc/liveportrait/tls/tls.crt"
    assert env["LIVEPORTRAIT_TLS_KEY"] == "/etc/liveportrait/tls/tls.key"
    assert "LIVEPORTRAIT_TLS_CLIENT_CA" not in env and "LIVEPORTRAIT_API_KEYS" not in env
    assert not [x for x in docs if x["kind"] == "Certificate"]
    # dev values: plaintext, on purpose (values-dev-cpu.yaml says so)
    dev = render(helm, ("values-dev-cpu.yaml",))
    validate_all(kubernetes_validate, dev)
    c = container(orchestrator(dev), "orchestrator")
    assert not [k for k in env_values(c) if k.startswith("LIVEPORTRAIT_TLS")]
    assert [v["name"] for v in pod_spec(orchestrator(dev))["volumes"]] == ["tmp"]
    assert "tls:\n    enabled: false" in (CHART / "values-dev-cpu.yaml").read_text()


@pytest.mark.parametrize("headless", [True, False])
def test_cert_manager_certificate(helm, kubernetes_validate, headless):
    sets = ("orchestrator.tls.certManager.enabled=true", "orchestrator.tls.certManager.issuerRef.name=lp-ca",
            "orchestrator.tls.certManager.issuerRef.kind=Issuer", f"orchestrator.service.headless={str(headless).lower()}",
            "web.enabled=true")
    docs = render(helm, sets=sets)
    validate_all(kubernetes_validate, docs)
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
    assert {v["name"]: v for v in pod_spec(d)["volumes"]}["tls"]["secret"]["secretName"] == secret
    assert env_values(container(d, "orchestrator"))["LIVEPORTRAIT_TLS_CERT"] == "/etc/liveportrait/tls/tls.crt"
    for pod in (pod_spec(find(docs, "Deployment", f"{FULL}-web")), find(docs, "Pod")["spec"]):
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
    sets = ("orchestrator.tls.clientCA.secretName=lp-client-ca", "orchestrator.apiKeys.secretName=lp-keys",
            "orchestrator.requestTimeoutSeconds=100")
    for example, tls in (("values.yaml", True), ("values-dev-cpu.yaml", False)):
        docs = render(helm, (example,), (TLS_SECRET, *sets) if tls else sets[1:])
        env = env_values(container(orchestrator(docs), "orchestrator"))
        config = orchestrator_config(env, monkeypatch)
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
    validate_all(kubernetes_validate, docs)
    d = orchestrator(docs)
    c = container(d, "orchestrator")
    vols = {v["name"]: v for v in pod_spec(d)["volumes"]}
    assert vols["client-ca"]["secret"] == {"secretName": "lp-client-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert {"name": "client-ca", "mountPath": "/etc/liveportrait/client-ca", "readOnly": True} in c["volumeMounts"]
    assert env_values(c)["LIVEPORTRAIT_TLS_CLIENT_CA"] == "/etc/liveportrait/client-ca/ca.crt"  # --tls-client-ca
    # without a client certificate for the chart's own clients the helm test says what to set
    script = find(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert "set orchestrator.tls.clientCA.clientSecretName" in script and "exit 1" in script
    assert subprocess.run(["/bin/sh", "-n", "-c", script], capture_output=True).returncode == 0
    # with one: the test pod and the web page present it
    docs = render(helm, sets=sets + ("orchestrator.tls.clientCA.clientSecretName=lp-client",))
    validate_all(kubernetes_validate, docs)
    client_flags = ["--ca", "/etc/liveportrait/tls/ca.crt", "--cert", "/etc/liveportrait/client-tls/tls.crt",
                    "--key", "/etc/liveportrait/client-tls/tls.key"]
    script = find(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert f'CA_ARGS="{" ".join(client_flags)}"' in script and "exit 1" not in script
    web = container(find(docs, "Deployment", f"{FULL}-web"), "web")
    assert web["args"][-6:] == client_flags
    for pod in (find(docs, "Pod")["spec"], pod_spec(find(docs, "Deployment", f"{FULL}-web"))):
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
    validate_all(kubernetes_validate, docs)
    d = orchestrator(docs)
    c = container(d, "orchestrator")
    vols = {v["name"]: v for v in pod_spec(d)["volumes"]}
    assert vols["api-keys"]["secret"] == {"secretName": "lp-keys", "defaultMode": 0o440,
                                          "items": [{"key": "keys.json", "path": "keys.json"}]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-keys")
    # a directory mount: a subPath mount would never see the Secret's updates (keys reload without restart)
    assert mount == {"name": "api-keys", "mountPath": "/etc/liveportrait/keys", "readOnly": True}
    assert env_values(c)["LIVEPORTRAIT_API_KEYS"] == "/etc/liveportrait/keys/keys.json"  # --api-keys
    # health needs no key: the test checks health and skips the animation without a key of its own
    script = find(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert "liveportrait health" in script and "liveportrait animate" not in script
    assert "tests.apiKeySecretName is not set" in script
    assert "LIVEPORTRAIT_API_KEY" not in json.dumps(find(docs, "Deployment", f"{FULL}-web"))
    docs = render(helm, sets=("orchestrator.apiKeys.secretName=lp-keys", "web.enabled=true",
                              "tests.apiKeySecretName=lp-test-key", "web.apiKeySecretName=lp-web-key"))
    validate_all(kubernetes_validate, docs)
    pod = find(docs, "Pod")["spec"]
    assert "liveportrait animate" in pod["containers"][0]["command"][2]
    for c, secret in ((pod["containers"][0], "lp-test-key"),
                      (container(find(docs, "Deployment", f"{FULL}-web"), "web"), "lp-web-key")):
        assert env_values(c)["LIVEPORTRAIT_API_KEY"] == {"secretKeyRef": {"name": secret, "key": "api-key"}}
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
