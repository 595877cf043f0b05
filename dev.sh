#!/usr/bin/env bash
# The project's entry points, each idempotent on a fresh Debian/Ubuntu machine with Python 3.11+:
#   ./dev.sh run    local Triton + the gateway on http://127.0.0.1:8080 (/docs open)
#   ./dev.sh test   lint, type-check, import contracts, then every test against a real Triton
#   ./dev.sh lock   re-resolve requirements.lock (the Lambda image) and requirements-dev.lock (.venv, CI)
#                   from pyproject.toml; extra arguments go to uv, e.g. --upgrade or --upgrade-package NAME
#   ./dev.sh deploy deploy to AWS: pre-flight, both stacks, the Triton image, the models (docs/deploy.md);
#                   re-runnable after a failure; --yes, --roll-ami, or e.g. --parameter-overrides KEY=VALUE
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv
DEPLOY_VENV=.venv-deploy

# Installs Debian package $1 when root with apt-get; otherwise says what needs it ($2) and how to install it.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq "$1" >/dev/null
    else
        echo "dev.sh: $2 (Debian/Ubuntu: sudo apt-get install $1)" >&2
        exit 1
    fi
}

ensure_venv_module() {
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "dev.sh: Python 3.11+ is needed; $PY is $("$PY" --version 2>&1) (set PYTHON=python3.12 to pick one)" >&2
        exit 1
    fi
    if "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
        return
    fi
    # Debian and Ubuntu ship venv/ensurepip in a separate package.
    apt_install python3-venv "$PY has no venv module; install it"
}

# tests/integration/test_readme.py runs the README's curl commands as written.
ensure_curl() {
    if command -v curl >/dev/null; then
        return
    fi
    apt_install curl "the README tests need curl"
}

# The python-backend stub bundled with the local tritonserver links the shared libpython of its version.
ensure_libpython() {
    local version libdir
    version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    libdir=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
    # grep reads all of ldconfig's output (no -q): with pipefail, an early exit would SIGPIPE ldconfig and
    # fail the check. /sbin is not on a non-root user's PATH on every Debian.
    if PATH="$PATH:/sbin:/usr/sbin" ldconfig -p | grep -F "libpython$version.so.1.0" >/dev/null \
        || [ -e "$libdir/libpython$version.so.1.0" ]; then
        return
    fi
    apt_install "libpython$version" "the local Triton needs libpython$version.so.1.0"
}

# The fleet tests put HAProxy (TCP mode) in front of several Tritons, as the NLB is in production.
ensure_haproxy() {
    if command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; then
        return
    fi
    apt_install haproxy "the fleet tests need haproxy"
}

# perf_analyzer (bench/ and its compatibility test) links Debian's libb64.
ensure_libb64() {
    if PATH="$PATH:/sbin:/usr/sbin" ldconfig -p | grep -F "libb64.so.0d" >/dev/null; then
        return
    fi
    apt_install libb64-0d "perf_analyzer needs libb64.so.0d"
}

# tests/browser drives Debian's Chromium through Playwright (Playwright's own browser download is not used).
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    apt_install chromium "the browser tests need /usr/bin/chromium"
}

setup_main() {
    ensure_venv_module
    ensure_libpython
    ensure_haproxy
    ensure_libb64
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    # Exactly the locked versions, checked against their hashes; then the project itself, without letting
    # pip resolve anything else. `pip check` catches a pyproject.toml dependency the lock lacks.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e .
    if ! "$VENV/bin/pip" check >/dev/null; then
        "$VENV/bin/pip" check >&2 || true
        echo "dev.sh: pyproject.toml and requirements-dev.lock disagree; run ./dev.sh lock" >&2
        exit 1
    fi
}

# Both locks come from pyproject.toml. The image's is universal: one file holds the pins for every Python
# 3.11+ and platform, with markers where they differ (numpy 2.5 needs Python 3.12, the Lambda's), so the
# image, an arm64 build and the task-root test on a 3.11 machine install from the same file. The dev lock
# adds the local extra, whose nvidia-pytriton holds numpy<2: that cannot be universal (ml_dtypes wants
# numpy 2 on Python 3.13, and uv then falls back to an ml_dtypes too old for the onnx it picks), so it
# resolves for this project's development machines: Python 3.11 on x86_64 Linux.
# Existing pins are kept unless uv is asked to --upgrade.
lock() {
    if [ ! -x "$VENV/bin/uv" ]; then
        setup_main
    fi
    local common=(--quiet --generate-hashes --custom-compile-command "./dev.sh lock" "$@")
    "$VENV/bin/uv" pip compile pyproject.toml "${common[@]}" --universal --output-file requirements.lock
    "$VENV/bin/uv" pip compile pyproject.toml "${common[@]}" --extra local --extra dev \
        --python-version 3.11 --python-platform x86_64-manylinux_2_35 --output-file requirements-dev.lock
}

# The AWS checkers (SAM CLI, cfn-lint, checkov, hadolint, shellcheck) pin their own dependency trees, so
# they live in a venv of their own and never constrain the gateway's.
setup_deploy_tools() {
    if [ ! -x "$DEPLOY_VENV/bin/python" ]; then
        "$PY" -m venv "$DEPLOY_VENV"
    fi
    "$DEPLOY_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    "$DEPLOY_VENV/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements-tools.txt
}

case "${1:-}" in
    run)
        setup_main
        shift
        exec "$VENV/bin/python" -m localdev run "$@"
        ;;
    test)
        setup_main
        setup_deploy_tools
        ensure_chromium
        # perf_analyzer for its compatibility test: from tritonclient 2.41.0's wheel into .local/, not .venv.
        "$VENV/bin/python" -m localdev.perf_analyzer >/dev/null
        shift
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy" service localdev
        "$VENV/bin/lint-imports"
        ensure_curl
        exec "$VENV/bin/pytest" "$@"
        ;;
    lock)
        shift
        lock "$@"
        ;;
    deploy)
        shift
        exec deploy/scripts/deploy-all.sh "$@"
        ;;
    *)
        echo "usage: ./dev.sh run | ./dev.sh test [pytest args] | ./dev.sh lock [uv args] | ./dev.sh deploy [args]" >&2
        exit 2
        ;;
esac
