#!/usr/bin/env bash
# Runs the boto3 conformance suite: builds the sandbox, starts it on a free loopback port with
# zero transition delays, runs pytest against it and exits with pytest's status. Arguments are
# passed on to pytest, e.g. `run.sh -k faults -x`.
#
# Needs cargo and python3 with the venv module. The Python packages go into a virtual
# environment at $CONFORMANCE_VENV (default: .venv beside this script), so the machine's own
# boto3 or awscli are left alone.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"

# Cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in, which is the
# repository root here.
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;;
esac

echo "run.sh: building workforce-sandbox into $target_dir" >&2
(cd "$repo_root" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet -p workforce-sandbox)
binary="$target_dir/debug/workforce-sandbox"

venv_dir="${CONFORMANCE_VENV:-$script_dir/.venv}"
if [[ ! -x "$venv_dir/bin/python" ]]; then
    echo "run.sh: creating the Python virtual environment $venv_dir" >&2
    python3 -m venv "$venv_dir"
fi
python="$venv_dir/bin/python"
"$python" -m pip install --quiet --disable-pip-version-check -r "$script_dir/requirements.txt"

# Fixed dummy credentials and no profile files: botocore must never find real credentials or
# ask the instance metadata service. Every client also gets an explicit endpoint_url.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SAGEMAKER AWS_ENDPOINT_URL_EC2
export AWS_ACCESS_KEY_ID=conformance
export AWS_SECRET_ACCESS_KEY=conformance
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
export PYTHONDONTWRITEBYTECODE=1

# The kernel picks a free port; the socket closes before the sandbox binds it, so another
# process could take it in between. The health check below then fails with the sandbox log.
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sandbox_url="http://127.0.0.1:$port"
log_file="$(mktemp "${TMPDIR:-/tmp}/workforce-sandbox-conformance.XXXXXX.log")"

"$binary" --bind 127.0.0.1 --port "$port" --delay-ms 0 >"$log_file" 2>&1 &
sandbox_pid=$!

stop_sandbox() {
    if kill -0 "$sandbox_pid" 2>/dev/null; then
        kill "$sandbox_pid"
        wait "$sandbox_pid" 2>/dev/null || true
    fi
    rm -f "$log_file"
}
trap stop_sandbox EXIT

health_check='
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/_sandbox/health", timeout=1) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
'
ready=false
for _ in $(seq 1 100); do
    if ! kill -0 "$sandbox_pid" 2>/dev/null; then
        break
    fi
    if "$python" -c "$health_check" "$sandbox_url"; then
        ready=true
        break
    fi
    sleep 0.1
done
if [[ "$ready" != true ]]; then
    echo "run.sh: the sandbox did not respond to $sandbox_url/_sandbox/health within 10 s; its log:" >&2
    cat "$log_file" >&2
    exit 1
fi
echo "run.sh: sandbox pid $sandbox_pid is ready at $sandbox_url" >&2

set +e
# pytest runs inside the suite's folder, so file arguments are relative to it.
(cd "$script_dir" && SANDBOX_URL="$sandbox_url" "$python" -m pytest -p no:cacheprovider "$@")
status=$?
set -e
if [[ $status -ne 0 ]]; then
    echo "run.sh: pytest exited with status $status; last lines of the sandbox log:" >&2
    tail -n 40 "$log_file" >&2
fi
exit "$status"
