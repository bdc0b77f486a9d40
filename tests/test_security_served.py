"""The real orchestrator process behind TLS with client certificates and API keys, its plaintext health port, its
drain on SIGTERM, and the embedded launcher restarting a tritonserver that died."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.api import PortraitClient
from orchestrator.auth import key_digest
from orchestrator.embedded import EmbeddedStack, OrchestratorProcess, StackConfig
from orchestrator.triton_process import free_port, mapped_shm_regions, shm_regions
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def certificate_authority(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(cert))
    return key, cert


def signed(folder: Path, name: str, ca: tuple[Path, Path], server: bool = False) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server
                          else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial", "-days",
            "2", "-extfile", str(extensions), "-out", str(cert))
    return key, cert


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """An orchestrator with TLS + client certificates + API keys (no Triton behind it: the calls used here are
    refused or answered before any model is needed)."""
    folder = tmp_path_factory.mktemp("tls")
    ca = certificate_authority(folder, "ca")
    server_key, server_cert = signed(folder, "server", ca, server=True)
    keys = folder / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"name": "detector", "sha256": key_digest("k-detector-0123456789"), "rpcs": ["DetectFaces"]},
        {"name": "extractor", "sha256": key_digest("k-extractor-0123456789"), "rpcs": ["ExtractMotion"]}]}))
    process = OrchestratorProcess("127.0.0.1:1", folder / "orchestrator.log", require_serving=False,
                                  health_port=free_port(), extra_args=(
                                      "--tls-cert", str(server_cert), "--tls-key", str(server_key),
                                      "--tls-client-ca", str(ca[1]), "--api-keys", str(keys)))
    with process:
        yield process, folder, ca, keys


def detect(process, folder: Path, client_cert: tuple[Path, Path] | None, api_key: str | None):
    with PortraitClient(process.target, folder / "ca.crt", api_key, *(reversed(client_cert) if client_cert
                                                                          else (None, None))) as client:
        try:
            client.detect(b"not an image")
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def test_the_plaintext_health_port_answers_probes_while_grpc_needs_tls(secured):
    process, *_ = secured
    with grpc.insecure_channel(process.health_target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING  # no Triton behind it
    with grpc.insecure_channel(process.health_target) as channel:  # nothing but health there
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.PortraitAnimatorStub(channel).DetectFaces(pb.DetectFacesRequest(image=b"x"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_mutual_tls_admits_certificates_of_our_ca_only(secured):
    process, folder, ca, _ = secured
    ours = signed(folder, "client", ca)
    stranger = signed(folder, "stranger", certificate_authority(folder, "other-ca"))
    assert detect(process, folder, ours, "k-detector-0123456789")[0] == grpc.StatusCode.INVALID_ARGUMENT  # admitted
    assert detect(process, folder, stranger, "k-detector-0123456789")[0] == grpc.StatusCode.UNAVAILABLE
    assert detect(process, folder, None, "k-detector-0123456789")[0] == grpc.StatusCode.UNAVAILABLE


def test_api_keys_on_the_real_server_missing_wrong_right_revoked(secured):
    process, folder, ca, keys = secured
    client_cert = signed(folder, "client2", ca)
    code, message = detect(process, folder, client_cert, None)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "no API key" in message
    assert detect(process, folder, client_cert, "k-wrong")[0] == grpc.StatusCode.UNAUTHENTICATED
    code, message = detect(process, folder, client_cert, "k-extractor-0123456789")
    assert code == grpc.StatusCode.PERMISSION_DENIED and "DetectFaces" in message
    assert detect(process, folder, client_cert, "k-detector-0123456789")[0] == grpc.StatusCode.INVALID_ARGUMENT
    keys.write_text(json.dumps({"keys": [{"name": "extractor", "sha256": key_digest("k-extractor-0123456789")}]}))
    time.sleep(1.5)  # the file is re-read at most once a second
    assert detect(process, folder, client_cert, "k-detector-0123456789")[0] == grpc.StatusCode.UNAUTHENTICATED
    log = (folder / "orchestrator.log").read_text()
    assert "k-detector-0123456789" not in log and "detector" in log  # names are logged, keys never


def test_oversized_duplicate_and_malformed_credentials_are_unauthenticated_never_a_transport_error(secured):
    """The server's gRPC metadata limit lets an oversized credential reach the key check (below it, gRPC would end
    the call itself with RESOURCE_EXHAUSTED 'received metadata size exceeds hard limit')."""
    process, folder, ca, _ = secured
    client_key, client_cert = signed(folder, "client3", ca)
    for size in (20_000, 64_000):
        code, message = detect(process, folder, (client_key, client_cert), "k" * size)
        assert code == grpc.StatusCode.UNAUTHENTICATED and f"is {size + 7} characters long" in message
        assert "kkkk" not in message
    credentials = grpc.ssl_channel_credentials(ca[1].read_bytes(), client_key.read_bytes(), client_cert.read_bytes())
    with grpc.secure_channel(process.target, credentials) as channel:
        stub = pb_grpc.PortraitAnimatorStub(channel)
        for metadata, problem in (
                ((("authorization", "Bearer k-detector-0123456789"), ("authorization", "Bearer junk")),
                 "2 credentials were sent"),
                ((("authorization", "k-detector-0123456789"),), "not of the form 'Bearer <key>'")):
            with pytest.raises(grpc.RpcError) as refused:
                stub.DetectFaces(pb.DetectFacesRequest(image=b"x"), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED and problem in refused.value.details()
            assert "k-detector" not in refused.value.details()


def template(frames: int) -> pb.MotionTemplate:
    from load_tests.scenarios import short_template

    return short_template(SHARED / "examples" / "templates" / "d7.pkl", frames)


@pytest.mark.triton
def test_sigterm_drains_running_requests_and_refuses_new_ones(triton_server, tmp_path):
    process = OrchestratorProcess(triton_server.grpc_url, tmp_path / "orchestrator.log", health_port=free_port(),
                                  extra_args=("--drain-seconds", "120")).start()
    outcome = {}

    def long_request():
        with PortraitClient(process.target) as client:
            try:
                outcome["summary"] = client.animate(SHARED / "examples" / "source" / "s0.jpg", template(40),
                                                    tmp_path / "out.mp4",
                                                    on_progress=lambda p: outcome.setdefault("started", time.monotonic()))
            except grpc.RpcError as exc:
                outcome["error"] = exc.code()

    worker = threading.Thread(target=long_request)
    worker.start()
    while "started" not in outcome and worker.is_alive():
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    time.sleep(0.5)
    with grpc.insecure_channel(process.health_target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING  # first: the load balancer stops sending
    with PortraitClient(process.target) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.detect(b"any")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in refused.value.details()
    worker.join(180)
    assert "error" not in outcome and outcome["summary"].frames == 40  # the running request finished
    assert process._process.wait(60) == 0
    assert "Traceback" not in (tmp_path / "orchestrator.log").read_text()


@pytest.mark.triton
def test_a_killed_tritonserver_is_restarted_and_the_stack_serves_again(tmp_path):
    stack = EmbeddedStack(StackConfig(port=free_port(), metrics_port=free_port(), work_dir=tmp_path),
                          log=lambda *_: None)
    with stack:
        old = stack.triton._process.pid
        old_regions = mapped_shm_regions(old)
        failed = {}

        def request():
            with PortraitClient(stack.target) as client:
                try:
                    client.animate(SHARED / "examples" / "source" / "s0.jpg", template(200), tmp_path / "a.mp4")
                except grpc.RpcError as exc:
                    failed["code"] = exc.code()

        worker = threading.Thread(target=request)
        worker.start()
        time.sleep(3)
        os.kill(old, signal.SIGKILL)
        worker.join(120)
        assert failed.get("code") == grpc.StatusCode.UNAVAILABLE  # that request fails with a clear status
        for _ in range(40):  # what `liveportrait up` runs every second (a killed process may take a moment to exit)
            stack.supervise()
            if stack.triton._process.pid != old:
                break
            time.sleep(0.5)
        triton_ready = time.monotonic()
        assert stack.triton.exit_code is None and stack.triton._process.pid != old
        while time.monotonic() - triton_ready < 10 and not stack.orchestrator.is_ready():
            time.sleep(0.2)
        assert stack.orchestrator.is_ready(), "SERVING again within 10 s of Triton being ready"
        assert not old_regions & set(shm_regions())  # the dead server's stubs and shared memory are gone
        assert subprocess.run(["pgrep", "-g", str(old)], capture_output=True).returncode == 1
