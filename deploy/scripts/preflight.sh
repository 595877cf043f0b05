#!/usr/bin/env bash
# Pre-flight: reads the account and region (never changes them) and refuses a deploy that would fail part-way,
# naming the quota or setting and how to fix it. Takes the same arguments as deploy.sh; a setting not given
# keeps the deployed stack's value, else the template's default. Checks: the region's Availability Zones
# (and the instance type offered in the two the created VPC uses), the Lambda concurrency quota against
# GatewayReservedConcurrency, the API Gateway CloudWatch role (account setting), the EC2 vCPU quota of the
# instance type's class (G and VT, P, or standard), and the AMI (architecture; root device and snapshot size
# against the root volume TritonVolumeSize gives, by deploy/scripts/root_volume.py). It is bash with the AWS CLI's --query rather than Python because it runs where
# the deploy runs (a laptop with the AWS CLI, SAM and Docker), which need not have this project's venvs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws

region="$(aws_region)"
collect_overrides "$@"
load_stack_parameters

problems=0
ok() { echo "  ok    $*"; }
warn() { echo "  note  $*"; }
fail() {
    echo "  FAIL  $*"
    problems=$((problems + 1))
}
# whole NUMBER: the integer part of a number the CLI prints as 64.0.
whole() { echo "${1%%.*}"; }

echo "pre-flight checks in $region (stack $STACK_NAME):"
instance_type="$(setting TritonInstanceType)"
read -r vcpus architectures <<<"$(aws ec2 describe-instance-types --instance-types "$instance_type" \
    --query "InstanceTypes[0].[VCpuInfo.DefaultVCpus, join(',', ProcessorInfo.SupportedArchitectures)]" \
    --output text 2>/dev/null || true)"
[[ "$vcpus" =~ ^[0-9]+$ ]] || die "TritonInstanceType=$instance_type is not an EC2 instance type in $region"

# --- Availability Zones: the created VPC puts a subnet in each of the first two (Fn::GetAZs) ----------------
if [ -z "$(setting VpcId)" ]; then
    zones="$(aws ec2 describe-availability-zones --filters Name=zone-type,Values=availability-zone \
        --query "AvailabilityZones[?State=='available'].ZoneName" --output text | tr '\t' '\n' | sort)"
    zone_count="$(printf '%s\n' "$zones" | grep -c . || true)"
    if [ "$zone_count" -lt 2 ]; then
        fail "Availability Zones: the created VPC needs two, $region has $zone_count available to this account. Fix: deploy in another region (AWS_REGION=...), or into an existing VPC with --parameter-overrides VpcId=vpc-... PrivateSubnetIds=subnet-a,subnet-b"
    else
        offered="$(aws ec2 describe-instance-type-offerings --location-type availability-zone \
            --filters "Name=instance-type,Values=$instance_type" --query "InstanceTypeOfferings[].Location" \
            --output text | tr '\t' '\n')"
        missing=""
        for zone in $(printf '%s\n' "$zones" | head -n 2); do
            printf '%s\n' "$offered" | grep -qx "$zone" || missing="$missing $zone"
        done
        if [ -n "$missing" ]; then
            fail "Availability Zones: TritonInstanceType=$instance_type is not offered in$missing, where the created VPC puts its subnets. Fix: another TritonInstanceType or region, or an existing VPC (VpcId, PrivateSubnetIds) whose subnets are in zones that offer it"
        else
            ok "Availability Zones: $zone_count in $region; $instance_type is offered in the two the VPC uses"
        fi
    fi
else
    ok "Availability Zones: existing VPC $(setting VpcId) (its subnets decide)"
fi

# --- Lambda: a reservation must leave the account's unreserved minimum (100, or the whole quota if lower) --
reserved="$(setting GatewayReservedConcurrency)"
case "$reserved" in
    "" | 0 | -1 | none | None)
        ok "Lambda concurrency: GatewayReservedConcurrency is unset: the gateway shares the account's pool"
        ;;
    *)
        read -r total unreserved <<<"$(aws lambda get-account-settings \
            --query "[AccountLimit.ConcurrentExecutions, AccountLimit.UnreservedConcurrentExecutions]" \
            --output text 2>/dev/null || true)"
        [[ "$total $unreserved" =~ ^[0-9]+\ [0-9]+$ ]] || die "cannot read the Lambda account settings (lambda:GetAccountSettings) in $region"
        # The deployed function's own reservation is released when it is changed.
        current=0
        function_name="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
            --query "Stacks[0].Outputs[?OutputKey=='GatewayFunctionName'].OutputValue | [0]" --output text 2>/dev/null || true)"
        if [ -n "$function_name" ] && [ "$function_name" != None ]; then
            current="$(aws lambda get-function-concurrency --function-name "$function_name" \
                --query ReservedConcurrentExecutions --output text 2>/dev/null || true)"
            [[ "$current" =~ ^[0-9]+$ ]] || current=0
        fi
        floor=100
        [ "$total" -lt "$floor" ] && floor="$total"
        available=$((unreserved + current - floor))
        [ "$available" -lt 0 ] && available=0
        if [ "$reserved" -gt "$available" ]; then
            fail "Lambda concurrency: GatewayReservedConcurrency=$reserved, but the account's Lambda quota 'Concurrent executions' (L-B99A9384, ConcurrentExecutions) is $total in $region with $unreserved unreserved, and Lambda keeps $floor unreserved: at most $available can be reserved. Fix: --parameter-overrides GatewayReservedConcurrency=<$available or less> (or no reservation), or raise the quota: aws service-quotas request-service-quota-increase --service-code lambda --quota-code L-B99A9384 --desired-value 1000"
        else
            ok "Lambda concurrency: reserving $reserved of $total (ConcurrentExecutions) leaves $((unreserved + current - reserved)) unreserved"
        fi
        ;;
esac

# --- API Gateway: the stage's access and error logging needs the region's CloudWatch role -----------------
role="$(aws apigateway get-account --query cloudwatchRoleArn --output text)"
configure="$(override_value ConfigureApiGatewayAccount)"
if [ -z "$role" ] || [ "$role" = None ]; then
    if [ "$configure" = false ]; then
        fail "API Gateway CloudWatch role: the account setting cloudwatchRoleArn is empty in $region and ConfigureApiGatewayAccount=false, so the stage's logging settings are refused. Fix: drop ConfigureApiGatewayAccount=false (the stack then sets the role), or set one: aws apigateway update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=<role ARN trusted by apigateway.amazonaws.com>"
    else
        ok "API Gateway CloudWatch role: none in $region; the stack creates it (ConfigureApiGatewayAccount=true)"
    fi
else
    trusted="$(aws iam get-role --role-name "${role##*/}" \
        --query "Role.AssumeRolePolicyDocument.Statement[].Principal.Service" --output text 2>&1)" && status=0 || status=$?
    if [ "$status" -ne 0 ] && [[ "$trusted" == *NoSuchEntity* ]]; then
        fail "API Gateway CloudWatch role: the account setting cloudwatchRoleArn names $role, which does not exist, so the stage's logging settings are refused. Fix: --parameter-overrides ConfigureApiGatewayAccount=true (the stack replaces the setting with its own role), or point it at a role trusted by apigateway.amazonaws.com: aws apigateway update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=<role ARN>"
    elif [ "$status" -ne 0 ]; then
        warn "API Gateway CloudWatch role: $role (not readable here: ${trusted##*: }); assumed usable"
    elif [[ "$trusted" != *apigateway.amazonaws.com* ]]; then
        fail "API Gateway CloudWatch role: cloudwatchRoleArn names $role, which API Gateway may not assume (its trust policy names: $trusted). Fix: add apigateway.amazonaws.com to its trust policy, or --parameter-overrides ConfigureApiGatewayAccount=true"
    else
        ok "API Gateway CloudWatch role: $role"
    fi
fi

# --- EC2 vCPU quota of the instance type's class: creation runs the desired count, a rolling update one more
family="${instance_type%%.*}"
case "$family" in
    g* | vt*) quota_code=L-DB2E81BA quota_name="Running On-Demand G and VT instances" ;;
    p*) quota_code=L-417A185B quota_name="Running On-Demand P instances" ;;
    *) quota_code=L-1216C47A quota_name="Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" ;;
esac
desired="$(setting TritonDesiredCapacity)"
max_size="$(setting TritonMaxSize)"
quota="$(aws service-quotas get-service-quota --service-code ec2 --quota-code "$quota_code" \
    --query Quota.Value --output text 2>/dev/null \
    || aws service-quotas get-aws-default-service-quota --service-code ec2 --quota-code "$quota_code" \
        --query Quota.Value --output text 2>/dev/null || true)"
if ! [[ "$quota" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    warn "EC2 vCPU quota: '$quota_name' ($quota_code) not readable here; $instance_type needs $((vcpus * (desired + 1))) vCPUs"
else
    quota="$(whole "$quota")"
    needed=$((vcpus * (desired + 1)))
    if [ "$quota" -lt "$needed" ]; then
        fail "EC2 vCPU quota: TritonInstanceType=$instance_type ($vcpus vCPUs) needs $needed vCPUs ($desired instance(s), one more during a rolling update) of the quota '$quota_name' ($quota_code), which is $quota in $region. Fix: aws service-quotas request-service-quota-increase --service-code ec2 --quota-code $quota_code --desired-value $((vcpus * max_size)) (GPU quotas start at 0 on many accounts; an increase can take a day), or a CPU TritonInstanceType"
    elif [ "$quota" -lt $((vcpus * max_size)) ]; then
        warn "EC2 vCPU quota: '$quota_name' ($quota_code) is $quota: scale-out stops at $((quota / vcpus)) of TritonMaxSize=$max_size instances (running instances of that class count too)"
    else
        ok "EC2 vCPU quota: '$quota_name' ($quota_code) is $quota; $instance_type x $max_size needs $((vcpus * max_size))"
    fi
fi

# --- AMI: its architecture, and a root volume (deploy/scripts/root_volume.py, the template's rule) that holds it
ami="$(setting TritonAmiId)"
volume="$(setting TritonVolumeSize)"
if [[ "$ami" != ami-* ]]; then
    fail "AMI: TritonAmiId is '$ami', not an AMI id. Fix: run ./dev.sh deploy (it pins one), or --parameter-overrides TritonAmiId=ami-..."
elif ! ami_arch="$(aws ec2 describe-images --image-ids "$ami" --query "Images[0].Architecture" --output text 2>/dev/null)" \
    || [ -z "$ami_arch" ] || [ "$ami_arch" = None ]; then
    fail "AMI: TritonAmiId=$ami is not an image this account can use in $region. Fix: ./dev.sh deploy --roll-ami (resolves the latest), or another TritonAmiId"
elif [[ ",$architectures," != *",$ami_arch,"* ]]; then
    fail "AMI: $ami is $ami_arch, $instance_type runs $architectures. Fix: an AMI of that architecture (TRITON_AMI_SSM_PARAMETER=... ./dev.sh deploy), or another TritonInstanceType"
elif ! command -v python3 >/dev/null 2>&1; then
    warn "AMI: $ami ($ami_arch); root volume not checked (deploy/scripts/root_volume.py needs python3 on PATH)"
elif size="$(aws ec2 describe-images --image-ids "$ami" --output json \
    | python3 "$DEPLOY_DIR/scripts/root_volume.py" --instance-type "$instance_type" --volume-size "${volume:-0}" 2>&1)"; then
    ok "AMI: $ami ($ami_arch); a $size GiB root volume holds its root snapshot"
else
    fail "AMI: $size. EC2 refuses every launch otherwise, and the stack waits 30 minutes before it rolls back. Fix: --parameter-overrides TritonVolumeSize=<GiB> (0: 60 on CPU types, 100 on GPU types)"
fi

if [ "$problems" -gt 0 ]; then
    echo "pre-flight: $problems problem(s) above; nothing was created or changed" >&2
    exit 1
fi
echo "pre-flight: ok"
