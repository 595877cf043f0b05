#!/usr/bin/env bash
# TLS from the gateway to Triton (template parameter TritonTlsParameterPrefix). Makes a private CA and a
# server certificate for TLS_SERVER_NAME (default triton.internal, the template's TritonTlsServerName), then
# stores them in Parameter Store under TLS_PREFIX (default /$STACK_NAME/triton-tls): ca and cert as String
# (both public), key as SecureString (KMS key aws/ssm). Deploy with TritonTlsParameterPrefix=$TLS_PREFIX.
# The CA's own key is thrown away: to change the certificate, run this again (a new CA), redeploy (the
# gateway reads ca at deploy time) and replace the instances (they read cert and key at boot).
#   --files-only DIR   write ca.crt, server.crt and server.key into DIR; touch no AWS account.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

TLS_SERVER_NAME="${TLS_SERVER_NAME:-triton.internal}"
TLS_PREFIX="${TLS_PREFIX:-/$STACK_NAME/triton-tls}"
command -v openssl >/dev/null 2>&1 || die "'openssl' is not on PATH: install OpenSSL"

# make_certificates DIR: ECDSA P-256 CA (10 years) and a server certificate for TLS_SERVER_NAME (825 days).
make_certificates() {
    local dir="$1"
    mkdir -p "$dir"
    (
        umask 077
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 3650 \
            -subj "/CN=triton-gateway private CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -subj "/CN=$TLS_SERVER_NAME" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
            "$TLS_SERVER_NAME" >"$dir/server.ext"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
            -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
        rm -f "$dir/ca.key" "$dir/ca.srl" "$dir/server.csr" "$dir/server.ext"
    )
    chmod 0644 "$dir/ca.crt" "$dir/server.crt"
}

if [ "${1:-}" = "--files-only" ]; then
    make_certificates "${2:?--files-only needs a directory}"
    echo "wrote $2/ca.crt, $2/server.crt, $2/server.key for $TLS_SERVER_NAME"
    exit 0
fi

require aws
region="$(aws_region)"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
make_certificates "$workdir"
aws ssm put-parameter --region "$region" --overwrite --type String --name "$TLS_PREFIX/ca" \
    --value "file://$workdir/ca.crt" >/dev/null
aws ssm put-parameter --region "$region" --overwrite --type String --name "$TLS_PREFIX/cert" \
    --value "file://$workdir/server.crt" >/dev/null
aws ssm put-parameter --region "$region" --overwrite --type SecureString --name "$TLS_PREFIX/key" \
    --value "file://$workdir/server.key" >/dev/null
echo "stored $TLS_PREFIX/{ca,cert,key} for $TLS_SERVER_NAME in $region; now deploy with"
echo "  deploy/scripts/deploy.sh --parameter-overrides TritonTlsParameterPrefix=$TLS_PREFIX TritonTlsServerName=$TLS_SERVER_NAME"
