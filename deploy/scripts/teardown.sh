#!/usr/bin/env bash
# Delete the application stack, then the bootstrap stack (its ECR repositories are emptied and deleted). The
# model bucket is kept (DeletionPolicy Retain); pass --delete-bucket to empty and delete it as well.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws sam

region="$(aws_region)"
delete_bucket=0
if [ "${1:-}" = "--delete-bucket" ]; then
    delete_bucket=1
fi
bucket=""
if [ "$delete_bucket" -eq 1 ]; then
    bucket="$(stack_output "$BOOTSTRAP_STACK" ModelBucketName)"
fi

SAM_CLI_TELEMETRY=0 sam delete --region "$region" --stack-name "$STACK_NAME" --no-prompts
aws cloudformation delete-stack --region "$region" --stack-name "$BOOTSTRAP_STACK"
aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$BOOTSTRAP_STACK"
echo "deleted $STACK_NAME and $BOOTSTRAP_STACK"

if [ "$delete_bucket" -eq 1 ]; then
    echo "emptying and deleting s3://$bucket (all object versions)"
    for kind in Versions DeleteMarkers; do
        while :; do
            batch="$(aws s3api list-object-versions --region "$region" --bucket "$bucket" --max-items 500 \
                --query "${kind}[].{Key: Key, VersionId: VersionId}" --output json)"
            if [ "$batch" = "null" ] || [ "$batch" = "[]" ]; then
                break
            fi
            aws s3api delete-objects --region "$region" --bucket "$bucket" \
                --delete "{\"Objects\": $batch, \"Quiet\": true}" >/dev/null
        done
    done
    aws s3api delete-bucket --region "$region" --bucket "$bucket"
    echo "deleted s3://$bucket"
fi
