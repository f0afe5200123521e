#!/usr/bin/env bash
# S3 objects: nimbus vs moto_server (what users run locally) vs s3s-fs (the s3s project's
# file-system server), side by side in one run, with the same clients.
#
#   bash benches/objects.sh   # ROUNDS=3 COUNT=2000 THREADS="8 32" CONCURRENCY="64" LARGE_MIB=1024
#
# Small objects: COUNT PUTs of 4 KiB, then COUNT GETs, from THREADS boto3 threads and from the
# Rust AWS SDK with CONCURRENCY requests in flight (benches/objects, its own crate); objects/s
# and p50/p99 ms per op, median of ROUNDS. Large: one LARGE_MIB object up and down (boto3
# multipart, 64 MiB parts, 4 threads; then the Rust SDK, 64 MiB parts and ranges, 4 in
# flight), MB/s. nimbus fsyncs every PUT before answering; moto keeps objects in
# memory; s3s-fs writes files without fsync.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
ROUNDS="${ROUNDS:-3}" COUNT="${COUNT:-2000}" THREADS="${THREADS:-8 32}" LARGE_MIB="${LARGE_MIB:-1024}"
CONCURRENCY="${CONCURRENCY:-64}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

tools=target/bench-tools
[ -x target/release/nimbus ] || cargo build --release -p nimbus
rust_client=benches/objects/target/release/s3-bench
[ -x "$rust_client" ] || cargo build --release --manifest-path benches/objects/Cargo.toml
[ -x "$tools/bin/s3s-fs" ] || cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$tools"
[ -d target/py/boto3 ] || python3 -m pip install --quiet --target target/py/boto3 boto3==1.44.8
[ -d target/py/moto ] || python3 -m pip install --quiet --target target/py/moto "moto[server]==5.1.*"
export AWS_DEFAULT_REGION=us-east-1


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
start_s3sfs() {
  local port; port=$(free_port)
  mkdir -p "$WORK/s3sfs"
  "$tools/bin/s3s-fs" --host 127.0.0.1 --port "$port" --access-key bench --secret-key benchsecret "$WORK/s3sfs" >"$WORK/s3sfs.log" 2>&1 &
  wait_http "http://127.0.0.1:$port/"
  echo "http://127.0.0.1:$port bench benchsecret"
}

load() { # ENDPOINT AK SK ARGS…
  local endpoint=$1 ak=$2 sk=$3; shift 3
  AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk PYTHONPATH=target/py/boto3 python3 benches/objects/s3_load.py "$endpoint" "$@"
}

col() { awk -v c="$1" '{print $c}' "$WORK/rounds" | median; }

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d)"
for server in nimbus moto s3sfs; do
  read -r endpoint ak sk < <("start_$server")
  for threads in $THREADS; do
    rounds=()
    for _ in $(seq "$ROUNDS"); do rounds+=("$(load "$endpoint" "$ak" "$sk" small "$threads" "$COUNT" 4096)"); done
    printf '%s\n' "${rounds[@]}" > "$WORK/rounds"
    echo "$server small 4KiB boto3 threads=$threads: PUT $(col 2)/s p50 $(col 3) ms p99 $(col 4) ms · GET $(col 6)/s p50 $(col 7) ms p99 $(col 8) ms"
  done
  for concurrency in $CONCURRENCY; do
    rounds=()
    for _ in $(seq "$ROUNDS"); do rounds+=("$("$rust_client" "$endpoint" "$ak" "$sk" "$concurrency" "$COUNT" 4096)"); done
    printf '%s\n' "${rounds[@]}" > "$WORK/rounds"
    echo "$server small 4KiB rust-sdk concurrency=$concurrency: PUT $(col 1)/s p50 $(col 2) ms p99 $(col 3) ms · GET $(col 4)/s p50 $(col 5) ms p99 $(col 6) ms"
  done
  if [ "$server" != moto ] || [ "$LARGE_MIB" -le 256 ]; then
    echo "$server large ${LARGE_MIB}MiB boto3: $(load "$endpoint" "$ak" "$sk" large "$LARGE_MIB" | awk '{print "PUT " $2 " MB/s · GET " $4 " MB/s"}')"
    echo "$server large ${LARGE_MIB}MiB rust-sdk: $("$rust_client" "$endpoint" "$ak" "$sk" large "$LARGE_MIB" 64 4 | awk '{print "PUT " $1 " MB/s · GET " $2 " MB/s"}')"
    if [ "$server" = nimbus ]; then
      pid=$(pgrep -f "nimbus serve .*$WORK/nimbus" | head -1)
      echo "nimbus peak RSS after the large object: $(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")"
    fi
  fi
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
done
