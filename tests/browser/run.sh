#!/usr/bin/env bash
# Browser test of /docs: builds the service (debug), starts it in sandbox mode on a free
# 127.0.0.1 port with a new database, waits for /readyz, runs docs.mjs in headless Chromium and
# stops the service. The screenshot goes to tests/browser/artifacts/docs.png.
#
# Needs cargo, PostgreSQL with trust auth for the user postgres (override the server with
# TEST_DATABASE_SERVER_URL), curl, Node.js 20 with npm, and Chromium at $CHROMIUM (default
# /usr/bin/chromium). Without Chromium or Node.js it prints "skipped" and exits 0, unless
# REQUIRE_BROWSER=1, then it exits 1. WORKFORCE_API_KEY, when set, is sent as a bearer token.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"

skip() {
    if [[ "${REQUIRE_BROWSER:-0}" == 1 ]]; then
        echo "run.sh: failed, because $1 and REQUIRE_BROWSER=1 is set. To fix it, $2." >&2
        exit 1
    fi
    echo "run.sh: skipped, because $1 (set REQUIRE_BROWSER=1 to make this an error)"
    exit 0
}
[[ -x "$chromium" ]] || skip "$chromium is missing" "install it with apt-get install chromium"
command -v node >/dev/null 2>&1 || skip "node is missing" "install Node.js 20 or later"
command -v npm >/dev/null 2>&1 || skip "npm is missing" "install npm"

(cd "$script_dir" && npm ci --no-audit --no-fund --loglevel=error)

# Cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in, the repository root.
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;;
esac
echo "run.sh: building workforce-service into $target_dir" >&2
(cd "$repo_root" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet -p workforce-service --bin workforce-service)
binary="$target_dir/debug/workforce-service"

# The kernel picks a free port. The socket closes before the service binds it, so another
# process could take it in between. The readiness wait below then fails with the service log.
port="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')"
service_url="http://127.0.0.1:$port"
database_server="${TEST_DATABASE_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
database="wfs_browser_$(node -e 'console.log(require("crypto").randomBytes(6).toString("hex"))')"

# The service runs in a scratch folder, so files it writes relative to its working directory
# stay out of the repository.
work_dir="$(mktemp -d "${TMPDIR:-/tmp}/wfs-browser.XXXXXX")"
log_file="$work_dir/service.log"
auth=()
if [[ -n "${WORKFORCE_API_KEY:-}" ]]; then
    auth=(-H "Authorization: Bearer $WORKFORCE_API_KEY")
fi

(cd "$work_dir" && exec "$binary" --mode sandbox --listen "127.0.0.1:$port" \
    --database-url "$database_server/$database" --sandbox-delay-ms 0) >"$log_file" 2>&1 &
service_pid=$!

cleanup() {
    if kill -0 "$service_pid" 2>/dev/null; then
        kill "$service_pid"
        wait "$service_pid" 2>/dev/null || true
    fi
    if command -v psql >/dev/null 2>&1; then
        psql -q "$database_server/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 \
            || echo "run.sh: could not drop the database $database" >&2
    fi
    rm -rf "$work_dir"
}
trap cleanup EXIT

ready=false
for _ in $(seq 1 120); do
    if ! kill -0 "$service_pid" 2>/dev/null; then
        break
    fi
    if curl -fsS -o /dev/null --max-time 2 "${auth[@]}" "$service_url/readyz" 2>/dev/null; then
        ready=true
        break
    fi
    sleep 0.5
done
if [[ "$ready" != true ]]; then
    echo "run.sh: the service (pid $service_pid) did not become ready at $service_url/readyz within 60 s; its log:" >&2
    cat "$log_file" >&2
    exit 1
fi
echo "run.sh: service pid $service_pid is ready at $service_url (database $database)" >&2

set +e
(cd "$script_dir" && SERVICE_URL="$service_url" CHROMIUM="$chromium" node docs.mjs)
status=$?
set -e
if [[ $status -ne 0 ]]; then
    echo "run.sh: docs.mjs exited with status $status; last lines of the service log:" >&2
    tail -n 40 "$log_file" >&2
fi
exit "$status"
