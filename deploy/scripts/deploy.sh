#!/usr/bin/env bash
# Step 4: build the gateway image and deploy deploy/template.yaml non-interactively, wired to the bootstrap
# stack. Extra arguments go to `sam deploy` (e.g. --parameter-overrides TritonInstanceType=g5.xlarge ...);
# parameter overrides given here are merged with (and win over) the script's own. It looks up S3PrefixListId
# (for the created VPC), whether ConfigureApiGatewayAccount must be true and the Triton AMI (the deployed one
# is kept; --roll-ami takes the latest), unless they are given.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws docker sam

region="$(aws_region)"
gateway_repository="$(stack_output "$BOOTSTRAP_STACK" GatewayRepositoryUri)"
export SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"

collect_overrides "$@"
overrides=("BootstrapStackName=$BOOTSTRAP_STACK" "TritonImageTag=$TRITON_TAG" "ModelPrefix=$MODEL_PREFIX"
    ${overrides[@]+"${overrides[@]}"})
load_stack_parameters
prepare_stack "$STACK_NAME"

# Values the script can find out itself, unless the caller gave them.
# The AMI stays what the stack runs unless asked (--roll-ami), so a gateway deploy never replaces Triton.
if ! given TritonAmiId; then
    overrides+=("TritonAmiId=$(pinned_ami)")
fi
# The created VPC lets Triton reach S3 through the region's S3 prefix list only.
if ! given S3PrefixListId && ! given VpcId; then
    prefix_list="$(aws ec2 describe-managed-prefix-lists --region "$region" \
        --filters "Name=prefix-list-name,Values=com.amazonaws.$region.s3" \
        --query "PrefixLists[0].PrefixListId" --output text)"
    [[ "$prefix_list" == pl-* ]] || die "no S3 prefix list found in $region"
    overrides+=("S3PrefixListId=$prefix_list")
fi
# The API Gateway CloudWatch role is account-wide (per region): set it only where there is none, or where
# this stack set it before; never replace a role that other APIs may rely on.
if ! given ConfigureApiGatewayAccount; then
    role="$(aws apigateway get-account --region "$region" --query cloudwatchRoleArn --output text)"
    ours="$(aws cloudformation describe-stacks --region "$region" --stack-name "$STACK_NAME" \
        --query "Stacks[0].Parameters[?ParameterKey=='ConfigureApiGatewayAccount'].ParameterValue" \
        --output text 2>/dev/null || true)"
    if [ "$ours" = "true" ] || [ -z "$role" ] || [ "$role" = "None" ]; then
        echo "API Gateway CloudWatch role: none in $region (or set by this stack): the stack sets it"
        overrides+=("ConfigureApiGatewayAccount=true")
    else
        echo "API Gateway CloudWatch role: $role (left as it is)"
    fi
fi

# SAM publishes a new Lambda version for the live alias when the image or the function's properties change,
# not when parameter values (or their defaults) do: fingerprint them, so that a settings change reaches the alias.
if ! given GatewayConfigRevision; then
    revision="$({ printf '%s\n' "${overrides[@]}" | LC_ALL=C sort; cat "$DEPLOY_DIR/template.yaml"; } | cksum | cut -d' ' -f1)"
    overrides+=("GatewayConfigRevision=$revision")
fi

cd "$DEPLOY_DIR"
# sam build reads the parameters too: GatewayArchitecture decides the image's platform.
sam build --region "$region" --parameter-overrides "${overrides[@]}"
sam deploy \
    --region "$region" \
    --stack-name "$STACK_NAME" \
    --image-repository "$gateway_repository" \
    --no-confirm-changeset \
    ${passthrough[@]+"${passthrough[@]}"} \
    --parameter-overrides "${overrides[@]}"

"$DEPLOY_DIR/scripts/show-endpoint.sh"
