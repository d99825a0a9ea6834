#!/usr/bin/env bash
# Builds $DIST_DIR/kinesis-agent-<version>-1.<arch>.rpm from the tree packaging/stage.sh made; prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=$(realpath -m "${BUILD_DIR:-build}")
DIST_DIR=$(realpath -m "${DIST_DIR:-dist}")
# shellcheck source=/dev/null
. "$BUILD_DIR/stage.env"
command -v rpmbuild >/dev/null || { echo "rpm: rpmbuild missing; run scripts/bootstrap-system.sh" >&2; exit 1; }
RPM_VERSION=$(echo "$VERSION" | sed -E 's/^([0-9.]+)((a|b|rc|\.dev)[0-9]*)$/\1~\2/')
TOP=$BUILD_DIR/rpm
rm -rf "$TOP"
mkdir -p "$TOP" "$DIST_DIR"
# --nodeps: the build host is Debian, whose dpkg database rpm cannot see
rpmbuild -bb --nodeps --quiet \
  --define "_topdir $TOP" \
  --define "_rpmdir $DIST_DIR" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "_unitdir /usr/lib/systemd/system" \
  --define "version $RPM_VERSION" \
  --define "stage $STAGE" \
  --define "unit $PWD/systemd/kinesis-agent.service" \
  --define "target_python $TARGET_PYTHON" \
  --define "with_systemd $WITH_SYSTEMD" \
  packaging/rpm/kinesis-agent.spec >"$TOP/rpmbuild.log" 2>&1 || { cat "$TOP/rpmbuild.log" >&2; exit 1; }
echo "$DIST_DIR/kinesis-agent-$RPM_VERSION-1.$(rpm --eval '%{_arch}').rpm"
