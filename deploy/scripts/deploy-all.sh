#!/usr/bin/env bash
# ./dev.sh deploy: the whole deployment in order, and safe to run again after any failure. Pre-flight checks
# (nothing is created when one fails), the state of both stacks (an operation under way is waited for; a
# stack whose creation failed is deleted only with consent), then the bootstrap stack, the Triton image (skipped
# when ECR has it), the models (aws s3 sync uploads only what changed) and the application stack; it ends with
# the endpoint, how to read the API key and a first request.
#   --yes         delete a stack whose creation failed (ROLLBACK_COMPLETE) without asking
#   --roll-ami    move the Triton instances to the latest AMI (else the deployed AMI is kept)
# Anything else goes to deploy.sh and sam deploy, e.g. --parameter-overrides TritonInstanceType=g5.xlarge.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws docker sam

scripts="$DEPLOY_DIR/scripts"
region="$(aws_region)"
collect_overrides "$@"
load_stack_parameters
echo "deploying stack $STACK_NAME (bootstrap $BOOTSTRAP_STACK) to $region"

# The AMI is resolved once here and passed on as an id, so every step sees the same one.
if ! given TritonAmiId; then
    overrides+=("TritonAmiId=$(pinned_ami)")
fi
# The image's platform follows the instance type (Docker on Apple Silicon would otherwise pull arm64).
if [ "$(instance_arch "$(setting TritonInstanceType)")" = arm64 ]; then
    export TRITON_PLATFORM=linux/arm64
else
    export TRITON_PLATFORM=linux/amd64
fi
arguments=(${passthrough[@]+"${passthrough[@]}"} --parameter-overrides "${overrides[@]}")

"$scripts/preflight.sh" "${arguments[@]}"
prepare_stack "$BOOTSTRAP_STACK"
prepare_stack "$STACK_NAME"

echo "== 1/4 bootstrap stack (ECR repositories, model bucket)"
"$scripts/bootstrap.sh"
echo "== 2/4 Triton image ($TRITON_PLATFORM)"
"$scripts/push-triton-image.sh"
echo "== 3/4 models"
"$scripts/sync-models.sh"
echo "== 4/4 application stack"
"$scripts/deploy.sh" "${arguments[@]}"
