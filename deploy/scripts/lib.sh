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

# --- re-runs, settings and the pinned AMI (bash 3.2 compatible: no associative arrays, no mapfile, and every
# possibly empty array expanded as ${a[@]+"${a[@]}"}, because bash before 4.4 calls an empty "${a[@]}" unbound
# under set -u) ----------------------------------------------------------------------------------------------

# Seconds between two looks at a stack another operation is changing, and how long to wait for it in all.
STACK_POLL_SECONDS="${STACK_POLL_SECONDS:-20}"
STACK_WAIT_SECONDS="${STACK_WAIT_SECONDS:-3600}"

# collect_overrides ARG...: splits a command line into the global arrays `overrides` (KEY=VALUE, after any
# --parameter-overrides, which may be given more than once) and `passthrough` (the rest). --yes and --roll-ami
# are taken out and exported as DEPLOY_YES=1 and ROLL_AMI=1. `sam deploy` keeps only the last
# --parameter-overrides option it is given, so a caller's values are merged here instead.
collect_overrides() {
    local arg in_overrides=0
    overrides=()
    passthrough=()
    for arg in "$@"; do
        if [ "$arg" = "--parameter-overrides" ]; then
            in_overrides=1
        elif [ "$arg" = "--yes" ]; then
            export DEPLOY_YES=1
        elif [ "$arg" = "--roll-ami" ]; then
            export ROLL_AMI=1
        elif [ "$in_overrides" -eq 1 ] && [[ "$arg" != -* ]]; then
            overrides+=("$arg")
        else
            in_overrides=0
            passthrough+=("$arg")
        fi
    done
}

# given KEY: whether `overrides` sets KEY.
given() {
    local override
    for override in ${overrides[@]+"${overrides[@]}"}; do
        [[ "$override" == "$1="* ]] && return 0
    done
    return 1
}

# override_value KEY: the last value `overrides` gives KEY (nothing when none).
override_value() {
    local override value=""
    for override in ${overrides[@]+"${overrides[@]}"}; do
        [[ "$override" == "$1="* ]] && value="${override#*=}"
    done
    echo "$value"
}

# stack_status STACK: the stack's status, or NONE when there is no such stack.
stack_status() {
    local out
    if out="$(aws cloudformation describe-stacks --stack-name "$1" --query "Stacks[0].StackStatus" \
        --output text 2>&1)"; then
        echo "$out"
    elif [[ "$out" == *"does not exist"* ]]; then
        echo NONE
    else
        die "cannot read stack '$1': $out"
    fi
}

# load_stack_parameters: the application stack's current parameter values into STACK_PARAMETERS (lines of
# KEY<tab>VALUE), or nothing when the stack does not exist or was never created (its values would not be
# used again: it is deleted and created anew).
load_stack_parameters() {
    local status
    status="$(stack_status "$STACK_NAME")"
    STACK_PARAMETERS=""
    case "$status" in
        NONE | ROLLBACK_COMPLETE | ROLLBACK_FAILED | CREATE_FAILED | REVIEW_IN_PROGRESS | DELETE_*) ;;
        *)
            STACK_PARAMETERS="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
                --query "Stacks[0].Parameters[].[ParameterKey, ParameterValue]" --output text)"
            ;;
    esac
}

# template_default KEY: the Default of parameter KEY in deploy/template.yaml (quotes removed).
template_default() {
    awk -v header="  $1:" '
        $0 == header { inside = 1; next }
        inside && /^  [^ ]/ { exit }
        inside && /^    Default:/ { sub(/^    Default: */, ""); gsub(/^"|"$/, ""); print; exit }
    ' "$DEPLOY_DIR/template.yaml"
}

# setting KEY: the value a deploy gives KEY - the caller's override, else the deployed stack's value (sam
# deploy keeps previous values of parameters it is not given), else the template's default. Needs
# load_stack_parameters first.
setting() {
    if given "$1"; then
        override_value "$1"
    elif printf '%s\n' "${STACK_PARAMETERS:-}" | awk -F'\t' -v k="$1" '$1 == k { found = 1 } END { exit !found }'; then
        printf '%s\n' "$STACK_PARAMETERS" | awk -F'\t' -v k="$1" '$1 == k { print $2; exit }'
    else
        template_default "$1"
    fi
}

# instance_arch TYPE: arm64 for Graviton types (a g among the letters after the generation: m7g, c6gn, g5g),
# else x86_64.
instance_arch() {
    local family="${1%%.*}"
    case "${family#*[0-9]}" in
        *g*) echo arm64 ;;
        *) echo x86_64 ;;
    esac
}

# instance_kind TYPE: gpu for NVIDIA types (g*, p*), else cpu; with the architecture.
instance_kind() {
    case "$1" in
        g* | p*) echo "gpu-$(instance_arch "$1")" ;;
        *) echo "cpu-$(instance_arch "$1")" ;;
    esac
}

# ami_ssm_parameter TYPE: the public SSM parameter naming the latest AMI for TYPE (TRITON_AMI_SSM_PARAMETER
# chooses another): Amazon Linux 2023 for CPU types, the Deep Learning Base AMI (NVIDIA driver and container
# toolkit, Amazon Linux 2023) for GPU types.
ami_ssm_parameter() {
    if [ -n "${TRITON_AMI_SSM_PARAMETER:-}" ]; then
        echo "$TRITON_AMI_SSM_PARAMETER"
        return
    fi
    case "$(instance_kind "$1")" in
        gpu-*) echo "/aws/service/deeplearning/ami/$(instance_arch "$1")/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id" ;;
        *) echo "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-$(instance_arch "$1")" ;;
    esac
}

# resolve_ami PARAMETER: the AMI id a public SSM parameter names today.
resolve_ami() {
    local ami
    ami="$(aws ssm get-parameter --name "$1" --query Parameter.Value --output text)" \
        || die "cannot read the public SSM parameter $1 (ssm:GetParameter) in $(aws_region)"
    [[ "$ami" == ami-* ]] || die "SSM parameter $1 does not name an AMI: $ami"
    echo "$ami"
}

# pinned_ami: the TritonAmiId this deploy uses; says why on stderr. The deployed stack's AMI is kept, so that a
# deploy that changes only the gateway never replaces the Triton instances, unless ROLL_AMI=1 (--roll-ami) asks
# for the latest, TRITON_AMI_SSM_PARAMETER names another image, or the instance type moves between CPU and
# GPU (or x86_64 and arm64). Needs load_stack_parameters first.
pinned_ami() {
    local type current current_type parameter latest
    type="$(setting TritonInstanceType)"
    parameter="$(ami_ssm_parameter "$type")"
    current="$(printf '%s\n' "${STACK_PARAMETERS:-}" | awk -F'\t' '$1 == "TritonAmiId" { print $2; exit }')"
    current_type="$(printf '%s\n' "${STACK_PARAMETERS:-}" | awk -F'\t' '$1 == "TritonInstanceType" { print $2; exit }')"
    if [ -z "$current" ]; then
        latest="$(resolve_ami "$parameter")"
        echo "Triton AMI: $latest, pinned from $parameter (kept by later deploys; --roll-ami moves it)" >&2
    elif [ "${ROLL_AMI:-0}" = 1 ]; then
        latest="$(resolve_ami "$parameter")"
        if [ "$latest" = "$current" ]; then
            echo "Triton AMI: $current is already the latest of $parameter; no instance is replaced" >&2
        else
            echo "Triton AMI: rolling $current -> $latest ($parameter): CloudFormation replaces the instances one at a time" >&2
        fi
    elif [ -n "${TRITON_AMI_SSM_PARAMETER:-}" ] || [ "$(instance_kind "$type")" != "$(instance_kind "${current_type:-$type}")" ]; then
        latest="$(resolve_ami "$parameter")"
        echo "Triton AMI: $latest from $parameter, for $type (was $current): the instances are replaced" >&2
    else
        latest="$current"
        echo "Triton AMI: keeping the deployed $current (./dev.sh deploy --roll-ami moves to the latest of $parameter)" >&2
    fi
    echo "$latest"
}

# consent QUESTION: yes with DEPLOY_YES=1 (--yes); else asks on a terminal; else no.
consent() {
    local answer=""
    if [ "${DEPLOY_YES:-0}" = 1 ]; then
        echo "$1: yes (--yes)"
        return 0
    fi
    if [ -t 0 ]; then
        read -r -p "$1? [y/N] " answer || true
        [[ "$answer" == [yY]* ]] && return 0
    fi
    return 1
}

# stack_failure_reasons STACK: the stack's five latest failed events, oldest first (the first is usually the cause).
stack_failure_reasons() {
    aws cloudformation describe-stack-events --stack-name "$1" \
        --query "StackEvents[?ends_with(ResourceStatus, '_FAILED')] | [:5] | reverse(@) | [].[LogicalResourceId, ResourceStatus, ResourceStatusReason]" \
        --output text 2>/dev/null | sed 's/^/    /' || true
}

# prepare_stack STACK: make STACK ready for a deploy, or stop and say what to do. A stack another operation is
# changing is waited for; one whose creation failed (ROLLBACK_COMPLETE, CREATE_FAILED) can only be deleted,
# which is done after saying so and with consent (--yes, or y on a terminal); the states that need judgement
# (ROLLBACK_FAILED, DELETE_FAILED, UPDATE_ROLLBACK_FAILED) stop with the command that resolves them.
prepare_stack() {
    local stack="$1" status waited=0
    while :; do
        status="$(stack_status "$stack")"
        case "$status" in
            NONE | REVIEW_IN_PROGRESS) return 0 ;;
            *_IN_PROGRESS)
                if [ "$waited" -ge "$STACK_WAIT_SECONDS" ]; then
                    die "stack $stack is still $status after ${waited}s; see its events in the CloudFormation console"
                fi
                if [ "$waited" -eq 0 ]; then
                    echo "stack $stack is $status: another operation is changing it (an interrupted run's goes on"
                    echo "without it); waiting for it to finish before going on"
                fi
                sleep "$STACK_POLL_SECONDS"
                waited=$((waited + STACK_POLL_SECONDS))
                ;;
            ROLLBACK_COMPLETE | CREATE_FAILED)
                echo "stack $stack is $status: its creation failed, and a stack in this state cannot be updated,"
                echo "only deleted and created again (it holds nothing: CloudFormation removed what it had made"
                echo "except retained data, e.g. a model bucket). What failed first:"
                stack_failure_reasons "$stack"
                if consent "delete stack $stack now and create it again"; then
                    echo "deleting stack $stack"
                    aws cloudformation delete-stack --stack-name "$stack"
                    aws cloudformation wait stack-delete-complete --stack-name "$stack"
                    echo "deleted stack $stack"
                    return 0
                fi
                die "stack $stack left as it is. Fix the cause above, then run again with --yes (or answer y), or delete it yourself: aws cloudformation delete-stack --stack-name $stack"
                ;;
            UPDATE_ROLLBACK_FAILED)
                echo "stack $stack is UPDATE_ROLLBACK_FAILED: an update failed and so did its rollback. What failed:"
                stack_failure_reasons "$stack"
                die "fix the cause (often a resource changed or deleted outside CloudFormation), then: aws cloudformation continue-update-rollback --stack-name $stack (add --resources-to-skip <logical ids> for resources that cannot be restored), and run again"
                ;;
            ROLLBACK_FAILED | DELETE_FAILED)
                echo "stack $stack is $status: CloudFormation could not delete some of its resources. What failed:"
                stack_failure_reasons "$stack"
                die "remove what blocks the deletion (above), then: aws cloudformation delete-stack --stack-name $stack (with --retain-resources <logical ids> to leave those behind), and run again"
                ;;
            UPDATE_ROLLBACK_COMPLETE)
                echo "stack $stack: its last update failed and was rolled back; deploying again. What failed then:"
                stack_failure_reasons "$stack"
                return 0
                ;;
            *) return 0 ;;
        esac
    done
}
