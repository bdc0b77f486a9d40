"""Every example of the Helm chart lints strictly, renders and validates against the Kubernetes and CRD schemas;
bad values fail with a message that says what to set.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from chart_fixtures import (
    CHART, CRD_GROUPS, EXAMPLES, FULL, KUBE_VERSION, NAMESPACE, TLS_MISSING, TLS_SECRET, TOOLS, find, missing_tool,
    render, run_helm, template_args, triton, value_args,
)


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
        missing_tool(str(path))
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
