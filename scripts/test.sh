#!/usr/bin/env bash
# Runs the code's tests on stable Rust: formatting, lints, unit and property tests, and the
# integration tests against real peers (Orthanc, DCMTK, Prometheus, Alertmanager's amtool, headless Chromium,
# systemd-analyze, pynetdicom's qrscp). Installs missing peers from Debian's packages when run as
# root; otherwise says exactly what to install. The Python peers go into a virtual environment at
# target/python-peers, with pinned versions from PyPI (scripts/python-peers.sh; python3's venv
# module is enough, no Debian package is needed for it on the machines we test on). A missing
# peer is never skipped: the tests that need it fail. The release checks (package, images,
# schemas, fuzz smoke pass) are scripts/release-checks.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# binary -> Debian package
declare -A PEERS=(
  [Orthanc]=orthanc
  [dcmqrscp]=dcmtk
  [echoscu]=dcmtk
  [storescu]=dcmtk
  [storescp]=dcmtk
  [findscu]=dcmtk
  [wlmscpfs]=dcmtk
  [dump2dcm]=dcmtk
  [prometheus]=prometheus
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [chromium]=chromium
  [systemd-analyze]=systemd
)

missing=()
for bin in "${!PEERS[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1; then
    missing+=("${PEERS[$bin]}")
  fi
done
if ((${#missing[@]})); then
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" = 0 ]; then
    echo "installing test peers: $packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q $packages
  else
    echo "missing test peers; install them as root with:" >&2
    echo "  apt-get update && apt-get install -y $packages" >&2
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin"
bash scripts/python-peers.sh

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
