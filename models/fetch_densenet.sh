#!/usr/bin/env bash
# Download the real DenseNet-121 ONNX model into the production model repository, as Triton's own
# docs/examples/fetch_models.sh does. model.onnx is gitignored: fetched before deploying, never committed.
# Usage: models/fetch_densenet.sh    (idempotent: does nothing when the file is already there)
set -euo pipefail

URL="https://github.com/onnx/models/raw/main/validated/vision/classification/densenet-121/model/densenet-7.onnx"
DEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/densenet_onnx/1"
DEST="$DEST_DIR/model.onnx"

if [ -s "$DEST" ]; then
    echo "already present: $DEST"
    exit 0
fi

mkdir -p "$DEST_DIR"
# Download beside the target and rename, so an interrupted download never leaves a truncated model.onnx.
TMP="$(mktemp "$DEST_DIR/.model.onnx.XXXXXX")"
trap 'rm -f "$TMP"' EXIT

if command -v curl >/dev/null 2>&1; then
    curl --fail --location --silent --show-error --retry 3 --output "$TMP" "$URL"
elif command -v wget >/dev/null 2>&1; then
    wget --quiet --tries=3 --output-document="$TMP" "$URL"
else
    echo "error: need curl or wget to download $URL" >&2
    exit 1
fi

mv "$TMP" "$DEST"
trap - EXIT
echo "downloaded $(wc -c <"$DEST") bytes to $DEST"
