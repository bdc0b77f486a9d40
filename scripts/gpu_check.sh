#!/usr/bin/env bash
# The device check of the pytorch target (load_tests/gpu_check.py): export the full-profile synthetic repository,
# serve it with the real tritonserver on the GPU, measure fidelity, speed and load, write report.{json,md}. The
# repository has the audio models too (audio_encoder, lmdm: READY on the GPU, each timed with 16 streams per call).
#
#   scripts/gpu_check.sh --device cpu [ARGS]   any machine (CI): tiny profile on the CPU, the embedded .triton
#   scripts/gpu_check.sh prepare [PYVER]       here, before a GPU run: pack the tritonserver of .triton, the wheels the
#                                              GPU machine lacks (for Python PYVER, default 3.12) and golden case A's
#                                              inputs into .device/ (git-ignored, ~55 MB: what may travel)
#   scripts/gpu_check.sh [ARGS]                on the GPU machine (no network): unpack .device/, find libpython for the
#                                              Python-backend stub, run the check; report in $OUT or build/gpu-check
# ARGS go to `python -m load_tests.gpu_check` (--concurrency, --seconds, --skip, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${GPU_CHECK_BUNDLE:-.device}

if [ "${1:-}" = "prepare" ]; then
  PYVER=${2:-3.12}
  TAG=cp${PYVER/./}
  [ -x .triton/pytriton/tritonserver/bin/tritonserver ] || bash scripts/install_triton.sh .triton
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels"
  # the server, the Python backend, the stub of PYVER and the bundled libraries (not the 3.13 libpython)
  tar -C .triton -cf - --exclude='libpython3-*' pytriton/tritonserver/bin pytriton/tritonserver/backends/python \
      "pytriton/tritonserver/python_backend_stubs/$PYVER" nvidia_pytriton.libs | xz -T2 -6 > "$BUNDLE/tritonserver.tar.xz"
  pip_download() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$BUNDLE/wheels" "$@"
  }
  pip_download "numpy==1.26.4"  # the stub's pybind11 (2.10) predates numpy 2: numpy 1.x for the stub only
  pip_download "tritonclient==2.73.0" "python-rapidjson==1.25" "tflite==2.18.0" "protobuf==6.33.6"
  BUNDLE="$BUNDLE" python3 - <<'EOF'
import os, numpy as np
from pathlib import Path
golden = Path("../shared/reference/golden_A")
if golden.is_dir():
    inputs, warp = np.load(golden / "caseA_inputs.npz"), np.load(golden / "caseA_warp.npz")
    np.savez(os.environ["BUNDLE"] + "/golden_A.npz", source_u8=inputs["in_source_rgb_256"], kp_source=warp["in_kp_source"],
             kp_driving=warp["in_kp_driving"])
EOF
  du -sh "$BUNDLE"/* && echo "bundle ready: carry .device"
  exit 0
fi

if [[ " $* " == *" --device cpu "* ]]; then
  PY=${PYTHON:-.venv/bin/python}
  exec "$PY" -m load_tests.gpu_check --out "${OUT:-build/gpu-check-cpu}" "$@"
fi

# On the GPU machine: the image's python3 has torch; nothing can be installed from a registry.
WORK=${GPU_CHECK_WORK:-/tmp/liveportrait-gpu-check}
mkdir -p "$WORK/triton"
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$BUNDLE/tritonserver.tar.xz" "$WORK/triton"
PYVER=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cp "$WORK/triton/pytriton/tritonserver/python_backend_stubs/$PYVER/triton_python_backend_stub" \
   "$WORK/triton/pytriton/tritonserver/backends/python/"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/triton/python" "$BUNDLE"/wheels/numpy-*.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" \
  $(ls "$BUNDLE"/wheels/*.whl | grep -v numpy-)
# the stub links libpython$PYVER.so: the interpreter's LIBDIR, else wherever the machine has one
LIBPY=$(python3 -c 'import sysconfig as s; print(s.get_config_var("LIBDIR") or "")')
if [ ! -e "$LIBPY/libpython$PYVER.so.1.0" ]; then
  found=$(find / -xdev -name "libpython$PYVER.so.1.0" 2>/dev/null | head -1 || true)
  LIBPY=${found%/*}
fi
echo "python $PYVER ($(python3 -c 'import sys; print(sys.executable, sys.base_prefix)')), libpython in: ${LIBPY:-NOT FOUND}"
export LD_LIBRARY_PATH="${LIBPY}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIVEPORTRAIT_TRITON_HOME="$WORK/triton" PYTHONPATH="$WORK/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
GOLDEN=()
[ -f "$BUNDLE/golden_A.npz" ] && GOLDEN=(--golden "$BUNDLE/golden_A.npz")
# a device command runs at most 600 s: finish the sections inside that (report.json is written after each one)
python3 -m load_tests.gpu_check --device cuda --out "${OUT:-build/gpu-check}" --repo "$WORK/repo" \
  --deadline-s "${GPU_CHECK_DEADLINE_S:-500}" "${GOLDEN[@]}" "$@"
