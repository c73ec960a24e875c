#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (installed, pinned, when missing), installs it with
# dpkg, checks what it installed, then removes and purges it again:
#   - `pacs_exporter --version` from PATH is /usr/bin/pacs_exporter, built from this checkout;
#   - the pacs_exporter system user exists and can read the shipped modules.yml, which passes
#     --config.check; so can the Docker image's user (uid 65532) given the package's group,
#     and not without it;
#   - /etc/pacs_exporter/modules.yml and /etc/default/pacs_exporter are conffiles;
#   - `systemd-analyze verify` accepts the installed unit.
# Needs root (dpkg). Refuses to touch an installation of the package it did not make.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
PACKAGE=pacs-exporter
export PATH="$PATH:$HOME/.cargo/bin:/usr/sbin:/sbin"

if [ "$(id -u)" != 0 ]; then
  echo "deb-check.sh installs a package with dpkg: run it as root" >&2
  exit 1
fi
for tool in dpkg systemd-analyze adduser runuser setpriv; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool not found: apt-get install -y dpkg systemd adduser util-linux" >&2
    exit 1
  fi
done
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q "ok installed"; then
  echo "$PACKAGE is already installed on this machine; remove it first (dpkg -r $PACKAGE)" >&2
  exit 1
fi

deb=$(cargo deb --locked 2>&1 | tee /dev/stderr | tail -n 1)
case "$deb" in
  *.deb) ;;
  *) echo "cargo deb did not report a package" >&2; exit 1 ;;
esac
echo "built $deb"

cleanup() {
  dpkg -r "$PACKAGE" >/dev/null || true
  dpkg -P "$PACKAGE" >/dev/null || true
}
trap cleanup EXIT
dpkg -i "$deb"

echo "--- installed files"
dpkg -L "$PACKAGE"
binary=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v pacs_exporter)
if [ "$binary" != /usr/bin/pacs_exporter ]; then
  echo "pacs_exporter on PATH is $binary, not the package's /usr/bin/pacs_exporter" >&2
  exit 1
fi
echo "--- pacs_exporter --version"
version=$(pacs_exporter --version)
echo "$version"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
case "$version" in
  "pacs_exporter, version "*"revision: $revision)"*) ;;
  *) echo "--version does not name revision $revision" >&2; exit 1 ;;
esac

echo "--- conffiles"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' "$PACKAGE")
echo "$conffiles"
for file in /etc/pacs_exporter/modules.yml /etc/default/pacs_exporter; do
  if ! grep -q " $file " <<<"$conffiles"; then
    echo "$file is not a conffile" >&2
    exit 1
  fi
done

echo "--- system user"
getent passwd pacs_exporter
runuser -u pacs_exporter -- /usr/bin/pacs_exporter --config.check \
  --config.file=/etc/pacs_exporter/modules.yml

# The Docker image's user (uid 65532) mounting the package's /etc/pacs_exporter: refused on
# its own, readable with the pacs_exporter group added (README: docker run --group-add).
echo "--- the image's user, with and without the package's group"
gid=$(getent group pacs_exporter | cut -d: -f3)
if setpriv --reuid=65532 --regid=65532 --clear-groups /usr/bin/pacs_exporter --config.check \
  --config.file=/etc/pacs_exporter/modules.yml 2>/dev/null; then
  echo "uid 65532 read /etc/pacs_exporter without the package's group" >&2
  exit 1
fi
setpriv --reuid=65532 --regid=65532 --groups="$gid" /usr/bin/pacs_exporter --config.check \
  --config.file=/etc/pacs_exporter/modules.yml

unit=$(dpkg -L "$PACKAGE" | grep '/systemd/system/pacs_exporter\.service$')
echo "--- systemd-analyze verify $unit"
systemd-analyze verify "$unit"

cleanup
trap - EXIT
if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q "installed"; then
  echo "$PACKAGE is still installed after dpkg -r and dpkg -P" >&2
  exit 1
fi
echo "deb-check: $deb installs, runs and is removed cleanly"
