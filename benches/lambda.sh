#!/usr/bin/env bash
# Lambda-style process functions: cold start (process start + init, first request after the
# instance was reaped) and warm latency p50/p99 for Python, Node.js and Rust (`lambda_runtime`)
# hello handlers, plus warm throughput through the gateway; the Wasm hello on the same server as
# the in-run reference for the gateway's own cost. Prints markdown for BENCHMARKS.md.
#
#   benches/lambda.sh                  # 21 cold starts, 10 s of wrk per warm measurement
#   COLD=11 DURATION=5s benches/lambda.sh
#
# SERVE_FLAGS=--no-process-sandbox measures without namespaces and cgroups.
#
# Needs: wrk (installed from Debian if missing), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
ROOT=$PWD
COLD=${COLD:-21}
DURATION=${DURATION:-10s}
# Not under /tmp: process functions then get a private /tmp, as in production.
WORK=$(mktemp -d -p "$ROOT/target" bench-lambda.XXXXXX)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -p nimbus >&2
cargo build --release --manifest-path examples/lambda-rust/Cargo.toml >&2
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml >&2
NIMBUS=$ROOT/target/release/nimbus

wait_http() { for _ in $(seq 1 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0; sleep 0.05; done; echo "no 200 from $1" >&2; return 1; }

APP=$WORK/app
mkdir -p "$APP/rust" "$APP/python" "$APP/node"
cp examples/lambda-rust/target/release/bootstrap "$APP/rust/bootstrap"
cp examples/lambda-python/app.py "$APP/python/app.py"
cp examples/lambda-node/index.mjs "$APP/node/index.mjs"
cp "$ROOT/target/guests/wasm32-wasip2/release/hello.wasm" "$APP/hello.wasm"
cat > "$APP/nimbus.toml" <<TOML
name = "bench"
[function.py]
runtime = "python3"
handler = "app.handler"
code = "python"
max_concurrency = 2
[function.rs]
runtime = "provided"
code = "rust"
max_concurrency = 2
[function.js]
runtime = "nodejs"
handler = "index.handler"
code = "node"
max_concurrency = 2
[function.wasm]
component = "hello.wasm"
[[route]]
path = "/py/{name}"
function = "py"
[[route]]
path = "/rs/{name}"
function = "rs"
[[route]]
path = "/js/{name}"
function = "js"
[[route]]
path = "/hello"
function = "wasm"
TOML

start() { # $1 = idle timeout; sets BASE (no subshell, so PIDS keeps the server)
  local dir=$WORK/data-$RANDOM port
  port=$(free_port)
  NIMBUS_LOG=warn "$NIMBUS" serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 --aws-listen 127.0.0.1:0 --data-dir "$dir" --idle-timeout "$1" ${SERVE_FLAGS:-} >"$WORK/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do [ -f "$dir/admin.url" ] && break; sleep 0.05; done
  "$NIMBUS" --data-dir "$dir" deploy "$APP" --json >/dev/null
  BASE="http://127.0.0.1:$port"
}
stop_all() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; PIDS=(); }

# Cold starts: with a 300 ms idle timeout, every request after a 0.7 s pause finds no instance.
start 300ms; base=$BASE
wait_http "$base/py/a"; wait_http "$base/rs/a"; wait_http "$base/js/a"
declare -A COLDS WARMS
for _ in $(seq 1 "$COLD"); do
  for fn in py rs js; do
    sleep 0.7
    COLDS[$fn]+="$(curl -s -o /dev/null -w '%{time_total}' "$base/$fn/a")"$'\n'
    WARMS[$fn]+="$(curl -s -o /dev/null -w '%{time_total}' "$base/$fn/a")"$'\n'
  done
done
stop_all

# Warm latency (one connection: latency without queueing) and throughput (2 connections =
# max_concurrency, so nothing is refused) through the gateway.
start 5m; base=$BASE
declare -A SERIAL LOADED
for path in py/a rs/a js/a hello; do
  wait_http "$base/$path"
  wrk -t1 -c1 -d2s "$base/$path" >/dev/null
  SERIAL[$path]=$(run_wrk "$base/$path" 1)
  LOADED[$path]=$(run_wrk "$base/$path" 2)
  echo "$path: serial ${SERIAL[$path]} / 2 connections ${LOADED[$path]}" >&2
done
stop_all

# The handlers' own cost, without nimbus: the Python handler called in a loop.
py_handler_us=$(cd examples/lambda-python && python3 - <<'PY'
import time, app
class C: aws_request_id = "x"
event = {"pathParameters": {"name": "a"}}
n = 20000
t = time.perf_counter()
for _ in range(n): app.handler(event, C())
print(f"{(time.perf_counter() - t) / n * 1e6:.1f}")
PY
)

ms() { awk '{printf "%.1f", $1*1000}'; }
echo
echo "Cold start (first request after the instance was reaped: process start + init + first invoke), curl total, median of $COLD:"
echo
echo "| handler | cold start ms | warm request ms (same run, curl total) |"
echo "|---|---:|---:|"
for fn in py rs js; do
  echo "| $fn | $(echo -n "${COLDS[$fn]}" | median | ms) | $(echo -n "${WARMS[$fn]}" | median | ms) |"
done
echo
echo "Warm, through the gateway (wrk -t1 -d$DURATION; -c1 for latency, -c2 = max_concurrency for throughput):"
echo
echo "| function | p50 ms (c1) | p99 ms (c1) | req/s (c1) | req/s (c2) | p99 ms (c2) |"
echo "|---|---:|---:|---:|---:|---:|"
for path in py/a rs/a js/a hello; do
  read -r rps p50 p99 <<<"${SERIAL[$path]}"
  read -r rps2 _ p99b <<<"${LOADED[$path]}"
  echo "| /$path | $p50 | $p99 | $rps | $rps2 | $p99b |"
done
echo
echo "Python handler alone, in-process loop: ${py_handler_us} µs per call."
