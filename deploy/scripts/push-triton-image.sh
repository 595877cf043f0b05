#!/usr/bin/env bash
# Step 2: mirror nvcr.io/nvidia/tritonserver:$TRITON_TAG into the bootstrap stack's Triton repository, so the
# instances pull from ECR inside the VPC. Tags there are immutable: an existing tag is left as it is.
# TRITON_PLATFORM (default linux/amd64, what the template's instance types run) picks the image of the
# multi-arch tag: without it Docker on Apple Silicon pulls arm64, which the x86 instances cannot run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws docker

region="$(aws_region)"
repository_uri="$(stack_output "$BOOTSTRAP_STACK" TritonRepositoryUri)"
repository_name="${repository_uri#*/}"
registry="${repository_uri%%/*}"
source_image="nvcr.io/nvidia/tritonserver:$TRITON_TAG"
platform="${TRITON_PLATFORM:-linux/amd64}"
target_image="$repository_uri:$TRITON_TAG"

if aws ecr describe-images --region "$region" --repository-name "$repository_name" \
    --image-ids "imageTag=$TRITON_TAG" >/dev/null 2>&1; then
    echo "$target_image is already in ECR; nothing to do"
    exit 0
fi

echo "pulling $source_image for $platform (about 8 GB compressed; this takes a while)"
docker pull --platform "$platform" "$source_image"
docker tag "$source_image" "$target_image"
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
docker push "$target_image"
echo "pushed $target_image"
