#!/usr/bin/env bash
# Installs the Debian packages the project needs (headers for systemd-python, packaging tools,
# the real programs the tests run against), only those missing, and only when we can (root +
# apt-get). Safe to run again.
set -euo pipefail
# rpm: rpmbuild for `make rpm`; systemd: systemd-analyze for the unit checks; logrotate,
# nginx-light and apache2-bin: the real rotation tool and web servers of tests/realworld (each
# started by the tests as its own unprivileged process on loopback, never as the system's service;
# apache2-bin is the server alone, ~6 MB, without the apache2 package's service and site setup).
# Extra packages may be named as arguments: `make bench` asks for rsyslog, the reference shipper
# it measures (its own instance, never the system's), so `make test` does not install a syslog
# daemon. The argument syslog-ng is not a package: it is the second reference, which cannot be
# installed beside rsyslog (Debian's syslog-ng-core conflicts with it), so scripts/peer-syslog-ng.sh
# unpacks it into $PEERS_DIR/syslog-ng (default: the checkout's .venv/peers) and installs only its
# libraries.
extra=()
for arg in "$@"; do
  if [ "$arg" = syslog-ng ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    bash "$here/peer-syslog-ng.sh" "${PEERS_DIR:-$(dirname "$here")/.venv/peers}/syslog-ng"
  else
    extra+=("$arg")
  fi
done
want=(libsystemd-dev pkg-config rpm systemd logrotate nginx-light apache2-bin ${extra[@]+"${extra[@]}"})
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
# A package's postinst starts its service through invoke-rc.d (nginx would listen on :80 as root,
# rsyslog would take over /dev/log). policy-rc.d answering 101 ("action forbidden") stops that,
# only for the length of this install; one that was already there is left alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# kinesis-agent bootstrap: no service starts during package installs\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# ...and nginx's package enables its unit, so a machine that boots systemd would run the system
# nginx on :80. The tests start their own: the system's is disabled (works without a running
# systemd). Only when this run installed it: an nginx that was already there is the admin's.
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null; then
  systemctl disable nginx >/dev/null 2>&1 || true
fi
