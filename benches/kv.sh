#!/usr/bin/env bash
# Key-value from a Wasm guest: nimbus's durable store (every set on disk before the guest sees
# it return) against wasmtime's own in-memory wasi:keyvalue host (`wasmtime serve -Skeyvalue`,
# wasmtime-wasi-keyvalue 48, the older 0.2.0-draft), side by side in one run. The same guest
# source (benches/kv-guest) is built once per draft; each request does one `get` or one `set`
# of a 100-byte value on one key, under wrk, in both instance modes.
#
#   bash benches/kv.sh               # ROUNDS=3 DURATION=10s CONNECTIONS=32
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
GUESTS=$ROOT/target/bench-guests
build_guest() { # $1 = output name, $2.. = cargo flags
  local out=$1; shift
  CARGO_TARGET_DIR=$GUESTS cargo build --release --target wasm32-wasip2 --locked \
    --manifest-path benches/kv-guest/Cargo.toml "$@" >&2
  cp "$GUESTS/wasm32-wasip2/release/kv-bench.wasm" "$WORK/$out"
}
build_guest draft2.wasm
build_guest draft.wasm --features draft
NIMBUS=$ROOT/target/release/nimbus
VALUE=$(printf 'v%.0s' $(seq 100))
printf 'wrk.method = "POST"\nwrk.body = "%s"\n' "$VALUE" > "$WORK/post.lua"


start_nimbus() { # $1 = instance mode; sets BASE (no subshell, so PIDS keeps the server)
  local dir=$WORK/nimbus-$1-$RANDOM port
  port=$(free_port)
  mkdir -p "$dir/app"
  cp "$WORK/draft2.wasm" "$dir/app/kv.wasm"
  cat > "$dir/app/nimbus.toml" <<TOML
name = "bench"
[kv.bench]
[function.kv]
component = "kv.wasm"
instance = "$1"
max_concurrency = 256
kv = ["bench"]
[[route]]
path = "/kv/{op}"
function = "kv"
TOML
  NIMBUS_LOG=warn "$NIMBUS" serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 --aws-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do [ -f "$dir/data/admin.url" ] && break; sleep 0.05; done
  "$NIMBUS" --data-dir "$dir/data" deploy "$dir/app" --json >/dev/null
  BASE="http://127.0.0.1:$port/kv"
  STORE=bench
  wait_http "$BASE/get"
  curl -sf -X POST --data "$VALUE" "$BASE/set?store=$STORE&key=k" >/dev/null
}

start_wasmtime() { # $1 = extra flags; sets BASE
  local port; port=$(free_port)
  # The in-memory host starts each instance with this data; "" is its one store.
  "$WASMTIME" serve -Scli -Skeyvalue -Skeyvalue-in-memory-data="k=$VALUE" --addr 127.0.0.1:$port $1 "$WORK/draft.wasm" >/dev/null 2>&1 &
  PIDS+=($!)
  BASE="http://127.0.0.1:$port/kv"
  STORE=""
  wait_http "$BASE/get"
}

stop_all() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; PIDS=(); }

measure() { # $1 = op; prints "req/s p50 p99"
  local url="$BASE/$1?store=$STORE&key=k" script=() post=()
  [ "$1" = set ] && script=(-s "$WORK/post.lua") && post=(-X POST --data "$VALUE")
  [ "$(curl -s -o /dev/null -w '%{http_code}' "${post[@]}" "$url")" = 200 ] || { echo "$1 does not answer 200 at $url" >&2; exit 1; }
  wrk -t1 -c"$CONNECTIONS" -d2s "${script[@]}" "$url" >/dev/null # warm-up
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${script[@]}" "$url" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END { if (bad != "") { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 } printf "%.0f %.3f %.3f\n", rps, ms(p50), ms(p99) }'
}

declare -A RESULTS
CONFIGS=("nimbus fresh" "wasmtime-serve fresh" "nimbus reuse" "wasmtime-serve reuse")
for round in $(seq 1 "$ROUNDS"); do
  for config in "${CONFIGS[@]}"; do
    case $config in
      "nimbus fresh") start_nimbus fresh ;;
      "nimbus reuse") start_nimbus reuse ;;
      "wasmtime-serve fresh") start_wasmtime "" ;;
      "wasmtime-serve reuse") start_wasmtime "--max-instance-reuse-count 1000000" ;;
    esac
    for op in get set; do
      RESULTS["$config $op"]+="$(measure $op)"$'\n'
      echo "round $round $config $op: $(echo "${RESULTS[$config $op]}" | tail -n 2 | head -n 1)" >&2
    done
    stop_all
  done
done

echo "| configuration | op | req/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|"
for config in "${CONFIGS[@]}"; do
  for op in get set; do
    rows=${RESULTS[$config $op]}
    rps=$(echo -n "$rows" | awk '{print $1}' | median)
    p50=$(echo -n "$rows" | awk '{print $2}' | median)
    p99=$(echo -n "$rows" | awk '{print $3}' | median)
    echo "| $config | $op | $rps | $p50 | $p99 |"
  done
done
