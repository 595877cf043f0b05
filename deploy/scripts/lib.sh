#!/usr/bin/env bash
# Shared by the deploy scripts (sourced, not run): names, prerequisites, stack outputs.
# Settings come from the environment, with these defaults:
#   STACK_NAME=triton-gateway            the application stack (deploy/template.yaml)
#   BOOTSTRAP_STACK=$STACK_NAME-bootstrap the first stack (deploy/bootstrap.yaml): ECR repositories, model bucket
#   TRITON_TAG=24.11-py3                 nvcr.io/nvidia/tritonserver tag to mirror and run
#   MODEL_PREFIX=models                  key prefix of the model repository in the bucket
#   AWS_REGION / AWS_PROFILE             as for the AWS CLI

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEPLOY_DIR="$REPO_ROOT/deploy"
STACK_NAME="${STACK_NAME:-triton-gateway}"
BOOTSTRAP_STACK="${BOOTSTRAP_STACK:-$STACK_NAME-bootstrap}"
TRITON_TAG="${TRITON_TAG:-24.11-py3}"
MODEL_PREFIX="${MODEL_PREFIX:-models}"
export REPO_ROOT DEPLOY_DIR STACK_NAME BOOTSTRAP_STACK TRITON_TAG MODEL_PREFIX

die() {
    echo "error: $*" >&2
    exit 1
}

# require TOOL... : fail early, naming what is missing and where to get it.
require() {
    local tool hint
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            case "$tool" in
                aws) hint="install the AWS CLI v2 and run 'aws configure' (or set AWS_PROFILE)" ;;
                docker) hint="install Docker and start the daemon" ;;
                sam) hint="pip install -r deploy/requirements-tools.txt (or install the AWS SAM CLI)" ;;
                *) hint="install it" ;;
            esac
            die "'$tool' is not on PATH: $hint"
        fi
    done
    if [[ " $* " == *" aws "* ]] && ! aws sts get-caller-identity >/dev/null 2>&1; then
        die "the AWS CLI has no working credentials: run 'aws configure' or set AWS_PROFILE"
    fi
    if [[ " $* " == *" docker "* ]] && ! docker info >/dev/null 2>&1; then
        die "cannot reach the Docker daemon: start Docker (and check that this user may use it)"
    fi
}

# aws_region: the region every command uses, from AWS_REGION, AWS_DEFAULT_REGION or the CLI profile.
aws_region() {
    local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
    if [ -z "$region" ]; then
        region="$(aws configure get region || true)"
    fi
    [ -n "$region" ] || die "no AWS region: set AWS_REGION or run 'aws configure set region <region>'"
    echo "$region"
}

# stack_output STACK KEY: one output value of a deployed stack; fails with a hint when it is missing.
stack_output() {
    local value
    value="$(aws cloudformation describe-stacks --stack-name "$1" \
        --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text 2>/dev/null || true)"
    if [ -z "$value" ] || [ "$value" = "None" ]; then
        die "stack '$1' has no output '$2': deploy it first (see docs/deploy.md)"
    fi
    echo "$value"
}
