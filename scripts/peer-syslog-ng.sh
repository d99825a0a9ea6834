#!/usr/bin/env bash
# Puts syslog-ng (Debian's syslog-ng-core) in DEST for `make bench`, which measures it as a
# reference shipper, WITHOUT installing the package: syslog-ng-core Conflicts with
# system-log-daemon, so `apt-get install syslog-ng-core` would remove rsyslog, the other reference.
# Its .deb is fetched with `apt-get download` and unpacked with `dpkg -x` into DEST; only the shared
# libraries it links are apt-installed. Nothing is started or enabled, and dpkg never lists it (apt
# cannot see a conflict). The benchmark runs DEST/usr/sbin/syslog-ng as its own foreground instance.
#
#   scripts/peer-syslog-ng.sh DEST          (make bench: DEST = .venv/peers/syslog-ng)
#
# Safe to run again: an unpack of the candidate version that starts is left alone. The unpack goes
# to a temporary directory renamed into place, so an interrupted run leaves no half-unpacked DEST.
set -euo pipefail
dest="${1:?usage: $0 DEST}"
pkg=syslog-ng-core
root=$([ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo yes || echo no)

# Does the unpacked syslog-ng start (its libraries all resolve)?
runs() {
  LD_LIBRARY_PATH="$dest/usr/lib/syslog-ng${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$dest/usr/sbin/syslog-ng" --version >/dev/null 2>&1
}

candidate() { apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}'; }

version=$(candidate)
if [[ -z "$version" || "$version" == "(none)" ]] && [ "$root" = yes ]; then
  apt-get update -qq  # a fresh image has no package lists yet
  version=$(candidate)
fi
if [[ -z "$version" || "$version" == "(none)" ]]; then
  if [ -x "$dest/usr/sbin/syslog-ng" ]; then exit 0; fi  # offline: keep what is there
  echo "peer-syslog-ng: apt knows no $pkg; the benchmark runs without syslog-ng" >&2
  exit 0
fi
if [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ] && runs; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$dest.new"' EXIT
chmod 755 "$tmp"  # apt-get download writes as _apt where it can
(cd "$tmp" && apt-get download -q "$pkg=$version" >"$tmp/download.log" 2>&1) || {
  cat "$tmp/download.log" >&2
  echo "peer-syslog-ng: could not download $pkg $version; the benchmark runs without it" >&2
  exit 0
}
deb=$(echo "$tmp"/"$pkg"_*.deb)

# The libraries it links: the first alternative of each Depends entry that is a library
# (libc6, libssl3, libsystemd0 are there already on Debian; the others are small).
mapfile -t libs < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' |
  grep '^lib')
missing=()
for p in "${libs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$root" = yes ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null
  else
    echo "peer-syslog-ng: cannot install ${missing[*]} (not root); syslog-ng may not start" >&2
  fi
fi

rm -rf "$dest.new"
mkdir -p "$dest.new"
dpkg -x "$deb" "$dest.new"
echo "$version" >"$dest.new/.version"
rm -rf "$dest"
mv "$dest.new" "$dest"
if runs; then
  echo "peer-syslog-ng: syslog-ng $version unpacked in $dest"
else
  echo "peer-syslog-ng: syslog-ng $version unpacked in $dest but does not start" >&2
fi
