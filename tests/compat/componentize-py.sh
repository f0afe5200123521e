#!/usr/bin/env bash
# Compatibility check: a Python component built with componentize-py (CPython compiled into a
# wasi:http/proxy component, ~18 MB) deploys and serves on nimbus unmodified, with instance
# reuse keeping Python globals. Needs python3 with pip (installs componentize-py from PyPI).
# Run by .ci/run after the test suite; uses target/debug/nimbus.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NIMBUS=$ROOT/target/debug/nimbus
[ -x "$NIMBUS" ] || cargo build -p nimbus
command -v componentize-py >/dev/null || python3 -m pip install -q componentize-py==0.25.1

# The wasi:http WIT files that ship with the wasmtime-wasi-http crate nimbus links.
WIT=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "wasmtime-wasi-http":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "wit"))')

WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cp tests/compat/python/app.py tests/compat/python/nimbus.toml "$WORK/"
(cd "$WORK" && componentize-py -q -d "$WIT" -w wasi:http/proxy componentize app -o app.wasm)

"$NIMBUS" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do [ -f "$WORK/data/gateway.url" ] && break; sleep 0.05; done
"$NIMBUS" --data-dir "$WORK/data" deploy "$WORK" >/dev/null
GATEWAY=$(cat "$WORK/data/gateway.url")

first=$(curl -fsS "$GATEWAY/py/first?x=1")
second=$(curl -fsS "$GATEWAY/py/second")
expect() { [ "$1" = "$2" ] || { echo "componentize-py: expected '$2', got '$1'" >&2; exit 1; }; }
expect "$first" "Hello from Python! call 1 path /py/first?x=1"
expect "$second" "Hello from Python! call 2 path /py/second"
echo "componentize-py component: ok"
