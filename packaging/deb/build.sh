#!/usr/bin/env bash
# Builds $DIST_DIR/kinesis-agent_<version>_<arch>.deb from the tree packaging/stage.sh made; prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=$(realpath -m "${BUILD_DIR:-build}")
DIST_DIR=$(realpath -m "${DIST_DIR:-dist}")
# shellcheck source=/dev/null
. "$BUILD_DIR/stage.env"
ARCH=$(dpkg --print-architecture)
DEB_VERSION=$(echo "$VERSION" | sed -E 's/^([0-9.]+)((a|b|rc|\.dev)[0-9]*)$/\1~\2/')
ROOT=$BUILD_DIR/deb/root
OUT=$DIST_DIR/kinesis-agent_${DEB_VERSION}_${ARCH}.deb

rm -rf "$BUILD_DIR/deb"
mkdir -p "$BUILD_DIR/deb" "$DIST_DIR"
cp -al "$STAGE" "$ROOT"
install -D -m 0644 systemd/kinesis-agent.service "$ROOT/lib/systemd/system/kinesis-agent.service"

DEPENDS="$(basename "$TARGET_PYTHON"), passwd"
[ "$WITH_SYSTEMD" = 1 ] && DEPENDS="$DEPENDS, libsystemd0"
install -d "$ROOT/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$ROOT/DEBIAN/"
echo /etc/agent.json >"$ROOT/DEBIAN/conffiles"
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: kinesis-agent
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: kinesis-agent maintainers <maintainers@kinesis-agent.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: $DEPENDS
Section: admin
Priority: optional
Description: log shipper compatible with the AWS Kinesis Agent
 Tails log files and ships every line, exactly once or at least once, into
 Kinesis Data Streams, Firehose or an embedded Kinesis-like stream store.
 Reads the AWS Kinesis Agent's agent.json unchanged; runs as a systemd
 notify service with a watchdog. The application lives in a virtualenv
 under /opt/kinesis-agent.
CONTROL
# gzip: xz takes ~10x longer on the botocore data for a few MB less
dpkg-deb --root-owner-group -Zgzip -z6 --build "$ROOT" "$OUT" >/dev/null
echo "$OUT"
