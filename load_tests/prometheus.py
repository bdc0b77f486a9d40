"""A real Prometheus server (Debian ``prometheus`` package, /usr/bin/prometheus) on loopback with a generated
config: static scrape targets with ``namespace``/``pod`` labels (what the chart's rules group by), a short scrape
interval and the chart's rule file. Queried through its HTTP API."""
from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.child_process import ChildServer, http_ok
from orchestrator.triton_process import free_port


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or a query failed."""


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    pod: str
    namespace: str = "loadtest"


def config_text(targets: list[ScrapeTarget], rule_files: list[Path], scrape_interval_s: float) -> str:
    """prometheus.yml (JSON is valid YAML)."""
    jobs: dict[str, list[ScrapeTarget]] = {}
    for t in targets:
        jobs.setdefault(t.job, []).append(t)
    interval = f"{int(scrape_interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "scrape_timeout": interval,
             "static_configs": [{"targets": [t.address], "labels": {"pod": t.pod, "namespace": t.namespace}}
                                for t in members]}
            for job, members in jobs.items()
        ],
    }
    return json.dumps(config, indent=2)


def binary() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).is_file():
        raise PrometheusError("prometheus not found: apt-get install -y prometheus (Debian package)")
    return path


@dataclass
class PrometheusProcess(ChildServer):
    name = "prometheus"
    error = PrometheusError

    targets: list[ScrapeTarget]
    rule_files: list[Path]
    work_dir: Path
    scrape_interval_s: float = 1.0
    port: int = field(default_factory=free_port)
    startup_timeout_s: float = 60.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "PrometheusProcess":
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        (self.work_dir / "data").mkdir(parents=True)
        config = self.work_dir / "prometheus.yml"
        config.write_text(config_text(self.targets, self.rule_files, self.scrape_interval_s))
        command = [binary(), f"--config.file={config}", f"--storage.tsdb.path={self.work_dir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=2h"]
        self.spawn(command)
        return self

    @property
    def log_file(self) -> Path:
        return self.work_dir / "prometheus.log"

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def api(self, path: str, **params) -> object:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{path} {params}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        return self.api("query", **params)["result"]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}")["result"]

    def rule_groups(self) -> list[dict]:
        return self.api("rules")["groups"]

    def wait_for_targets(self, timeout_s: float = 30.0) -> None:
        """Until every target has been scraped successfully once."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            up = self.query("up")
            if len(up) == len(self.targets) and all(float(r["value"][1]) == 1 for r in up):
                return
            time.sleep(0.5)
        raise PrometheusError(f"not every target is up after {timeout_s:.0f} s: {self.query('up')}")
