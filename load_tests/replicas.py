"""N Triton replicas on loopback (each its own ports, one shared model repository), started in parallel."""
from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from orchestrator.triton_process import TritonProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD = REPO_ROOT / "build" / "load"


def tiny_cpu_repository(output: Path = BUILD / "repo-tiny-cpu", audio: bool = False) -> Path:
    """``liveportrait-export --weights synthetic --profile tiny --target cpu [--audio]`` (idempotent, cached)."""
    from export_scripts.cli import ExportRequest, run_export

    run_export(ExportRequest(weights="synthetic", profile="tiny", target="cpu", output=output, audio=audio),
               log=lambda *_: None)
    return output


@contextmanager
def triton_replicas(repository: Path, count: int, log_dir: Path, extra_args: tuple[str, ...] = ()):
    """Yield ``count`` started TritonProcess objects; all are stopped on exit."""
    servers = [TritonProcess(repository, log_file=log_dir / f"triton-{i}.log", extra_args=extra_args)
               for i in range(count)]
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda s: s.start(), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


def strip_block(config: str, block: str) -> str:
    """``config.pbtxt`` without the top-level ``block { ... }`` (nested braces included)."""
    match = re.search(rf"^{block}\s*\{{", config, flags=re.MULTILINE)
    if not match:
        return config
    depth, i = 0, match.end() - 1
    while True:
        depth += {"{": 1, "}": -1}.get(config[i], 0)
        i += 1
        if depth == 0:
            break
    return config[:match.start()] + config[i:].lstrip("\n")


def without_dynamic_batching(repository: Path, output: Path) -> Path:
    """A copy of the repository with every ``dynamic_batching`` block removed (max_batch_size kept): the same
    models, served by Triton's default scheduler, one request per execution. Model files are symlinked."""
    if output.exists():
        shutil.rmtree(output)
    for model_dir in sorted(p for p in repository.iterdir() if (p / "config.pbtxt").is_file()):
        target = output / model_dir.name
        target.mkdir(parents=True)
        for item in model_dir.iterdir():
            if item.name == "config.pbtxt":
                (target / item.name).write_text(strip_block(item.read_text(), "dynamic_batching"))
            else:
                (target / item.name).symlink_to(item.resolve())
    return output
