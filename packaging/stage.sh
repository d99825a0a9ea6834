#!/usr/bin/env bash
# Builds the file tree both packages ship, once: the agent in a virtualenv at /opt/kinesis-agent,
# /usr/bin/kinesis-agent, /etc/agent.json and /etc/agent.d/ (the unit is placed by each format).
#
# The venv is made by the target's interpreter path (/usr/bin/python3.X) inside a staging root and
# then every mention of the staging path is rewritten to /opt/kinesis-agent, so nothing outside
# build/ is touched. It is bound to that Python minor version (site-packages path, compiled
# wheels), which is why the packages depend on exactly that interpreter.
#
# Usage: packaging/stage.sh   env: BUILD_DIR (build), PKG_PYTHON (/usr/bin/python3), BUILD_PIP
# Writes $BUILD_DIR/stage.env for the format builders; does nothing when that is newer than
# every input.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
PREFIX=/opt/kinesis-agent
BUILD_DIR=$(realpath -m "${BUILD_DIR:-build}")
STAGE=$BUILD_DIR/stage
BUILD_PIP=${BUILD_PIP:-$ROOT_DIR/.venv/bin/pip}
PKG_PYTHON=${PKG_PYTHON:-$(readlink -f /usr/bin/python3 2>/dev/null || true)}

[ -x "$PKG_PYTHON" ] || { echo "stage: no system python3 (set PKG_PYTHON)" >&2; exit 1; }
[ -x "$BUILD_PIP" ] || { echo "stage: $BUILD_PIP missing; run make setup" >&2; exit 1; }
read -r PY_MAJOR_MINOR PY_OK < <("$PKG_PYTHON" -c \
  'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}", int(sys.version_info >= (3, 11)))')
[ "$PY_OK" = 1 ] || { echo "stage: $PKG_PYTHON is $PY_MAJOR_MINOR; the agent needs >= 3.11" >&2; exit 1; }
# /usr/bin/python3.11, not /usr/bin/python3: the venv breaks when python3 moves to 3.12
TARGET_PYTHON=/usr/bin/python$PY_MAJOR_MINOR
[ "$(readlink -f "$TARGET_PYTHON")" = "$(readlink -f "$PKG_PYTHON")" ] || TARGET_PYTHON=$PKG_PYTHON

if [ -f "$BUILD_DIR/stage.env" ] && [ -z "$(find pyproject.toml agent etc packaging/stage.sh \
    "$BUILD_PIP" -newer "$BUILD_DIR/stage.env" -not -path "*/__pycache__*" -print -quit)" ]; then
  exit 0  # up to date
fi

VERSION=$("$PKG_PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')

rm -rf "$STAGE" "$BUILD_DIR/wheel" "$BUILD_DIR/stage.env"
mkdir -p "$STAGE" "$BUILD_DIR/wheel"
"$BUILD_PIP" wheel -q --no-deps -w "$BUILD_DIR/wheel" . >/dev/null
WHEEL=$(ls "$BUILD_DIR"/wheel/kinesis_agent-*.whl)

VENV=$STAGE$PREFIX
"$TARGET_PYTHON" -m venv --without-pip "$VENV"
pip_install() { "$BUILD_PIP" --python "$VENV/bin/python" install -q --no-compile --no-warn-script-location "$@"; }
# systemd-python (journald, sd_notify) is compiled against libsystemd; without it the agent still
# runs, so a machine without the headers builds a package that logs to stderr instead.
WITH_SYSTEMD=1
if ! pip_install "$WHEEL[systemd]" 2>"$BUILD_DIR/systemd-python.log"; then
  echo "stage: systemd-python did not build (see $BUILD_DIR/systemd-python.log); packaging without it" >&2
  WITH_SYSTEMD=0
  pip_install "$WHEEL"
fi

# Rewrite the staging path wherever the install wrote it (script shebangs, pyvenv.cfg, activate).
grep -rlIF --null "$VENV" "$VENV" | xargs -0 -r sed -i "s|$VENV|$PREFIX|g"
find "$VENV" -name direct_url.json -delete  # a file:// URL into this build tree
rm -f "$VENV"/bin/activate.fish "$VENV"/bin/activate.csh "$VENV"/bin/Activate.ps1
# Byte-compile now, with the final paths in tracebacks: /opt is read-only to the service user.
"$VENV/bin/python" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV/lib" >/dev/null
if grep -rlIF "$STAGE" "$VENV" | grep -q .; then
  echo "stage: staging path still present in:" >&2; grep -rlIF "$STAGE" "$VENV" >&2; exit 1
fi

install -d "$STAGE/usr/bin" "$STAGE/etc/agent.d"
ln -s "$PREFIX/bin/kinesis-agent" "$STAGE/usr/bin/kinesis-agent"
# 0640: agent.json may hold awsSecretAccessKey (each package gives it the kinesis-agent group)
install -m 0640 etc/agent.json "$STAGE/etc/agent.json"

cat >"$BUILD_DIR/stage.env" <<ENV
STAGE=$STAGE
VERSION=$VERSION
TARGET_PYTHON=$TARGET_PYTHON
WITH_SYSTEMD=$WITH_SYSTEMD
ENV
