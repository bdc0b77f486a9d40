"""`liveportrait up` takes the orchestrator's flags (API keys, spool, drain ...) and leaves nothing behind: an
orchestrator killed mid-upload is restarted and its upload is gone from the spool; SIGTERM lets a running request
finish within the drain time, then everything stops with an empty spool."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from client import cli
from orchestrator.embedded import SET_BY_THE_STACK, OrchestratorProcess, orchestrator_argv
from orchestrator.config import add_options
from orchestrator.triton_process import free_port
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc
from test_embedded_stack import read_until

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"
KEY = "k-up-lifecycle-0123456789"
DRAIN_S = 60


def test_up_offers_every_orchestrator_flag_but_those_it_sets_and_passes_the_given_ones_on():
    orchestrator_flags = {action.option_strings[-1] for action in add_options(argparse.ArgumentParser())}
    up = cli.parser().parse_args(["up"])
    offered = {action.option_strings[-1] for action in up.orchestrator_options}
    assert offered == orchestrator_flags - set(SET_BY_THE_STACK)
    assert all(action.help for action in up.orchestrator_options)  # `up --help` says what each one does
    args = cli.parser().parse_args(["up", "--api-keys", "keys.json", "--max-concurrent", "3", "--drain-seconds", "45"])
    argv = orchestrator_argv(args.orchestrator_options, args)
    assert dict(zip(argv[::2], argv[1::2])) == {"--api-keys": str(Path("keys.json").absolute()),
                                                "--max-concurrent": "3", "--drain-seconds": "45.0"}


def test_the_orchestrator_is_given_its_drain_time_before_it_is_killed():
    assert OrchestratorProcess("127.0.0.1:1", Path("o.log"), drain_s=45).stop_timeout_s > 45
    assert OrchestratorProcess("127.0.0.1:1", Path("o.log"), extra_args=("--drain-seconds", "120")).stop_timeout_s > 120


def test_up_with_a_busy_web_port_names_the_flag():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "client.cli", "up", "--web", "--web-port", str(port),
                                 "--port", str(free_port())], capture_output=True, text=True, timeout=120,
                                cwd=REPO_ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: the web page's port {port} is in use (another `liveportrait up --web` "
                                      f"or `liveportrait web`?); choose another with --web-port N (0: any free port)")


@dataclass
class Up:
    process: subprocess.Popen
    target: str
    spool: Path

    def folders(self) -> list[Path]:
        return sorted(self.spool.iterdir())


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`liveportrait up --api-keys ... --spool-dir ... --drain-seconds ...`, shared by the tests below in their
    order (the last one stops it)."""
    folder = tmp_path_factory.mktemp("up")
    keys = folder / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "tester", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]}))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "client.cli", "up", "--port", str(port), "--metrics-port", "0",
                                "--api-keys", str(keys), "--spool-dir", str(folder / "spool"),
                                "--drain-seconds", str(DRAIN_S)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _, output = read_until(process, r"press Ctrl-C to stop", 300)
        assert f"--server 127.0.0.1:{port} --api-key KEY" in output
        yield Up(process, f"127.0.0.1:{port}", folder / "spool")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(DRAIN_S + 30)
            except subprocess.TimeoutExpired:
                process.kill()


class SlowUpload:
    """An AnimatePortrait call (s0.jpg driven by d0.mp4) whose upload stops after its first chunk until ``go_on()``."""

    def __init__(self, target: str):
        self.target = target
        self._go_on = threading.Event()
        self.code: grpc.StatusCode | None = None
        self.video_bytes = 0
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._call)
        self._thread.start()

    def _requests(self):
        video = (EXAMPLES / "driving" / "d0.mp4").read_bytes()
        setup = pb.AnimateSetup(source_image=(EXAMPLES / "source" / "s0.jpg").read_bytes(),
                                driving_video=pb.DrivingVideo(size_bytes=len(video), filename="d0.mp4"))
        yield pb.AnimateRequest(setup=setup)
        yield pb.AnimateRequest(driving_chunk=video[:1 << 20])
        self._go_on.wait(120)
        for start in range(1 << 20, len(video), 1 << 20):
            yield pb.AnimateRequest(driving_chunk=video[start:start + (1 << 20)])

    def _call(self):
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.PortraitAnimatorStub(channel)
            try:
                for response in stub.AnimatePortrait(self._requests(), metadata=[("authorization", f"Bearer {KEY}")],
                                                     timeout=180):
                    self.video_bytes += len(response.video.data)
                self.code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                self.code = exc.code()
        self.finished_at = time.monotonic()

    def go_on(self) -> None:
        self._go_on.set()

    def end(self) -> grpc.StatusCode:
        self.go_on()
        self._thread.join(180)
        return self.code


def spooled_upload(spool: Path, timeout_s: float = 60) -> Path:
    """The first upload file that has bytes in it (its folder is its orchestrator's)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        uploads = [f for f in spool.glob("orchestrator-*/upload-*.bin") if f.stat().st_size > 0]
        if uploads:
            return uploads[0]
        time.sleep(0.1)
    pytest.fail(f"no upload spooled in {spool} within {timeout_s:.0f} s")


def detect(target: str, key: str | None) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        try:
            pb_grpc.PortraitAnimatorStub(channel).DetectFaces(
                pb.DetectFacesRequest(image=(EXAMPLES / "source" / "s0.jpg").read_bytes()), timeout=60,
                metadata=[("authorization", f"Bearer {key}")] if key else None)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.triton
def test_up_with_api_keys_refuses_a_call_without_a_key_and_serves_one_with_it(up):
    assert detect(up.target, None) == grpc.StatusCode.UNAUTHENTICATED
    assert detect(up.target, KEY) == grpc.StatusCode.OK


@pytest.mark.triton
def test_an_orchestrator_killed_mid_upload_leaves_nothing_in_the_spool_once_up_restarted_it(up):
    call = SlowUpload(up.target)
    killed = spooled_upload(up.spool).parent
    os.kill(int(killed.name.split("-")[1]), signal.SIGKILL)  # the folder is named after its process
    assert call.end() == grpc.StatusCode.UNAVAILABLE
    read_until(up.process, r"the orchestrator is back", 120)
    assert not killed.exists()
    (restarted,) = up.folders()
    assert [f.name for f in restarted.iterdir()] == ["owner.json"]  # no upload of anyone's


@pytest.mark.triton
def test_sigterm_to_up_lets_a_running_request_finish_then_stops_with_an_empty_spool(up):
    call = SlowUpload(up.target)
    spooled_upload(up.spool)  # the request is running: its upload has begun
    up.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    read_until(up.process, r"stopping: running requests may finish", 30)
    assert call.end() == grpc.StatusCode.OK and call.video_bytes > 0  # the rest of its upload is still received
    assert call.finished_at - signalled < DRAIN_S
    _, output = read_until(up.process, r"stopped", DRAIN_S + 30)
    assert up.process.wait(30) == 0 and "Traceback" not in output
    assert up.folders() == []  # the spool holds nothing once the orchestrator stopped
