#!/usr/bin/env bash
# Print the API URL and the API key value of the deployed stack, and a first request to try.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
require aws

region="$(aws_region)"
api_url="$(stack_output "$STACK_NAME" ApiUrl)"
key_id="$(stack_output "$STACK_NAME" ApiKeyId)"
key_value="$(aws apigateway get-api-key --region "$region" --api-key "$key_id" --include-value \
    --query value --output text)"

echo "API_URL=$api_url"
echo "API_KEY=$key_value"
echo
echo "the key's value, any time:"
echo "  aws apigateway get-api-key --region $region --api-key $key_id --include-value --query value --output text"
echo "first requests (as they are; the second reads the key itself):"
echo "  curl ${api_url}health"
echo "  curl -H \"x-api-key: \$(aws apigateway get-api-key --region $region --api-key $key_id --include-value --query value --output text)\" ${api_url}v2/models/densenet_onnx"
