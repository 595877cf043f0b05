#!/usr/bin/env bash
# Step 1: create (or update) the first stack: ECR repositories for the gateway and Triton images, and the
# model bucket. Set MODEL_BUCKET to use an existing bucket instead of creating one.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws

region="$(aws_region)"
collect_overrides "$@"
prepare_stack "$BOOTSTRAP_STACK"
echo "deploying $BOOTSTRAP_STACK in $region"
aws cloudformation deploy \
    --region "$region" \
    --stack-name "$BOOTSTRAP_STACK" \
    --template-file "$DEPLOY_DIR/bootstrap.yaml" \
    --parameter-overrides "ExistingModelBucketName=${MODEL_BUCKET:-}" \
    --no-fail-on-empty-changeset

echo "gateway repository: $(stack_output "$BOOTSTRAP_STACK" GatewayRepositoryUri)"
echo "triton repository:  $(stack_output "$BOOTSTRAP_STACK" TritonRepositoryUri)"
echo "model bucket:       $(stack_output "$BOOTSTRAP_STACK" ModelBucketName)"
