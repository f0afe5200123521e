#!/usr/bin/env bash
# DynamoDB tables: nimbus vs moto_server (what users run locally), side by side in one run, with
# the same two clients: boto3 and the Rust AWS SDK (benches/tables, its own crate).
#
#   bash benches/tables.sh   # ROUNDS=3 COUNT=2000 THREADS="8" CONCURRENCY=64
#
# From THREADS boto3 threads, then from the Rust SDK with CONCURRENCY requests in flight: COUNT
# PutItems of small items, COUNT GetItems, COUNT/10 Queries of 100 items, COUNT conditional
# increments of one item (UpdateItem SET n = n + 1 with a condition); ops/s and p50/p99 ms per
# op, median of ROUNDS. nimbus commits every write to disk before answering; moto keeps tables
# in memory.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
ROUNDS="${ROUNDS:-3}" COUNT="${COUNT:-2000}" THREADS="${THREADS:-8}" CONCURRENCY="${CONCURRENCY:-64}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

[ -x target/release/nimbus ] || cargo build --release -p nimbus
rust_client=benches/tables/target/release/ddb-bench
[ -x "$rust_client" ] || cargo build --release --manifest-path benches/tables/Cargo.toml
[ -d target/py/boto3 ] || python3 -m pip install --quiet --target target/py/boto3 boto3==1.44.8
[ -d target/py/moto ] || python3 -m pip install --quiet --target target/py/moto "moto[server]==5.1.*"


start_nimbus() {
  local port; port=$(free_port)
  target/release/nimbus serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --aws-listen "127.0.0.1:$port" \
    --data-dir "$WORK/nimbus" >"$WORK/nimbus.log" 2>&1 &
  wait_http "http://127.0.0.1:$port/"
  read -r AK SK < <(target/release/nimbus --data-dir "$WORK/nimbus" keys create --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["id"], d["secret"])')
  echo "http://127.0.0.1:$port $AK $SK"
}
start_moto() {
  local port; port=$(free_port)
  PYTHONPATH=target/py/moto python3 -m moto.server -p "$port" >"$WORK/moto.log" 2>&1 &
  wait_http "http://127.0.0.1:$port/"
  echo "http://127.0.0.1:$port test test"
}

col() { awk -v c="$1" '{print $c}' "$WORK/rounds" | median; }
phases() { echo "PutItem $(col 1)/s p50 $(col 2) p99 $(col 3) ms · GetItem $(col 4)/s p50 $(col 5) p99 $(col 6) ms · Query(100) $(col 7)/s p50 $(col 8) p99 $(col 9) ms · conditional increment $(col 10)/s p50 $(col 11) p99 $(col 12) ms"; }

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d)"
for server in nimbus moto; do
  read -r endpoint ak sk < <("start_$server")
  for threads in $THREADS; do
    rounds=()
    for _ in $(seq "$ROUNDS"); do
      rounds+=("$(AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk PYTHONPATH=target/py/boto3 \
        python3 benches/tables/ddb_load.py "$endpoint" "$threads" "$COUNT")")
    done
    printf '%s\n' "${rounds[@]}" > "$WORK/rounds"
    echo "$server boto3 threads=$threads: $(phases)"
  done
  rounds=()
  for _ in $(seq "$ROUNDS"); do
    rounds+=("$("$rust_client" "$endpoint" "$ak" "$sk" "$CONCURRENCY" "$COUNT")")
  done
  printf '%s\n' "${rounds[@]}" > "$WORK/rounds"
  echo "$server rust-sdk concurrency=$CONCURRENCY: $(phases)"
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
done
