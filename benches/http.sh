#!/usr/bin/env bash
# Side-by-side HTTP benchmark: nimbus vs `wasmtime serve` (same wasmtime version, same
# component), fresh-instance and instance-reuse modes, under wrk; plus deploy → first 200 and
# cold start after idle. Results are printed as a markdown table for BENCHMARKS.md.
#
#   benches/http.sh            # 3 rounds of 10 s per configuration
#   ROUNDS=1 DURATION=5s benches/http.sh
#
# Needs: wrk (installed from Debian if missing), wasmtime-cli 48.0.8 (installed with cargo into
# target/bench-tools if missing), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

WASMTIME=$(wasmtime_cli)

cargo build --release -p nimbus >&2
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml >&2
HELLO=$ROOT/target/guests/wasm32-wasip2/release/hello.wasm
NIMBUS=$ROOT/target/release/nimbus



start_nimbus() { # $1 = instance mode, $2 = idle timeout; sets URL (no subshell, so PIDS keeps the server)
  local dir=$WORK/nimbus-$1-$RANDOM port
  port=$(free_port)
  mkdir -p "$dir/app"
  cp "$HELLO" "$dir/app/hello.wasm"
  cat > "$dir/app/nimbus.toml" <<TOML
name = "bench"
[function.hello]
component = "hello.wasm"
instance = "$1"
max_concurrency = 256
[[route]]
path = "/hello"
function = "hello"
TOML
  NIMBUS_LOG=warn "$NIMBUS" serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 --aws-listen 127.0.0.1:0 --data-dir "$dir/data" --idle-timeout "$2" >"$dir/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do [ -f "$dir/data/admin.url" ] && break; sleep 0.05; done
  "$NIMBUS" --data-dir "$dir/data" deploy "$dir/app" --json >/dev/null
  URL="http://127.0.0.1:$port/hello"
}

start_wasmtime() { # $1 = extra flags; sets URL
  local port; port=$(free_port)
  "$WASMTIME" serve -Scli --addr 127.0.0.1:$port $1 "$HELLO" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/hello"
  URL="http://127.0.0.1:$port/hello"
}

stop_all() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; PIDS=(); }


declare -A RESULTS
CONFIGS=("nimbus fresh" "wasmtime-serve fresh" "nimbus reuse" "wasmtime-serve reuse")
for round in $(seq 1 "$ROUNDS"); do
  for config in "${CONFIGS[@]}"; do
    case $config in
      "nimbus fresh") start_nimbus fresh 5m; url=$URL ;;
      "nimbus reuse") start_nimbus reuse 5m; url=$URL ;;
      "wasmtime-serve fresh") start_wasmtime ""; url=$URL ;;
      "wasmtime-serve reuse") start_wasmtime "--max-instance-reuse-count 1000000"; url=$URL ;;
    esac
    wait_http "$url"
    wrk -t1 -c"$CONNECTIONS" -d2s "$url" >/dev/null # warm-up
    RESULTS["$config"]+="$(run_wrk "$url" "$CONNECTIONS")"$'\n'
    echo "round $round $config: $(echo "${RESULTS[$config]}" | tail -n 2 | head -n 1)" >&2
    stop_all
  done
done

echo "| configuration | req/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|"
for config in "${CONFIGS[@]}"; do
  rps=$(echo -n "${RESULTS[$config]}" | awk '{print $1}' | median)
  p50=$(echo -n "${RESULTS[$config]}" | awk '{print $2}' | median)
  p99=$(echo -n "${RESULTS[$config]}" | awk '{print $3}' | median)
  echo "| $config | $rps | $p50 | $p99 |"
done

# Deploy → first 200 for a new function, compiled (new component) and from the cache.
deploy_to_first_200() { # $1 = data dir with a running server, $2 = app dir, $3 = gateway url; prints ms
  local start end
  start=$(date +%s%N)
  "$NIMBUS" --data-dir "$1" deploy "$2" --json >/dev/null
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$3")" = 200 ]; do :; done
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}
dir=$WORK/deploy; port=$(free_port); mkdir -p "$dir/app"; cp "$HELLO" "$dir/app/hello.wasm"
printf 'name = "fresh-deploy"\n[function.hello]\ncomponent = "hello.wasm"\n[[route]]\npath = "/hello"\nfunction = "hello"\n' > "$dir/app/nimbus.toml"
NIMBUS_LOG=warn "$NIMBUS" serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 --aws-listen 127.0.0.1:0 --data-dir "$dir/data" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -f "$dir/data/admin.url" ] && break; sleep 0.05; done
compiled_ms=$(deploy_to_first_200 "$dir/data" "$dir/app" "http://127.0.0.1:$port/hello")
sed -i 's/fresh-deploy/fresh-deploy2/; s#/hello"#/hello2"#' "$dir/app/nimbus.toml"
cached_ms=$(deploy_to_first_200 "$dir/data" "$dir/app" "http://127.0.0.1:$port/hello2")
stop_all

# First request after idle (instance reaped: a cold start) vs a warm request, single client.
start_nimbus reuse 300ms; url=$URL
wait_http "$url"
cold=(); warm=()
for _ in $(seq 1 21); do
  sleep 0.6
  cold+=("$(curl -s -o /dev/null -w '%{time_total}' "$url")")
  warm+=("$(curl -s -o /dev/null -w '%{time_total}' "$url")")
done
stop_all
cold_ms=$(printf '%s\n' "${cold[@]}" | awk '{print $1*1000}' | median)
warm_ms=$(printf '%s\n' "${warm[@]}" | awk '{print $1*1000}' | median)

echo
echo "| measure | value |"
echo "|---|---:|"
echo "| deploy → first 200, new component (compile) | ${compiled_ms} ms |"
echo "| deploy → first 200, component in cache | ${cached_ms} ms |"
echo "| request after idle (cold instance), curl total, median of 21 | ${cold_ms} ms |"
echo "| warm request, curl total, median of 21 | ${warm_ms} ms |"
