#!/usr/bin/env bash
# Installs the Python test peers, pynetdicom's bundled `qrscp` application (a Query/Retrieve
# SCP on SQLAlchemy + SQLite), into a virtual environment at target/python-peers, every package
# pinned: the tests assert what these versions do. Prints nothing on success; fails loudly,
# with its output, otherwise. Idempotent: when the pinned set is already installed it only
# checks that the environment's interpreter still runs.
#
# Needs python3 with its venv module (a Debian python3 needs the `python3-venv` package for
# that) and, the first time, access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-peers
# Everything the environment holds, dependencies included.
pins=(pynetdicom==3.0.4 pydicom==3.0.2 SQLAlchemy==2.1.9 typing_extensions==4.16.0)
stamp=$venv/pinned.txt

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ] &&
  "$venv/bin/python" -c '' 2>/dev/null; then
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() {
  echo "scripts/python-peers.sh: $1" >&2
  cat "$log" >&2
  exit 1
}

rm -rf "$venv"
python3 -m venv "$venv" >"$log" 2>&1 ||
  fail "python3 -m venv $venv failed (on Debian: apt-get install -y python3-venv)"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet --no-input \
  "${pins[@]}" >"$log" 2>&1 || fail "pip install ${pins[*]} failed"
"$venv/bin/python" -m pip check >"$log" 2>&1 || fail "pip check failed"
"$venv/bin/python" -m pynetdicom qrscp --version >"$log" 2>&1 ||
  fail "python -m pynetdicom qrscp does not run"
echo "${pins[*]}" >"$stamp"
