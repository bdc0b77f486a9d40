"""The chart's autoscaling (HPA on adapter metrics, KEDA) and monitoring objects, every PromQL expression parsed by
promtool.
"""
from __future__ import annotations

import json
import math
import re

import yaml

from chart_fixtures import CHART, FULL, NAMESPACE, find, kinds, orchestrator, promql_check, render, triton


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
