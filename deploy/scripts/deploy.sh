#!/usr/bin/env bash
# Step 4: build the gateway image and deploy deploy/template.yaml non-interactively, wired to the bootstrap
# stack. Extra arguments go to `sam deploy` (e.g. --parameter-overrides TritonInstanceType=g5.xlarge ...);
# parameter overrides given here are merged with (and win over) the script's own.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws docker sam

region="$(aws_region)"
gateway_repository="$(stack_output "$BOOTSTRAP_STACK" GatewayRepositoryUri)"
export SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"

# `sam deploy` keeps only the last --parameter-overrides option it is given, so a caller's second one would
# silently drop BootstrapStackName, TritonImageTag and ModelPrefix: collect its values into ours instead.
overrides=("BootstrapStackName=$BOOTSTRAP_STACK" "TritonImageTag=$TRITON_TAG" "ModelPrefix=$MODEL_PREFIX")
passthrough=()
in_overrides=0
for arg in "$@"; do
    if [ "$arg" = "--parameter-overrides" ]; then
        in_overrides=1
    elif [ "$in_overrides" -eq 1 ] && [[ "$arg" != -* ]]; then
        overrides+=("$arg")
    else
        in_overrides=0
        passthrough+=("$arg")
    fi
done

cd "$DEPLOY_DIR"
sam build --region "$region"
sam deploy \
    --region "$region" \
    --stack-name "$STACK_NAME" \
    --image-repository "$gateway_repository" \
    --no-confirm-changeset \
    "${passthrough[@]}" \
    --parameter-overrides "${overrides[@]}"

"$DEPLOY_DIR/scripts/show-endpoint.sh"
