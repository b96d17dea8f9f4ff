#!/usr/bin/env bash
# Test an aarch64 (or armv7l) wheel of edge-yolox on an emulated ARM Debian (qemu user mode, no binfmt, no disk
# image): import it, compare its C++ postprocess with the numpy reference on real model outputs recorded here,
# then `edge-yolox run` on dog.jpg with the target's NCNN wheel and the shared NCNN model.
# With --pi-os: the wheel installed as the README tells a Raspberry Pi user instead: Debian's python3-numpy,
# python3-opencv and python3-yaml, a venv made with --system-site-packages, `pip install "numpy<2" WHEEL[ncnn]` in
# it (pip itself runs emulated, so it resolves against Debian's packages and PyPI as on a Pi), then `edge-yolox run`
# and `edge-yolox doctor`, checking that Debian's numpy and OpenCV are the ones imported.
#
# Usage: scripts/test-aarch64.sh [--wheel PATH] [--suite bookworm|bullseye|trixie] [--arch aarch64|armv7l] [--pi-os]
#   --wheel   default: the newest matching wheel in wheelhouse/ (scripts/build-wheels.sh --arch ARCH)
#   --suite   the Debian release whose Python runs the test: bullseye 3.9, bookworm 3.11 (default), trixie 3.13
#   --arch    aarch64 (default) or armv7l (32-bit: numpy, yaml and OpenCV come from Debian, PyPI has no wheels)
#   --pi-os   the Raspberry Pi OS install path above (bookworm, trixie)
# Needs (Debian): debootstrap qemu-user-static, root (debootstrap), network to Debian and PyPI the first time.
# Environment: EDGE_YOLOX_WHEEL_CACHE (default ~/.cache/edge-yolox-wheels) keeps the root filesystem and the
# aarch64 dependencies; EDGE_YOLOX_SHARED_DATA (default ../shared/data) the real models and images; HOST_PYTHON
# (default python3) a host Python with edge_yolox, onnxruntime and opencv to record the model outputs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGE_YOLOX_WHEEL_CACHE:-$HOME/.cache/edge-yolox-wheels}
DATA=${EDGE_YOLOX_SHARED_DATA:-$ROOT/../shared/data}
HOST_PYTHON=${HOST_PYTHON:-python3}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ARCH=aarch64
WHEEL=
PI_OS=

while [ $# -gt 0 ]; do
  case $1 in
    --wheel) WHEEL=$2; shift 2 ;;
    --suite) SUITE=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --pi-os) PI_OS=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "test-aarch64: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "test-aarch64: $*" >&2; }
fail() { log "$*"; exit 1; }

# Debian release -> its Python, glibc (the newest manylinux tag its pip would accept), numpy and OpenCV.
case $SUITE in
  bullseye) PY=3.9 GLIBC_MINOR=31 SYSTEM_NUMPY=1.19 SYSTEM_OPENCV=4.5 ;;
  bookworm) PY=3.11 GLIBC_MINOR=36 SYSTEM_NUMPY=1.24 SYSTEM_OPENCV=4.6 ;;
  trixie) PY=3.13 GLIBC_MINOR=41 SYSTEM_NUMPY=2.2 SYSTEM_OPENCV=4.10 ;;
  *) fail "unknown --suite $SUITE (bullseye, bookworm, trixie)" ;;
esac
# Per target: Debian's architecture, qemu, Debian packages beyond python3, the runtime dependencies and the
# NCNN backend from PyPI.
case $ARCH in
  aarch64) DEB_ARCH=arm64 QEMU=qemu-aarch64-static DEB_PACKAGES=python3
           REQUIREMENTS="numpy opencv-python-headless pyyaml ncnn" ;;
  armv7l) DEB_ARCH=armhf QEMU=qemu-arm-static DEB_PACKAGES=python3,python3-numpy,python3-yaml,python3-opencv
          REQUIREMENTS="--no-deps ncnn" ;;  # its numpy dependency comes from Debian: PyPI has no armv7l numpy
  *) fail "unknown --arch $ARCH (aarch64, armv7l)" ;;
esac
if [ -n "$PI_OS" ]; then
  [ "$SUITE" != bullseye ] || fail "--pi-os: bullseye's numpy 1.19 is older than edge-yolox's numpy >= 1.21"
  DEB_PACKAGES=python3,python3-pip,python3-numpy,python3-opencv,python3-yaml
fi
ROOTFS=$CACHE/rootfs-$SUITE-$DEB_ARCH${PI_OS:+-pios}
SITE=$CACHE/site-$SUITE-$DEB_ARCH
VENV=$CACHE/venv-$SUITE-$DEB_ARCH

for tool in "$QEMU" debootstrap dpkg-deb; do
  command -v "$tool" >/dev/null || fail "$tool not found: apt-get install qemu-user-static debootstrap"
done
for file in models/yolox_nano.onnx models/ncnn_yolox_nano/yoloxN.param images/dog.jpg; do
  [ -f "$DATA/$file" ] || fail "missing test data $DATA/$file (set EDGE_YOLOX_SHARED_DATA)"
done
if [ -z "$WHEEL" ]; then
  WHEEL=$(ls -t "$ROOT"/wheelhouse/edge_yolox-*-cp${PY/./}-*"$ARCH".whl 2>/dev/null | head -1) ||:
  [ -n "$WHEEL" ] || fail "no cp${PY/./} $ARCH wheel in wheelhouse/: scripts/build-wheels.sh --arch $ARCH --python $PY"
fi

# Unpack Debian's ARM Python without running anything: debootstrap's first stage resolves and downloads
# the packages, dpkg-deb -x unpacks each (maintainer scripts are not needed to run python).
make_rootfs() {
  [ "$(cat "$ROOTFS/.edge-yolox-ready" 2>/dev/null)" = "$DEB_PACKAGES" ] && return
  log "unpacking Debian $SUITE $DEB_ARCH with $DEB_PACKAGES into $ROOTFS"
  rm -rf "$ROOTFS"
  debootstrap --foreign --arch="$DEB_ARCH" --variant=minbase --include="$DEB_PACKAGES" "$SUITE" "$ROOTFS" \
    "$DEBIAN_MIRROR" >&2
  for deb in "$ROOTFS"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$ROOTFS"
  done
  rm -f "$ROOTFS"/var/cache/apt/archives/*.deb
  [ -x "$ROOTFS/usr/bin/python$PY" ] || fail "no usr/bin/python$PY in $ROOTFS"
  echo "$DEB_PACKAGES" >"$ROOTFS/.edge-yolox-ready"
}

# Maintainer scripts did not run, so the BLAS/LAPACK alternatives Debian's numpy links against are missing:
# link them (relative links, since qemu -L resolves absolute ones on the host).
link_alternatives() {
  local lib
  for lib in "$ROOTFS"/usr/lib/*/blas/libblas.so.3 "$ROOTFS"/usr/lib/*/lapack/liblapack.so.3; do
    [ -e "$lib" ] && ln -sfn "$(basename "$(dirname "$lib")")/$(basename "$lib")" "$(dirname "$(dirname "$lib")")/$(basename "$lib")"
  done
  return 0
}

# pip on the host fetches the target's wheels: every manylinux tag up to the suite's glibc.
pip_target() {
  local platforms=() minor
  for minor in $(seq 17 "$GLIBC_MINOR"); do platforms+=(--platform "manylinux_2_${minor}_$ARCH"); done
  "$HOST_PYTHON" -m pip install -q --upgrade --target "$@" "${platforms[@]}" --platform "manylinux2014_$ARCH" \
    --only-binary=:all: --python-version "$PY" --implementation cp
}

install_dependencies() {
  [ "$(cat "$SITE/deps/.requirements" 2>/dev/null)" = "$REQUIREMENTS" ] && return
  log "installing $ARCH wheels of $REQUIREMENTS into $SITE/deps"
  rm -rf "$SITE/deps"
  # shellcheck disable=SC2086
  pip_target "$SITE/deps" $REQUIREMENTS
  echo "$REQUIREMENTS" >"$SITE/deps/.requirements"
}

# emulated PROGRAM ARGS...: an ARM program under qemu in a clean environment (plus EMULATED_PYTHONPATH when set).
# qemu -L: the emulated process sees $ROOTFS first (loader, libc, stdlib), the host filesystem for the rest.
# PIP_CONFIG_FILE=/dev/null: pip reads no configuration of the host's.
EMULATED_PYTHONPATH=
emulated() {
  mkdir -p "$CACHE/home"
  env -i PATH=/usr/bin:/bin HOME="$CACHE/home" LANG=C.UTF-8 PYTHONNOUSERSITE=1 PIP_CONFIG_FILE=/dev/null \
    PIP_DISABLE_PIP_VERSION_CHECK=1 ${EMULATED_PYTHONPATH:+PYTHONPATH="$EMULATED_PYTHONPATH"} \
    "$QEMU" -L "$ROOTFS" "$@"
}

# The README's Raspberry Pi path. --copies: qemu runs the venv's python by its host path, and a link to
# /usr/bin/python3.X would resolve to the host's interpreter; --without-pip: ensurepip would start a child process,
# which qemu without binfmt cannot, so Debian's python3-pip (seen through the system site) installs instead.
install_like_a_pi_user() {
  rm -rf "$VENV"
  emulated "$ROOTFS/usr/bin/python$PY" -m venv --copies --without-pip --system-site-packages "$VENV"
  emulated "$VENV/bin/python$PY" -m pip install -q "numpy<2" "$WHEEL[ncnn]"
}

step() {  # step NAME COMMAND...: run and time it
  local name=$1 start
  shift
  start=$(date +%s)
  "$@"
  log "$name: $(( $(date +%s) - start )) s"
}

begin=$(date +%s)
step "root filesystem" make_rootfs
link_alternatives
if [ -n "$PI_OS" ]; then
  step "venv --system-site-packages, pip install $(basename "$WHEEL")[ncnn] (emulated)" install_like_a_pi_user
  step "emulated check of the Pi OS install" emulated "$VENV/bin/python$PY" "$ROOT/scripts/cross/check_system_stack.py" \
    --venv "$VENV" --numpy "$SYSTEM_NUMPY" --opencv "$SYSTEM_OPENCV" --arch "$ARCH" --cli "$VENV/bin/edge-yolox" \
    --ncnn-model "$DATA/models/ncnn_yolox_nano" --image "$DATA/images/dog.jpg"
  log "passed in $(( $(date +%s) - begin )) s"
  exit 0
fi
step "dependencies" install_dependencies
rm -rf "$SITE/wheel"
step "wheel $(basename "$WHEEL")" pip_target "$SITE/wheel" --no-deps "$WHEEL"
step "recording real outputs on the host" "$HOST_PYTHON" "$ROOT/scripts/cross/check_wheel.py" record \
  "$CACHE/test/dog-yolox_nano.npz" "$DATA/images/dog.jpg" "$DATA/models/yolox_nano.onnx"
EMULATED_PYTHONPATH="$SITE/wheel:$SITE/deps:$ROOT/tests"
step "emulated check" emulated "$ROOTFS/usr/bin/python$PY" "$ROOT/scripts/cross/check_wheel.py" check \
  "$CACHE/test/dog-yolox_nano.npz" --arch "$ARCH" --cli "$SITE/wheel/bin/edge-yolox" \
  --ncnn-model "$DATA/models/ncnn_yolox_nano" --image "$DATA/images/dog.jpg"
log "passed in $(( $(date +%s) - begin )) s"
