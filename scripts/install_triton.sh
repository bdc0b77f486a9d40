#!/usr/bin/env bash
# Install the embedded Triton Inference Server (CPU) into DIR (default .triton):
#   DIR/pytriton/tritonserver/bin/tritonserver        the real tritonserver 2.51 binary from the nvidia-pytriton wheel
#   DIR/pytriton/tritonserver/backends/python/        the Python backend, with the Python 3.11 stub copied in
#   DIR/python/                                        numpy<2 + onnxruntime for the stub (PYTHONPATH of the server),
#                                                      the exact versions of requirements/triton-python.lock
# The wheel is installed without its dependencies: its numpy<2 pin must not reach the project's environment. The stub's
# packages are a separate, complete lock installed with --no-deps: pip resolves nothing against the project's
# environment (whose numpy 2 and protobuf would otherwise be reported as conflicts).
set -euo pipefail
LOCK="$(cd "$(dirname "$0")/.." && pwd)/requirements/triton-python.lock"
DIR=${1:-.triton}
PY=${PYTHON:-python3}
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # absolute: we cd below
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [ ! -x "$DIR/pytriton/tritonserver/bin/tritonserver" ]; then
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "nvidia-pytriton==0.7.0"
  (cd "$DIR" && "$PY" -m zipfile -e "$tmp"/nvidia_pytriton-*.whl .)
  rm -rf "$tmp" "$DIR/pytriton/"*.py "$DIR"/nvidia_pytriton-*.dist-info
  chmod +x "$DIR/pytriton/tritonserver/bin/tritonserver" "$DIR"/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub
fi
stub="$DIR/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub"
cmp -s "$stub" "$DIR/pytriton/tritonserver/backends/python/triton_python_backend_stub" \
  || cp "$stub" "$DIR/pytriton/tritonserver/backends/python/"
stamp="$DIR/python/.lock-$(sha256sum "$LOCK" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$DIR/python"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --require-hashes --target "$DIR/python" -r "$LOCK"
  touch "$stamp"
fi
echo "tritonserver installed in $DIR"
