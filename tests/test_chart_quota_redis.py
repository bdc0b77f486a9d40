"""The chart's shared quotas in Redis (quota.redis): in-chart or external, reached by the orchestrators alone.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from chart_fixtures import (
    CHART, FULL, KUBE_VERSION, NAMESPACE, RELEASE, container, env_values, find, kinds, missing_tool, orchestrator,
    orchestrator_config, pod_spec, render, run_helm, template_args, validate_all, value_args,
)


KEYS_SECRET = "orchestrator.apiKeys.secretName=lp-keys"
IN_CHART_REDIS = (KEYS_SECRET, "quota.redis.inChart.enabled=true", "quota.redis.passwordSecret=lp-redis")


def test_without_quota_redis_each_replica_keeps_its_own_quotas(helm):
    docs = render(helm, sets=(KEYS_SECRET,))
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULL}-redis"]
    assert not any(name.startswith("LIVEPORTRAIT_QUOTA") for name in env_values(container(orchestrator(docs),
                                                                                    "orchestrator")))


def test_in_chart_redis_is_reached_by_the_orchestrator_alone(helm, kubernetes_validate):
    docs = render(helm, sets=IN_CHART_REDIS)
    validate_all(kubernetes_validate, docs)
    env = env_values(container(orchestrator(docs), "orchestrator"))
    assert env["LIVEPORTRAIT_QUOTA_REDIS_URL"] == f"redis://{FULL}-redis.{NAMESPACE}.svc.cluster.local:6379/0"
    assert env["LIVEPORTRAIT_QUOTA_REDIS_FAIL"] == "closed"  # the default: a Redis outage refuses, never overspends
    assert env["LIVEPORTRAIT_QUOTA_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "lp-redis", "key": "password"}}
    redis = find(docs, "Deployment", f"{FULL}-redis")
    pod = pod_spec(redis)
    c = container(redis, "redis")
    assert c["args"][c["args"].index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert env_values(c)["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "lp-redis", "key": "password"}}
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
    validate_all(kubernetes_validate, docs)
    claim = find(docs, "PersistentVolumeClaim", f"{FULL}-redis")["spec"]
    assert claim["storageClassName"] == "fast" and claim["resources"]["requests"]["storage"] == "1Gi"
    redis = find(docs, "Deployment", f"{FULL}-redis")
    assert pod_spec(redis)["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"{FULL}-redis"
    assert redis["spec"]["strategy"] == {"type": "Recreate"}  # one writer of the volume at a time
    c = container(redis, "redis")
    assert c["args"][c["args"].index("--appendonly") + 1] == "yes"


def test_the_in_chart_redis_command_line_runs_the_real_redis_server_with_its_password(helm, tmp_path):
    binary = shutil.which("redis-server")
    if not binary:
        missing_tool("redis-server")
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
    docs = render(helm, sets=(KEYS_SECRET, "quota.redis.url=rediss://quota.example.org:6380/2",
                              "quota.redis.passwordSecret=lp-redis", "quota.redis.passwordKey=pw",
                              "quota.redis.failMode=open"))
    validate_all(kubernetes_validate, docs)
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULL}-redis"]  # no in-chart Redis
    env = env_values(container(orchestrator(docs), "orchestrator"))
    assert env["LIVEPORTRAIT_QUOTA_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "lp-redis", "key": "pw"}}
    config = orchestrator_config(env, monkeypatch)
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
