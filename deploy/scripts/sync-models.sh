#!/usr/bin/env bash
# Step 3: upload the Triton model repository (models/) to s3://<model bucket>/$MODEL_PREFIX/, fetching the
# densenet weights first if they are not here. Only model directories (those with a config.pbtxt) are
# synced, and without scripts, so Triton never sees a stray file it cannot load; a python-backend model's
# <version>/model.py is its model, not a script, and is kept. MODELS_DIR syncs another model repository
# instead of models/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws

models_dir="${MODELS_DIR:-$REPO_ROOT/models}"
if [ -f "$models_dir/densenet_onnx/config.pbtxt" ] && [ ! -f "$models_dir/densenet_onnx/1/model.onnx" ]; then
    [ -x "$models_dir/fetch_densenet.sh" ] || die "$models_dir/fetch_densenet.sh is missing or not executable"
    echo "model.onnx is missing: fetching it"
    "$models_dir/fetch_densenet.sh"
fi

region="$(aws_region)"
bucket="$(stack_output "$BOOTSTRAP_STACK" ModelBucketName)"
found=0
for config in "$models_dir"/*/config.pbtxt; do
    [ -f "$config" ] || continue
    found=1
    model="$(basename "$(dirname "$config")")"
    echo "syncing $model -> s3://$bucket/$MODEL_PREFIX/$model/"
    aws s3 sync --region "$region" --delete --only-show-errors \
        --exclude "*.sh" --exclude "*.py" --include "[0-9]*/model.py" --exclude "*.md" --exclude "*__pycache__/*" \
        --exclude ".*" \
        "$models_dir/$model/" "s3://$bucket/$MODEL_PREFIX/$model/"
done
[ "$found" -eq 1 ] || die "no model directory (with config.pbtxt) under $models_dir"
echo "models are in s3://$bucket/$MODEL_PREFIX/ (running instances load them at start: see docs/deploy.md to refresh)"
