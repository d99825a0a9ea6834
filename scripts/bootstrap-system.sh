#!/usr/bin/env bash
# Installs the Debian packages the project needs (headers for systemd-python, packaging tools),
# only those missing, and only when we can (root + apt-get). Safe to run again.
set -euo pipefail
# rpm: rpmbuild for `make rpm`; systemd: systemd-analyze for the unit checks. Extra packages
# may be named as arguments: `make bench` asks for rsyslog, the reference shipper it measures
# (its own instance, never the system's), so `make test` does not install a syslog daemon.
want=(libsystemd-dev pkg-config rpm systemd "$@")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "bootstrap: cannot install ${missing[*]} (not root or no apt-get); continuing without them" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
