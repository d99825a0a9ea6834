#!/usr/bin/env bash
# Installs a built .deb or .rpm into a throwaway root and runs commands there, so a package can be
# tried without touching this machine: the root is a copy-on-write view of / (overlayfs on tmpfs,
# in a private mount namespace) with /work, /root, /home, /opt and /tmp emptied, so the package
# can only use what it ships and what its dependencies (the system python3.11) provide.
# Everything vanishes when the script exits.
#
# Usage: packaging/try-in-root.sh PACKAGE [SHELL-COMMANDS]   (needs root: mount, chroot)
# SHELL-COMMANDS run in the root after the install, with `sh -c`, as root.
set -euo pipefail
if [ -z "${_TRY_IN_ROOT_NS:-}" ]; then
  exec env _TRY_IN_ROOT_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
fi
PACKAGE=$(realpath "$1")
COMMANDS=${2:-true}

T=$(mktemp -d)
mount -t tmpfs -o mode=0755 kinesis-agent-try "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
R=$T/root
hide() { mount -t tmpfs -o mode=0755 try-hidden "$1"; }
for d in work root home tmp; do
  [ -d "$R/$d" ] && hide "$R/$d"
done
# /opt itself stays a plain directory, as on a fresh system, so dpkg may remove it
for d in "$R"/opt/*; do
  [ -d "$d" ] && hide "$d"
done
chmod 1777 "$R/tmp"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
# Not a booted system: maintainer scripts must take their no-systemd path.
rm -rf "$R/run/systemd/system"

cp "$PACKAGE" "$R/tmp/"
name=$(basename "$PACKAGE")
in_root() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    chroot "$R" sh -c "$1"
}
case "$name" in
  *.deb) in_root "DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/$name >/tmp/install.log 2>&1 || { cat /tmp/install.log >&2; exit 1; }" ;;
  # the root is Debian: its rpm database is empty, so dependencies cannot be resolved there
  *.rpm) in_root "rpm -i --nodeps /tmp/$name" ;;
  *) echo "try-in-root: not a .deb or .rpm: $PACKAGE" >&2; exit 2 ;;
esac
in_root "$COMMANDS"
