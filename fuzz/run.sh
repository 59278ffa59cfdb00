#!/usr/bin/env bash
# Gives every fuzz target a short run: bash fuzz/run.sh [SECONDS]
# Installs cargo-fuzz if missing. The stable toolchain builds the targets with
# RUSTC_BOOTSTRAP=1; `-s none` skips AddressSanitizer, which safe Rust does not need and
# which doubles the build time. `-O` builds without debug assertions: mail-parser has
# `debug_assert!(false)` on paths hostile input reaches, which release builds (and so the
# daemon) never execute.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
    echo "fuzzing $target for ${seconds}s"
    dict=()
    [ -f "$target.dict" ] && dict=("-dict=$target.dict")
    seeds=()
    [ "$target" = ingest ] && seeds=(../tests/corpus)
    mkdir -p "corpus/$target"
    cargo fuzz run -O -s none "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 "${dict[@]}"
done
