#!/usr/bin/env bash
# Run every fuzz target briefly (default 30 s each; FUZZ_SECONDS to change). cargo-fuzz is
# installed if missing; `--sanitizer none` works on the stable toolchain (coverage-guided, no
# ASan — the code under test has no unsafe).
set -euo pipefail
cd "$(dirname "$0")"
cargo fuzz --version 2>/dev/null | grep -q " 0.13.2" || cargo install cargo-fuzz --version 0.13.2 --locked
seconds="${FUZZ_SECONDS:-30}"
for target in pattern manifest s3_request table_expression kv_request jwt auth_request secret_request; do
  # New inputs go to a scratch corpus; the seeds in seeds/ are read-only.
  mkdir -p "target/corpus/$target"
  # s3_request is built as the shipped binary is (-O: no overflow checks): s3s 0.14.1's SigV4
  # date parser computes `c - b'0'` before checking `c` is a digit, which panics only with
  # overflow checks on and is harmless (wrapped, then discarded) without them.
  flags=()
  [ "$target" = s3_request ] && flags=(-O)
  cargo fuzz run "$target" --sanitizer none "${flags[@]}" "target/corpus/$target" "seeds/$target" \
    -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 4
done
