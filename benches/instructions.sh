#!/usr/bin/env bash
# Counts the user-space instructions of one cached `GET` of a workforce under callgrind, for the
# service and for the bare baseline, and prints "service_per_request baseline_per_request".
# Unlike requests per second, the counts change little from one run to the next (two runs of
# one build were 0.6% apart), so they show what a change to the request path costs. Kernel
# time (sockets, wake-ups) is not counted, so their ratio is not the ratio of the request rates.
#
# Usage: benches/instructions.sh SERVICE_EXECUTABLE BASELINE_EXECUTABLE WORK_FOLDER
# Needs valgrind, wrk, curl and PostgreSQL on 127.0.0.1:5432. Uses the database wfs_bench_cg
# and ports 18083 and 18084.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
service=$1 baseline=$2 work=$3
pg=postgres://postgres@127.0.0.1:5432
port=18083 base_port=18084
pid=
cleanup() { if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

wait_for() {
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null "$1"; then return 0; fi
        sleep 0.2
    done
    echo "instructions.sh: no response from $1" >&2; return 1
}
# Runs wrk for 20 s on 4 connections with callgrind counting, then writes the counts out.
count() {
    local url=$1 key=$2 name=$3
    callgrind_control -i on "$pid" > /dev/null 2>&1
    WFS_KEY=$key wrk -t1 -c4 -d20s -s benches/auth.lua "$url" > "$work/cg-$name.wrk"
    callgrind_control -i off "$pid" > /dev/null 2>&1
    callgrind_control -d "$pid" > /dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

psql -q -h 127.0.0.1 -U postgres -c "drop database if exists wfs_bench_cg" > /dev/null 2>&1
# The in-process sandbox keeps its state in memory, so the whole run uses one process.
# Counting starts only once the workforce exists and its response is in the read cache.
RUST_LOG=info valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg-service.out" \
    "$service" --mode sandbox --listen "127.0.0.1:$port" --database-url "$pg/wfs_bench_cg" \
    --rate-limit-per-minute 0 --sandbox-delay-ms 200 --bootstrap-key-file "$work/cg-key" \
    2>> "$work/cg-service.log" &
pid=$!
wait_for "http://127.0.0.1:$port/readyz"
key=$(cat "$work/cg-key")
api=http://127.0.0.1:$port
location=$(curl -sf -H "authorization: Bearer $key" -o /dev/null -w '%header{location}' \
    -X POST "$api/v1/regions/us-east-1/workforces" -H 'content-type: application/json' \
    -d '{"name":"bench","cognito_config":{"user_pool":"us-east-1_AbC123","client_id":"portal"}}')
until curl -sf -H "authorization: Bearer $key" "$api$location" | grep -q '"status":"succeeded"'; do sleep 0.2; done
url=$api/v1/regions/us-east-1/workforces/bench
curl -sf -H "authorization: Bearer $key" "$url" > "$work/cg-body.json"
count "$url" "$key" service

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg-baseline.out" \
    "$baseline" "127.0.0.1:$base_port" "$work/cg-body.json" 2>> "$work/cg-baseline.log" &
pid=$!
wait_for "http://127.0.0.1:$base_port/"
count "http://127.0.0.1:$base_port/" "" baseline
psql -q -h 127.0.0.1 -U postgres -c "drop database wfs_bench_cg" > /dev/null

python3 - "$work" <<'PY'
import glob, re, sys
work = sys.argv[1]
def per_request(name):
    total = 0
    # callgrind writes the dump to a numbered file beside the one it writes at exit.
    for path in glob.glob(f"{work}/cg-{name}.out*"):
        for line in open(path):
            if line.startswith("totals:"):
                total += int(line.split()[1])
    requests = int(re.search(r"(\d+) requests in", open(f"{work}/cg-{name}.wrk").read()).group(1))
    return total / requests
print(f"{per_request('service'):.0f} {per_request('baseline'):.0f}")
PY
