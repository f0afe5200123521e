#!/usr/bin/env bash
# Durable events: enqueue → handled throughput and enqueue → handler-start latency, nimbus (a
# queue consumed by the no-op Wasm hello function) against NATS JetStream (file storage,
# explicit acks) on the same machine in the same run. Prints markdown for BENCHMARKS.md.
#
#   benches/events.sh                    # 100,000 events per round, 3 rounds each
#   EVENTS=20000 ROUNDS=1 benches/events.sh
#   NATS_URL=nats://127.0.0.1:4222       # the JetStream server to compare with (default)
#
# Needs: a JetStream-enabled NATS server at NATS_URL, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
ROOT=$PWD
EVENTS=${EVENTS:-100000}
ROUNDS=${ROUNDS:-3}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
WORK=$(mktemp -d -p "$ROOT/target" bench-events.XXXXXX)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -p nimbus >&2
cargo build --release --manifest-path benches/events/Cargo.toml >&2
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml >&2
NIMBUS=$ROOT/target/release/nimbus
BENCH=$ROOT/benches/events/target/release/events-bench

APP=$WORK/app
mkdir -p "$APP"
cp "$ROOT/target/guests/wasm32-wasip2/release/hello.wasm" "$APP/hello.wasm"
cat > "$APP/nimbus.toml" <<TOML
name = "bench"

[function.noop]
component = "hello.wasm"

[queue.events]

[[trigger.queue]]
queue = "events"
function = "noop"
batch_size = 32
concurrency = 4
TOML

nimbus_round() {
  local data=$WORK/data-$1
  "$NIMBUS" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --aws-listen 127.0.0.1:0 --data-dir "$data" >"$WORK/serve-$1.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 200); do [ -s "$data/admin.url" ] && break; sleep 0.05; done
  NIMBUS_DATA_DIR=$data "$NIMBUS" deploy "$APP" >/dev/null
  "$BENCH" nimbus "$(cat "$data/admin.url")" "$(cat "$data/admin.token")" bench events noop "$EVENTS"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  RESULTS[nimbus]+="$(nimbus_round "$round")"$'\n'
  RESULTS[nats]+="$("$BENCH" nats "$NATS_URL" "$EVENTS")"$'\n'
done

col() { printf '%s' "${RESULTS[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
lost() { printf '%s' "${RESULTS[$1]}" | awk 'NF {s += $4} END {print s}'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "Machine: $(nproc) cores, $cpu; $EVENTS events per round, median of $ROUNDS rounds."
echo
echo "| system | events/s | enqueue → handler start p50 | p99 | lost |"
echo "|---|---:|---:|---:|---:|"
for system in nimbus nats; do
  printf '| %s | %s | %s ms | %s ms | %s |\n' "$system" "$(col "$system" 1)" "$(col "$system" 2)" "$(col "$system" 3)" "$(lost "$system")"
done
echo
echo "Ratio nimbus / JetStream throughput: $(awk -v a="$(col nimbus 1)" -v b="$(col nats 1)" 'BEGIN {printf "%.2f", a/b}')"
