"""The chart's Prometheus rules (helm/liveportrait/files/prometheus-rules.yaml) under promtool: syntax check, the unit
tests in helm/tests/prometheus-rules.test.yaml (synthetic Triton series for two pods: the recorded scaling signal is the
summed-rate value, alerts fire when they should), a mutation check proving those unit tests catch an average-of-ratios
signal, and consistency with the prometheus-adapter rules and the documented thresholds."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "liveportrait"
RULES = CHART / "files" / "prometheus-rules.yaml"
UNIT_TESTS = REPO / "helm" / "tests" / "prometheus-rules.test.yaml"
SIGNAL = "liveportrait:triton_queue_us_per_request:rate1m"


@pytest.fixture(scope="module")
def promtool() -> str:
    local = REPO / ".tools" / "bin" / "promtool"
    found = str(local) if local.exists() else shutil.which("promtool")
    if not found:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("promtool is missing in CI: `make tools` (scripts/install_tools.sh) must install it")
        pytest.skip("promtool is missing: run `make tools`")
    return found


def run(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_check_rules(promtool):
    proc = run(promtool, "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout


def test_unit_tests_pass(promtool):
    proc = run(promtool, "test", "rules", str(UNIT_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def _with_signal(tmp_path: Path, expr: str) -> Path:
    """A copy of the rules file and of the unit tests, with the scaling signal's expression replaced."""
    doc = yaml.safe_load(RULES.read_text())
    for g in doc["groups"]:
        for r in g["rules"]:
            if r.get("record") == SIGNAL:
                r["expr"] = expr
    (tmp_path / "liveportrait" / "files").mkdir(parents=True)
    (tmp_path / "liveportrait" / "files" / "prometheus-rules.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "tests").mkdir()
    test = tmp_path / "tests" / "rules_test.yaml"
    test.write_text(UNIT_TESTS.read_text())
    return test


def test_unit_tests_reject_an_average_of_per_model_ratios(promtool, tmp_path):
    """Triton issue #8979: averaging per-model ratios gives 7000 us instead of 5500 us for pod a. The unit tests must
    notice, otherwise they would not prove anything about the signal."""
    models = 'model=~"warping_spade|appearance_feature_extractor|motion_extractor"'
    averaged = (f"avg by (namespace, pod) (rate(nv_inference_queue_duration_us{{{models}}}[1m])"
                f" / clamp_min(rate(nv_inference_request_success{{{models}}}[1m]), 0.001))")
    proc = run(promtool, "test", "rules", str(_with_signal(tmp_path, averaged)))
    assert proc.returncode != 0
    assert SIGNAL in proc.stdout + proc.stderr
    assert 'pod="rel-liveportrait-triton-7d9f8-a1"} 7E+03' in proc.stdout + proc.stderr


def test_unit_tests_reject_a_signal_over_all_models(promtool, tmp_path):
    """Including non-bottleneck models (stitching's long queue) or the ensembles must be caught too."""
    every = ("sum by (namespace, pod) (rate(nv_inference_queue_duration_us[1m]))"
             " / clamp_min(sum by (namespace, pod) (rate(nv_inference_request_success[1m])), 0.001)")
    proc = run(promtool, "test", "rules", str(_with_signal(tmp_path, every)))
    assert proc.returncode != 0


def test_signal_rule_sums_rates_per_pod():
    expr = next(r["expr"] for r in rules() if r.get("record") == SIGNAL)
    assert re.sub(r"\s+", " ", expr).count("sum by (namespace, pod) ( rate(") == 2
    assert "avg" not in expr
    for name in ("warping_spade", "appearance_feature_extractor", "motion_extractor"):
        assert name in expr
    pending = next(r["expr"] for r in rules() if r.get("record") == "liveportrait:triton_pending_requests:sum")
    assert "nv_inference_pending_request_count" in pending


def test_alert_threshold_matches_documented_target():
    """The alert fires at 4x the autoscaling target documented in values.yaml and in the rules file header."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    target = values["triton"]["autoscaling"]["queueTimeTargetUs"]
    alert = next(r for r in rules() if r.get("alert") == "LivePortraitTritonQueueTimeHigh")
    threshold = float(re.search(rf"{re.escape(SIGNAL)} > (\d+)", alert["expr"]).group(1))
    assert threshold == 4 * target
    header = RULES.read_text().split("groups:")[0]
    assert f"{int(threshold)} us" in header and f"default {target} us" in header
    assert {r["alert"] for r in rules() if "alert" in r} >= {
        "LivePortraitTritonQueueTimeHigh", "LivePortraitTritonRequestErrors", "LivePortraitTritonNoReadyReplicas"}


def test_prometheus_adapter_rules(promtool, tmp_path):
    """The adapter's seriesQuery names are recorded by the chart's rules, and its metricsQuery templates, filled in
    the way prometheus-adapter fills them, are valid PromQL."""
    adapter = yaml.safe_load((CHART / "prometheus-adapter-values.yaml").read_text())
    assert adapter["rules"]["default"] is False
    recorded = {r["record"] for r in rules() if "record" in r}
    exprs = []
    for rule in adapter["rules"]["custom"]:
        series = rule["seriesQuery"].split("{")[0]
        assert series in recorded or series == "liveportrait_requests_in_flight", series
        assert re.fullmatch(rule["name"]["matches"], series)
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        q = (rule["metricsQuery"].replace("<<.Series>>", series)
             .replace("<<.LabelMatchers>>", 'namespace="lp",pod=~"a|b"').replace("<<.GroupBy>>", "pod"))
        exprs.append(q)
    path = tmp_path / "adapter.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [
        {"record": f"adapter:q{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    proc = run(promtool, "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
