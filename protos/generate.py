"""Regenerate the committed Python code of the protos: ``python -m protos.generate`` (needs grpcio-tools).

The generated modules are committed so that the runtime needs no compiler; a test checks they are current.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTOS = ("protos/liveportrait/v1/portrait_animator.proto",)


def generate(output_root: Path = REPO_ROOT) -> list[Path]:
    """Compile every proto into ``output_root`` (same relative layout); returns the written files."""
    from grpc_tools import protoc

    for proto in PROTOS:
        code = protoc.main(["grpc_tools.protoc", f"-I{REPO_ROOT}", f"--python_out={output_root}",
                            f"--pyi_out={output_root}", f"--grpc_python_out={output_root}", str(REPO_ROOT / proto)])
        if code != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {code})")
    return sorted(p for proto in PROTOS for p in (output_root / proto).parent.glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
