#!/usr/bin/env bash
# Runs every fuzz target (fuzz/) for a short while with libFuzzer on nightly Rust; fails on
# any crash, and when the nightly toolchain is missing (a smoke pass that skips proves
# nothing). Usage: scripts/fuzz-smoke.sh [seconds per target, default 20]
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-smoke: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
targets=$(cargo +nightly fuzz list)
if [ -z "$targets" ]; then
    echo "fuzz-smoke: no fuzz targets found" >&2
    exit 1
fi
for target in $targets; do
    echo "fuzz-smoke: $target for ${seconds}s"
    # The committed corpus is read but not written to; new inputs go to a scratch directory.
    scratch="$(mktemp -d)"
    if ! cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10; then
        rm -rf "$scratch"
        echo "fuzz-smoke: $target failed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    rm -rf "$scratch"
done
echo "fuzz-smoke: all targets ran without a crash"
