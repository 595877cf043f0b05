#!/usr/bin/env bash
# Step 4: build the gateway image and deploy deploy/template.yaml non-interactively, wired to the bootstrap
# stack. Extra arguments go to `sam deploy` (e.g. --parameter-overrides TritonInstanceType=g5.xlarge ...).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws docker sam

region="$(aws_region)"
gateway_repository="$(stack_output "$BOOTSTRAP_STACK" GatewayRepositoryUri)"
export SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"

cd "$DEPLOY_DIR"
sam build --region "$region"
sam deploy \
    --region "$region" \
    --stack-name "$STACK_NAME" \
    --image-repository "$gateway_repository" \
    --no-confirm-changeset \
    --parameter-overrides \
    "BootstrapStackName=$BOOTSTRAP_STACK" "TritonImageTag=$TRITON_TAG" "ModelPrefix=$MODEL_PREFIX" \
    "$@"

"$DEPLOY_DIR/scripts/show-endpoint.sh"
