#!/usr/bin/env bash
# Run every fuzz target briefly (default 30 s each; FUZZ_SECONDS to change). cargo-fuzz is
# installed if missing; `--sanitizer none` works on the stable toolchain (coverage-guided, no
# ASan — the code under test has no unsafe).
set -euo pipefail
cd "$(dirname "$0")"
cargo fuzz --version 2>/dev/null | grep -q " 0.13.2" || cargo install cargo-fuzz --version 0.13.2 --locked
seconds="${FUZZ_SECONDS:-30}"
for target in pattern manifest; do
  # New inputs go to a scratch corpus; the seeds in seeds/ are read-only.
  mkdir -p "target/corpus/$target"
  cargo fuzz run "$target" --sanitizer none "target/corpus/$target" "seeds/$target" \
    -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 4
done
