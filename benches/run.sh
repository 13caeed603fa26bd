#!/usr/bin/env bash
# Runs the benchmarks of docs/benchmarks.md against a release build on 127.0.0.1 and prints a
# results table. `benches/run.sh --smoke` runs every step briefly (under a minute once the
# release build exists), with no timing targets, as a CI check that the harness still works.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, no password), wrk, taskset, curl and
# python3. It creates and drops the databases wfs_bench and wfs_bench_audit, and uses ports
# 18080 to 18082. The server is pinned to core 0 and the load generator to core 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
if [[ "${1:-}" == "--smoke" ]]; then smoke=1; fi
if (( smoke )); then
    duration=1s; audit_rows=10000; waiters=50; posts=20; simulated=500; connections=16
else
    duration=10s; audit_rows=1000000; waiters=1000; posts=1000; simulated=20000; connections=64
fi

pg=postgres://postgres@127.0.0.1:5432
work=$(mktemp -d /tmp/wfs-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

if [[ $(nproc) -ge 2 ]]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); else server_cpu=(); client_cpu=(); fi

echo "== building (release)" >&2
cargo build --release --quiet --bin workforce-service --benches --message-format=json \
    > "$work/build.json"
executable() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    # --benches also builds the binary as a test harness; skip that one.
    if (m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[2]
            and m.get("executable") and not (m["target"]["kind"] == ["bin"] and m["profile"]["test"])):
        print(m["executable"])' "$work/build.json" "$1" | tail -1
}
service=$(executable workforce-service)
baseline=$(executable baseline_server)
load=$(executable load)
simulation=$(executable poller_simulation)
for path in "$service" "$baseline" "$load" "$simulation"; do
    [[ -x "$path" ]] || { echo "run.sh: a benchmark executable is missing after the build" >&2; exit 1; }
done

# Starts the service in the background with extra flags; sets $server_pid.
start_service() {
    local port=$1 database=$2; shift 2
    RUST_LOG=${RUST_LOG:-info} "${server_cpu[@]}" "$service" --mode sandbox --listen "127.0.0.1:$port" \
        --database-url "$pg/$database" --rate-limit-per-minute 0 --sandbox-delay-ms 200 \
        --bootstrap-key-file "$work/$database-key" "$@" 2>> "$work/service-$port.log" &
    server_pid=$!
    pids+=("$server_pid")
}
stop_service() {
    kill "$1"; wait "$1" 2>/dev/null || true
}
# Waits until a URL returns 200 and prints the milliseconds since $2 (nanoseconds).
wait_ready() {
    local url=$1 started=$2
    for _ in $(seq 1 3000); do
        if curl -sf -o /dev/null "$url"; then
            echo $(( ($(date +%s%N) - started) / 1000000 )); return 0
        fi
        sleep 0.01
    done
    echo "no response from $url" >&2; return 1
}
# Runs wrk on the client core and prints "requests_per_second p50_ms p99_ms".
run_wrk() {
    local conns=$1 url=$2
    "${client_cpu[@]}" wrk -t1 -c"$conns" -d"$duration" --latency -s benches/auth.lua "$url" > "$work/wrk.txt"
    python3 - "$work/wrk.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"wrk: {errors.group(1)} answers were not 2xx: {text}")
print(f"{rps:.0f} {p50:.2f} {p99:.2f}")
PY
}

results="$work/results.md"
row() { echo "| $* |" | tee -a "$results"; }

echo "== service, first start: migrations, admin key, one workforce" >&2
psql -q -h 127.0.0.1 -U postgres -c "drop database if exists wfs_bench" >/dev/null
start_service 18080 wfs_bench
wait_ready http://127.0.0.1:18080/readyz "$(date +%s%N)" > /dev/null
export WFS_KEY
WFS_KEY=$(cat "$work/wfs_bench-key")
api=http://127.0.0.1:18080
auth=(-H "authorization: Bearer $WFS_KEY")
location=$(curl -sf "${auth[@]}" -o /dev/null -w '%header{location}' -X POST "$api/v1/regions/us-east-1/workforces" \
    -H 'content-type: application/json' \
    -d '{"name":"bench","cognito_config":{"user_pool":"us-east-1_AbC123","client_id":"portal"}}')
until curl -sf "${auth[@]}" "$api$location" | grep -q '"status":"succeeded"'; do sleep 0.1; done
workforce_url="$api/v1/regions/us-east-1/workforces/bench"
operation_url="$api$location"

row "benchmark | service | baseline | ratio | notes"
row "---|---|---|---|---"
for name in workforce operation; do
    if [[ $name == workforce ]]; then url=$workforce_url; else url=$operation_url; fi
    curl -sf "${auth[@]}" "$url" > "$work/$name.json"
    read -r rps p50 p99 <<< "$(run_wrk "$connections" "$url")"
    "${server_cpu[@]}" "$baseline" 127.0.0.1:18081 "$work/$name.json" 2>/dev/null &
    baseline_pid=$!; pids+=("$baseline_pid")
    wait_ready http://127.0.0.1:18081/ "$(date +%s%N)" > /dev/null
    read -r base_rps base_p50 base_p99 <<< "$(WFS_KEY='' run_wrk "$connections" http://127.0.0.1:18081/)"
    kill "$baseline_pid"; wait "$baseline_pid" 2>/dev/null || true
    row "GET $name, $connections connections: req/s | $rps | $base_rps | $(python3 -c "print(f'{$rps/$base_rps:.2f}')") | p50 $p50 ms / p99 $p99 ms (baseline p50 $base_p50 / p99 $base_p99 ms)"
    # Half the service's maximum rate: each connection pauses 2 ms between requests (wrk's
    # delay()), and there are as many connections as that rate needs. wrk does not correct
    # coordinated omission, so this p99 is an estimate.
    half_connections=$(python3 -c "print(max(1, round($rps / 2 * 2 / 1000)))")
    read -r half_rps half_p50 half_p99 <<< "$(WRK_DELAY_MS=2 run_wrk "$half_connections" "$url")"
    row "GET $name at half rate: p99 ms | $half_p99 | | | $half_rps req/s sent by $half_connections connections (target $(python3 -c "print(round($rps/2))")), p50 $half_p50 ms"
done
# The same middleware stack without a credential or a database query, to separate the cost of
# the stack from the cost of the queries.
read -r rps p50 p99 <<< "$(WFS_KEY='' run_wrk "$connections" "$api/healthz")"
row "GET /healthz (middleware, no auth, no query), $connections connections: req/s | $rps | | | p50 $p50 ms / p99 $p99 ms"
stop_service "$server_pid"

# Instruction counts are repeatable where request rates are not; they take about a minute.
if (( ! smoke )) && command -v valgrind > /dev/null; then
    echo "== instructions per cached GET (callgrind)" >&2
    read -r service_ir baseline_ir <<< "$(benches/instructions.sh "$service" "$baseline" "$work")"
    row "GET workforce: user-space instructions per request (callgrind) | $service_ir | $baseline_ir | $(python3 -c "print(f'{$baseline_ir/$service_ir:.2f}')") | 4 connections, 20 s; kernel time not counted"
fi

echo "== time to ready and idle memory on a migrated database" >&2
started=$(date +%s%N)
start_service 18080 wfs_bench
ready_ms=$(wait_ready http://127.0.0.1:18080/readyz "$started")
sleep 3
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
row "time to ready (ms) | $ready_ms | | | start on a migrated database until /readyz answers 200"
row "idle RSS (MB) | $(python3 -c "print(f'{$rss_kb/1024:.1f}')") | | | 3 s after ready, in-process sandbox included"
stop_service "$server_pid"

echo "== POST latency and long-polling (no workers)" >&2
start_service 18080 wfs_bench --workers 0
sleep 1
"${client_cpu[@]}" "$load" post-change "$api" "$WFS_KEY" "$pg/wfs_bench" "$posts" | tee "$work/post.txt" >&2
row "POST create -> 202, sequential | $(grep -o 'p99=[0-9.]*ms' "$work/post.txt") | | | $(grep -o 'n=[0-9]* p50=[0-9.]*ms' "$work/post.txt")"
psql -q -h 127.0.0.1 -U postgres -d wfs_bench -c "delete from operations" -c "delete from workforces" >/dev/null
location=$(curl -sf "${auth[@]}" -o /dev/null -w '%header{location}' -X POST "$api/v1/regions/us-east-1/workforces" \
    -H 'content-type: application/json' \
    -d '{"name":"waited","cognito_config":{"user_pool":"us-east-1_AbC123","client_id":"portal"}}')
"${client_cpu[@]}" "$load" long-poll "$api" "$WFS_KEY" "$pg/wfs_bench" "${location##*/}" "$waiters" "$server_pid" \
    | tee "$work/long-poll.txt" >&2
row "long-poll, $waiters waiters: answer after commit | $(grep -o 'p99=[0-9.]*ms max=[0-9.]*ms' "$work/long-poll.txt") | | | $(grep -o 'server CPU.*' "$work/long-poll.txt")"
stop_service "$server_pid"

echo "== audit log: $audit_rows events" >&2
psql -q -h 127.0.0.1 -U postgres -c "drop database if exists wfs_bench_audit" >/dev/null
"$service" --database-url "$pg/wfs_bench_audit" migrate 2>> "$work/migrate.log"
# The chain trigger hashes each row in turn; replica mode skips triggers for the bulk load, so
# these events carry no chain columns.
load_started=$(date +%s%N)
psql -q -h 127.0.0.1 -U postgres -d wfs_bench_audit -v ON_ERROR_STOP=1 <<SQL
set session_replication_role = replica;
insert into audit_events (occurred_at, actor, actor_kind, action, outcome, region, workforce_name,
                          operation_id, request_id, detail)
select timestamptz '2026-01-01 00:00:00+00' + g * interval '30 seconds',
       'actor-' || (g % 50), 'api_key',
       (array['workforce.create.requested', 'operation.started', 'operation.submitted',
              'operation.succeeded'])[1 + g % 4],
       (array['accepted', 'started', 'submitted', 'succeeded'])[1 + g % 4],
       case when g % 100 < 50 then 'us-east-1' else 'us-west-2' end,
       'wf-' || (g % 100), gen_random_uuid(), 'req-' || g, jsonb_build_object('n', g)
  from generate_series(1, $audit_rows) g;
set session_replication_role = origin;
-- Sets the hint bits and the visibility map, and writes the dirty pages out, so that the timed
-- reads below do not pay for the load.
vacuum (analyze) audit_events;
checkpoint;
SQL
row "bulk load of $audit_rows audit events (s) | $(( ($(date +%s%N) - load_started) / 1000000000 )) | | | one insert ... select generate_series, triggers off"
start_service 18082 wfs_bench_audit --workers 0
sleep 1
audit_key=$(cat "$work/wfs_bench_audit-key")
# One day of events: the full run's events, one every 30 s, span 2026; the smoke run's, 3.5 days.
if (( smoke )); then
    since=2026-01-02T00:00:00Z; until=2026-01-03T00:00:00Z
else
    since=2026-03-01T00:00:00Z; until=2026-03-02T00:00:00Z
fi
export WFS_AUDIT_SINCE=$since WFS_AUDIT_UNTIL=$until
for filter in workforce actor time; do
    case $filter in
        workforce) query="workforce_name=wf-42" ;;
        actor) query="actor=actor-7" ;;
        time) query="since=$since&until=$until" ;;
    esac
    # One request at a time, as the SQL below runs one statement at a time.
    page_url="http://127.0.0.1:18082/v1/audit-events?$query&limit=50"
    read -r rps p50 p99 <<< "$(WFS_KEY=$audit_key run_wrk 1 "$page_url")"
    # The floor of one HTTP request on this machine: the bare handler serving the same page
    # from memory, one request at a time.
    curl -sf -H "authorization: Bearer $audit_key" "$page_url" > "$work/audit-$filter.json"
    "${server_cpu[@]}" "$baseline" 127.0.0.1:18081 "$work/audit-$filter.json" 2>/dev/null &
    baseline_pid=$!; pids+=("$baseline_pid")
    wait_ready http://127.0.0.1:18081/ "$(date +%s%N)" > /dev/null
    read -r _ bare_p50 bare_p99 <<< "$(WFS_KEY='' run_wrk 1 http://127.0.0.1:18081/)"
    kill "$baseline_pid"; wait "$baseline_pid" 2>/dev/null || true
    # The statement that src/db/audit.rs builds for this filter, prepared and explained 200
    # times, and run 2,000 times by a client on its own connection.
    "$load" audit-explain "$filter" 200 > "$work/explain.sql"
    psql -h 127.0.0.1 -U postgres -d wfs_bench_audit -f "$work/explain.sql" > "$work/explain-$filter.txt"
    raw=$(python3 - "$work/explain-$filter.txt" <<'PY'
import re, sys
times = sorted(float(t) for t in re.findall(r"Execution Time: ([\d.]+) ms", open(sys.argv[1]).read()))
p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
print(f"{times[len(times)//2]:.2f} {p99:.2f}")
PY
)
    read -r raw_p50 raw_p99 <<< "$raw"
    read -r direct_p50 direct_p99 <<< "$("${client_cpu[@]}" "$load" audit-direct "$pg/wfs_bench_audit" "$filter" 2000)"
    row "audit page of 50 by $filter: p99 ms | $p99 | $raw_p99 SQL / $direct_p99 client | $(python3 -c "print(f'{$p99/max($raw_p99, 0.001):.1f} / {$p99/max($direct_p99, 0.001):.1f}')") | API 1 connection $rps req/s, p50 $p50 ms; SQL p50 $raw_p50 ms (EXPLAIN ANALYZE of the prepared statement, 200 runs); client p50 $direct_p50 ms (the same statement through sqlx, rows decoded, 2,000 runs); bare handler serving the same page p50 $bare_p50 / p99 $bare_p99 ms"
done
stop_service "$server_pid"

echo "== poller simulation" >&2
"$simulation" "$simulated" | tee "$work/simulation.md" >&2

psql -q -h 127.0.0.1 -U postgres -c "drop database wfs_bench" -c "drop database wfs_bench_audit" >/dev/null
echo
cat "$results"
echo
cat "$work/simulation.md"
echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GB; raw output in $work" 
