#!/usr/bin/env bash
# nimbus's memory while one large object streams in: resident memory sampled every 200 ms
# during a GIB-GiB upload (`nimbus cp`, one streamed PUT) and its download.
#
#   bash benches/objects_memory.sh        # GIB=5
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
GIB="${GIB:-5}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
[ -x target/release/nimbus ] || cargo build --release -p nimbus
nimbus=target/release/nimbus
port=$(free_port)
$nimbus serve --listen 127.0.0.1:0 --admin-listen "127.0.0.1:$port" --aws-listen 127.0.0.1:0 \
  --data-dir "$WORK/data" >"$WORK/nimbus.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$WORK/data/admin.url" ] && break; sleep 0.05; done
export NIMBUS_DATA_DIR="$WORK/data"
$nimbus buckets create big >/dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
sample() { # COMMAND… : run it, printing the highest RSS (KiB) seen meanwhile
  "$@" >/dev/null 2>&1 &
  local job=$! max=0 now
  while kill -0 "$job" 2>/dev/null; do now=$(rss); [ "$now" -gt "$max" ] && max=$now; sleep 0.2; done
  wait "$job"
  echo "$max"
}
truncate -s "${GIB}G" "$WORK/file"
idle=$(rss)
start=$(date +%s.%N)
up=$(sample $nimbus cp "$WORK/file" s3://big/file)
up_s=$(echo "$(date +%s.%N) - $start" | bc)
rm "$WORK/file"
start=$(date +%s.%N)
down=$(sample $nimbus cp s3://big/file "$WORK/back")
down_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d)"
echo "nimbus RSS idle ${idle} KiB; during a ${GIB} GiB upload max ${up} KiB (${up_s} s); during its download max ${down} KiB (${down_s} s)"
