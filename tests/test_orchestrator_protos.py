"""The committed generated code is what grpcio-tools makes of the current .proto files."""
from __future__ import annotations

from pathlib import Path

from protos.generate import REPO_ROOT, generate


def test_generated_code_is_current(tmp_path: Path):
    written = generate(tmp_path)
    assert written, "protoc wrote nothing"
    for fresh in written:
        committed = REPO_ROOT / fresh.relative_to(tmp_path)
        assert committed.is_file(), f"{committed} is missing: run `python -m protos.generate`"
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run `python -m protos.generate`"


def test_service_has_the_five_methods():
    from protos.liveportrait.v1 import portrait_animator_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["PortraitAnimator"]
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {"AnimatePortrait": (True, True), "ExtractMotion": (True, False),
                       "DetectFaces": (False, False), "EditPortrait": (False, False),
                       "AnimateStream": (True, True)}
