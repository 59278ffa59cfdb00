#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: installs the real peers the
# tests talk to (Postfix, Dovecot, swaks, curl, promtool, ...), then checks formatting,
# lints, runs every unit and integration test, and gives each fuzz target a short run.
#
#   bash tests/run.sh            everything
#   FUZZ_SECONDS=0 bash tests/run.sh   everything but the fuzz runs
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing the peers the tests need"
bash tests/peers/install.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets
# Doc tests are off for the library (no examples in docs), so --all-targets covers all.

if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
    step "fuzz targets, ${FUZZ_SECONDS:-20} s each"
    bash fuzz/run.sh "${FUZZ_SECONDS:-20}"
fi

step "all tests passed"
