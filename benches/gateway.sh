#!/usr/bin/env bash
# The cost of the gateway's stages on the invocation path: the hello component through a route
# with no stage, with a rate limit that never trips, with a `jwt` authorizer (one ES256 and
# one RS256 token, each verified once and then served from the verified-token cache), with
# an `auth` authorizer (a token of the app's own [auth]) and with an `api_key` authorizer (one
# key, no usage plan, and one with a plan that never trips), side by side in one server and one
# run, under wrk. Then the app's sign-in throughput (POST /auth/v1/token, Argon2id at 19 MiB,
# 2 passes, 1 lane, one user). Tokens are signed with openssl from the test keys
# in tests/fixtures/jwt; the key set is served by a local static HTTP server.
#
#   bash benches/gateway.sh          # ROUNDS=3 DURATION=10s CONNECTIONS=32
#
# Needs: wrk (installed from Debian if missing), openssl, python3, curl.
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

cargo build --release -p nimbus >&2
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml >&2
NIMBUS=$ROOT/target/release/nimbus
KEYS=$ROOT/tests/fixtures/jwt
ISSUER=https://issuer.bench

# The key set and two tokens, from the fixture keys: openssl signs, python3 reshapes (DER
# ECDSA signatures to JOSE's r||s, the public numbers to JWK fields).
b64url() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode())'; }
mkdir -p "$WORK/issuer"
RSA_N=$(openssl rsa -in "$KEYS/rs256.pem" -noout -modulus 2>/dev/null | cut -d= -f2 | xxd -r -p | b64url)
EC_XY=$(openssl pkey -in "$KEYS/es256.pem" -pubout -outform DER | tail -c 64 | xxd -p -c 64)
EC_X=$(echo "${EC_XY:0:64}" | xxd -r -p | b64url)
EC_Y=$(echo "${EC_XY:64:64}" | xxd -r -p | b64url)
cat > "$WORK/issuer/jwks.json" <<JSON
{"keys": [
  {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256", "x": "$EC_X", "y": "$EC_Y"},
  {"kty": "RSA", "kid": "rs", "alg": "RS256", "e": "AQAB", "n": "$RSA_N"}
]}
JSON
token() { # $1 = ES256 | RS256, $2 = kid, $3 = key file
  local header claims input
  header=$(printf '{"alg":"%s","kid":"%s","typ":"JWT"}' "$1" "$2" | b64url)
  claims=$(printf '{"iss":"%s","aud":"bench","sub":"user-1","exp":%d}' "$ISSUER" $(( $(date +%s) + 86400 )) | b64url)
  input="$header.$claims"
  if [ "$1" = ES256 ]; then
    printf '%s' "$input" | openssl dgst -sha256 -sign "$3" | python3 -c '
import base64, sys
der = sys.stdin.buffer.read()
def integer(at):
    assert der[at] == 2
    n = der[at + 1]
    return der[at + 2:at + 2 + n], at + 2 + n
r, at = integer(2)
s, _ = integer(at)
raw = r[-32:].rjust(32, b"\0") + s[-32:].rjust(32, b"\0")
print(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())' | sed "s/^/$input./"
  else
    printf '%s.%s\n' "$input" "$(printf '%s' "$input" | openssl dgst -sha256 -sign "$3" | b64url)"
  fi
}
ES_TOKEN=$(token ES256 es "$KEYS/es256.pem")
RS_TOKEN=$(token RS256 rs "$KEYS/rs256.pem")

JWKS_PORT=$(free_port)
python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 --directory "$WORK/issuer" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$JWKS_PORT/jwks.json"

port=$(free_port)
dir=$WORK/nimbus
mkdir -p "$dir/app"
cp "$ROOT/target/guests/wasm32-wasip2/release/hello.wasm" "$dir/app/hello.wasm"
cat > "$dir/app/nimbus.toml" <<TOML
name = "bench"

[auth]
issuer = "https://login.bench/auth/v1"
attempts_per_ip = { rate = "1000000/s" }

[authorizer.own]
kind = "auth"

[authorizer.keys]
kind = "api_key"

[authorizer.users]
kind = "jwt"
issuer = "$ISSUER"
audience = "bench"
jwks_url = "http://127.0.0.1:$JWKS_PORT/jwks.json"

[function.hello]
component = "hello.wasm"
instance = "reuse"
max_concurrency = 256

[[route]]
path = "/plain"
function = "hello"

[[route]]
path = "/limited"
function = "hello"
rate_limit = { rate = "1000000/s" }

[[route]]
path = "/jwt"
function = "hello"
auth = "users"

[[route]]
path = "/own"
function = "hello"
auth = "own"

[[route]]
path = "/key"
function = "hello"
auth = "keys"
TOML
NIMBUS_LOG=warn "$NIMBUS" serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 --aws-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -f "$dir/data/admin.url" ] && break; sleep 0.05; done
"$NIMBUS" --data-dir "$dir/data" deploy "$dir/app" --json >/dev/null
BASE=http://127.0.0.1:$port
wait_http "$BASE/plain"
SIGN_IN='{"email": "bench@example.com", "password": "correct horse 1"}'
OWN_TOKEN=$(curl -s -X POST -H 'Content-Type: application/json' -d "$SIGN_IN" "$BASE/auth/v1/signup" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
API_KEY=$("$NIMBUS" --data-dir "$dir/data" apikeys create --app bench 2>/dev/null)
PLAN_KEY=$("$NIMBUS" --data-dir "$dir/data" apikeys create --app bench --rate 1000000/s --quota 1000000000 2>/dev/null)
cat > "$WORK/sign-in.lua" <<LUA
wrk.method = "POST"
wrk.body = '$SIGN_IN'
wrk.headers["Content-Type"] = "application/json"
LUA

declare -A RESULTS
CONFIGS=("no stage" "rate limit (never trips)" "jwt ES256" "jwt RS256" "auth (own tokens)" "api_key" "api_key with a plan")
measure() { # $1 = config
  local url args=()
  case $1 in
    "no stage") url=$BASE/plain ;;
    "rate limit (never trips)") url=$BASE/limited ;;
    "jwt ES256") url=$BASE/jwt; args=(-H "Authorization: Bearer $ES_TOKEN") ;;
    "jwt RS256") url=$BASE/jwt; args=(-H "Authorization: Bearer $RS_TOKEN") ;;
    "auth (own tokens)") url=$BASE/own; args=(-H "Authorization: Bearer $OWN_TOKEN") ;;
    "api_key") url=$BASE/key; args=(-H "x-api-key: $API_KEY") ;;
    "api_key with a plan") url=$BASE/key; args=(-H "x-api-key: $PLAN_KEY") ;;
  esac
  [ "$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "$url")" = 200 ] || { echo "$1: $url does not answer 200" >&2; exit 1; }
  DURATION=2s run_wrk "$url" "$CONNECTIONS" "${args[@]}" >/dev/null # warm-up
  run_wrk "$url" "$CONNECTIONS" "${args[@]}"
}
for round in $(seq 1 "$ROUNDS"); do
  for config in "${CONFIGS[@]}"; do
    RESULTS["$config"]+="$(measure "$config")"$'\n'
    echo "round $round $config: $(echo -n "${RESULTS[$config]}" | tail -n 1)" >&2
  done
done

base=$(echo -n "${RESULTS[no stage]}" | awk '{print $1}' | median)
echo "| route | req/s (median of $ROUNDS) | vs no stage | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|---:|"
for config in "${CONFIGS[@]}"; do
  rows=${RESULTS[$config]}
  rps=$(echo -n "$rows" | awk '{print $1}' | median)
  p50=$(echo -n "$rows" | awk '{print $2}' | median)
  p99=$(echo -n "$rows" | awk '{print $3}' | median)
  echo "| $config | $rps | $(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a / b}') | $p50 | $p99 |"
done

# Sign-in: CPU-bound by design (Argon2id); a few connections are enough to saturate it.
SIGNINS=""
for round in $(seq 1 "$ROUNDS"); do
  SIGNINS+="$(run_wrk "$BASE/auth/v1/token?grant_type=password" 8 -s "$WORK/sign-in.lua")"$'\n'
  echo "round $round sign-in: $(echo -n "$SIGNINS" | tail -n 1)" >&2
done
echo
echo "| sign-in (POST /auth/v1/token, Argon2id m=19456 KiB t=2 p=1) | req/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|"
echo "| password grant, 8 connections | $(echo -n "$SIGNINS" | awk '{print $1}' | median) | $(echo -n "$SIGNINS" | awk '{print $2}' | median) | $(echo -n "$SIGNINS" | awk '{print $3}' | median) |"
