#!/usr/bin/env bash
# Release checks, run by .ci/run after the code's tests (scripts/test.sh): the Debian package
# (built, installed, run and removed, as root), the Dockerfile (hadolint, and its COPY set built
# outside git with and without the revision variables), the Kubernetes manifests and the Grafana
# dashboard against their published schemas, and a fuzz smoke pass of every target on nightly
# Rust. The checks install their own pinned tools (cargo-deb, hadolint, kubeconform, npm's
# @grafana/schema and TypeScript, cargo-fuzz); none of them exercises a PACS. They are the
# modules of tests/it that the `release-checks` feature compiles (Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing npm for the Grafana schema check"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q npm
  else
    echo "npm is missing; install it as root with: apt-get update && apt-get install -y npm" >&2
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

cargo clippy --all-targets --locked --features release-checks -- -D warnings
cargo test --locked --features release-checks --test it -- \
  packaging:: kubernetes:: build_info:: deploy::grafana_dashboard_fits_grafanas_schema

# Every fuzz target for a short while (fuzz/; the committed corpora are also replayed on stable
# by tests/it/fuzz_regressions.rs in the code's tests).
bash scripts/fuzz-smoke.sh 20
