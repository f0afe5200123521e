# Helpers shared by the benchmark scripts (sourced, not run).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run_wrk URL CONNECTIONS [WRK ARGS…] → "req/s p50_ms p99_ms" over $DURATION; fails on any
# non-2xx answer.
run_wrk() {
  wrk -t1 -c"$2" -d"$DURATION" --latency "${@:3}" "$1" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END { if (bad != "") { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 } printf "%.0f %.3f %.3f\n", rps, ms(p50), ms(p99) }'
}

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null); }

# wait_http URL: until it answers at all (any status), 10 s at most.
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

# wasmtime_cli: the path of wasmtime-cli 48.0.8 (the wasmtime nimbus embeds), from PATH or
# $WASMTIME, else installed with cargo into target/bench-tools.
wasmtime_cli() {
  local wasmtime=${WASMTIME:-$(command -v wasmtime || true)}
  if [ -z "$wasmtime" ] || ! "$wasmtime" --version | grep -q '^wasmtime 48\.0\.8'; then
    wasmtime=$PWD/target/bench-tools/bin/wasmtime
    [ -x "$wasmtime" ] || cargo install wasmtime-cli --version 48.0.8 --locked --root "$PWD/target/bench-tools" >&2
  fi
  echo "$wasmtime"
}
