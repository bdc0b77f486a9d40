"""The embedded local stack of ``liveportrait up`` / ``liveportrait demo`` (and the end-to-end tests):
export the CPU model repository if missing, start the real tritonserver (``TritonProcess``) and the orchestrator
(a child process), wait until the orchestrator's gRPC health says SERVING, stop both cleanly: the orchestrator
first, given its drain time to let running requests finish.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .child_process import ChildServer
from .ports import port_in_use
from .triton_process import REPO_ROOT, TritonProcess, TritonStartError, free_port


# the orchestrator flags the embedded stack sets itself; `liveportrait up` passes all others on
SET_BY_THE_STACK = ("--address", "--port", "--metrics-port", "--health-port", "--triton-url", "--triton-ssl",
                    "--triton-root-certificates", "--face-stack")
STOP_MARGIN_S = 10.0  # after its drain, the orchestrator stops its servers and its Triton client


class StackError(RuntimeError):
    """A part of the embedded stack did not start."""


@dataclass(frozen=True)
class StackConfig:
    profile: str = "tiny"
    weights: str = "synthetic"  # or a directory with the official weights
    port: int = 50051
    metrics_port: int = 9100
    work_dir: Path = REPO_ROOT / "build" / "embedded"
    face_stack: str = "mediapipe"  # "official": the InsightFace/LivePortrait files found in the weights directory
    orchestrator_args: tuple[str, ...] = ()  # more liveportrait-orchestrator flags (see ``orchestrator_argv``)
    animal: bool = False  # also export and serve the animal models (model_set ANIMAL requests)
    audio: bool = False  # also export and serve the audio-to-motion models (liveportrait-export --audio)
    drain_s: float = 30.0  # the orchestrator's --drain-seconds: on stop, running requests may finish for this long

    @property
    def log_dir(self) -> Path:
        """One folder per stack (its gRPC port is its own on this machine): two stacks' logs do not mix."""
        return self.work_dir / f"logs-{self.port}"

    @property
    def repository(self) -> Path:
        label = "synthetic" if self.weights == "synthetic" else "official"
        return self.work_dir / f"repo-{self.profile}-cpu-{label}"

    @property
    def animal_repository(self) -> Path:
        return self.repository.with_name(self.repository.name + "-animal")


def orchestrator_argv(actions: list[argparse.Action], args: argparse.Namespace) -> tuple[str, ...]:
    """The orchestrator options of a parsed command line (``actions``: from ``orchestrator.config.add_options``) that
    differ from their defaults, as the orchestrator's argv; paths made absolute (the child runs in the repository)."""
    argv = []
    for action in actions:
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:  # store_true and the like
            argv.append(flag)
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        argv += [flag, *(str(v.absolute() if isinstance(v, Path) else v) for v in values)]
    return tuple(argv)


def resolve_ports(config: StackConfig, log=print) -> StackConfig:
    """Checked before anything starts: a gRPC port in use is an error naming ``--port`` (clients must know the
    port); a metrics port in use is replaced by a free one, which is printed."""
    if port_in_use("127.0.0.1", config.port):
        raise StackError(f"the gRPC port {config.port} is in use (another `liveportrait up` or orchestrator?); "
                         f"choose another with --port N")
    if port_in_use("0.0.0.0", config.metrics_port):
        port = free_port()
        log(f"the metrics port {config.metrics_port} is in use; serving the orchestrator's metrics on port {port} "
            f"instead (choose one with --metrics-port N)")
        config = replace(config, metrics_port=port)
    return config


def export_repository(config: StackConfig, log=print, model_set: str = "human") -> Path:
    """``liveportrait-export`` in a child process (it needs torch, the orchestrator does not); idempotent. The animal
    set goes to a repository of its own, served beside the human one (its models end in ``_animal``)."""
    output = config.animal_repository if model_set == "animal" else config.repository
    command = [sys.executable, "-m", "export_scripts.cli", "--weights", config.weights, "--profile", config.profile,
               "--target", "cpu", "--output", str(output), "--model-set", model_set]
    if config.audio and model_set == "human":
        command.append("--audio")
    log(f"model repository: {output} ({config.profile} profile, weights: {config.weights}, {model_set} models)")
    result = subprocess.run(command, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise StackError(f"liveportrait-export failed (exit {result.returncode})")
    return output


@dataclass
class OrchestratorProcess(ChildServer):
    """``liveportrait-orchestrator`` as a child process."""

    name = "the orchestrator"
    error = StackError

    triton_url: str
    log_file: Path
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 120.0
    require_serving: bool = True  # False: return once the gRPC server answers health checks (any status)
    health_port: int | None = None  # a plaintext health-only port (--health-port): readiness is read there
    drain_s: float = 30.0  # --drain-seconds (``extra_args`` may set another)

    @property
    def stop_timeout_s(self) -> float:
        """``stop()`` sends SIGTERM and waits this long before SIGKILL: the drain time and a margin, so running
        requests finish (reading a later --drain-seconds in ``extra_args``, as the orchestrator does)."""
        drain = self.drain_s
        for flag, value in zip(self.extra_args, self.extra_args[1:]):
            if flag == "--drain-seconds":
                drain = float(value)
        return drain + STOP_MARGIN_S

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def health_target(self) -> str:
        return f"127.0.0.1:{self.health_port}" if self.health_port else self.target

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        health = ["--health-port", str(self.health_port)] if self.health_port else []
        return [sys.executable, "-m", "orchestrator.server", "--address", "127.0.0.1", "--port", str(self.port),
                "--metrics-port", str(self.metrics_port), "--triton-url", self.triton_url, *health,
                "--drain-seconds", str(self.drain_s), *self.extra_args]

    def start(self) -> "OrchestratorProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("MALLOC_ARENA_MAX", "2")  # fewer glibc arenas for the worker threads: flatter RSS
        self.spawn(self.command(), cwd=REPO_ROOT, env=env)
        return self

    def is_ready(self) -> bool:
        """SERVING on the standard health service (with ``require_serving`` off: answering at all)."""
        with grpc.insecure_channel(self.health_target) as channel:
            try:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
            except grpc.RpcError:
                return False
        return status == health_pb2.HealthCheckResponse.SERVING or not self.require_serving


@dataclass
class Restarts:
    """When to restart one child: at once after a long run, then 1, 2, 4 ... 30 s while it keeps dying within a
    minute of its (re)start."""

    attempts: int = 0
    not_before: float = 0.0
    started: float = field(default_factory=time.monotonic)
    scheduled: bool = False  # its exit was seen and a restart planned

    def schedule(self) -> float:
        now = time.monotonic()
        if now - self.started > 60:
            self.attempts = 0
        delay = 0.0 if self.attempts == 0 else min(30.0, 2.0 ** (self.attempts - 1))
        self.attempts += 1
        self.not_before = now + delay
        self.scheduled = True
        return delay


class EmbeddedStack:
    """Triton + orchestrator on this machine; use as a context manager. ``supervise()`` (called periodically by
    ``liveportrait up``) restarts a child that died, cleaning up after it (stubs, shared memory)."""

    def __init__(self, config: StackConfig, log=print):
        self.config = config
        self.log = log
        self.triton: TritonProcess | None = None
        self.orchestrator: OrchestratorProcess | None = None
        self._restarts = {"tritonserver": Restarts(), "the orchestrator": Restarts()}

    @property
    def target(self) -> str:
        return self.orchestrator.target

    def start(self) -> "EmbeddedStack":
        c = self.config = resolve_ports(self.config, self.log)
        repository = export_repository(c, self.log)
        if c.face_stack == "official" and not (repository / "official_face_detector").is_dir():
            raise StackError(f"--face-stack official needs the official face files in the weights directory "
                             f"({c.weights}): insightface/models/buffalo_l/det_10g.onnx, 2d106det.onnx and "
                             f"liveportrait/landmark.onnx")
        more = (f"--model-repository={export_repository(c, self.log, 'animal')}",) if c.animal else ()
        try:
            self.log("starting tritonserver (CPU; NVML/DCGM warnings are expected without a GPU) ...")
            self.triton = TritonProcess(repository, log_file=c.log_dir / "tritonserver.log", extra_args=more).start()
            self.log(f"tritonserver ready on {self.triton.grpc_url} (log {self.triton.log_file})")
            # readiness is read on a plaintext health port: it answers also when the orchestrator's gRPC uses TLS
            self.orchestrator = OrchestratorProcess(self.triton.grpc_url, c.log_dir / "orchestrator.log",
                                                    port=c.port, metrics_port=c.metrics_port, health_port=free_port(),
                                                    drain_s=c.drain_s, extra_args=("--face-stack", c.face_stack,
                                                                                   *c.orchestrator_args)).start()
        except BaseException:
            self.stop()
            raise
        self.log(f"orchestrator SERVING on {self.orchestrator.target}, metrics {self.orchestrator.metrics_url}")
        return self

    def supervise(self) -> None:
        """Restart tritonserver or the orchestrator if it exited (the orchestrator reconnects to a restarted Triton on
        the same ports by itself and reports SERVING again within seconds)."""
        for name, child in (("tritonserver", self.triton), ("the orchestrator", self.orchestrator)):
            restarts = self._restarts[name]
            if child is None or child.exit_code is None:
                continue
            if not restarts.scheduled:
                code = child.exit_code
                child.stop()  # reaps it and what it left behind (Python-backend stubs, shared memory)
                delay = restarts.schedule()
                self.log(f"{name} exited (code {code}); restarting it" + (f" in {delay:.0f} s" if delay else "")
                         + " ...")
            if time.monotonic() < restarts.not_before:
                continue
            restarts.scheduled = False
            restarts.started = time.monotonic()  # a start that fails, or dies soon, backs off the next one
            try:
                child.start()
            except (StackError, TritonStartError) as exc:
                self.log(f"{name} did not restart: {exc}")
            else:
                self.log(f"{name} is back")

    def stop(self, timeout_s: float | None = None) -> None:
        """The orchestrator first (it drains: running requests finish on Triton), then tritonserver; ``timeout_s``
        (e.g. 0: at once) instead of each child's own stop timeout."""
        if self.orchestrator:
            self.orchestrator.stop(timeout_s)
        if self.triton:
            self.triton.stop(timeout_s)

    def __enter__(self) -> "EmbeddedStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
