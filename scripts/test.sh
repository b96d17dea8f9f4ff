#!/usr/bin/env bash
# Set up everything the test suite uses (system packages, a venv with every extra) and run it.
# Usage: scripts/test.sh [pytest args]   (VENV=path to choose the venv, default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

# Real components the tests start themselves: an MQTT broker, a video server, systemd's analyzer,
# a headless browser for the preview screenshot, lavapipe (mesa-vulkan-drivers: a CPU Vulkan device for
# tests/test_vulkan.py).
APT_PACKAGES=(mosquitto ffmpeg systemd chromium mesa-vulkan-drivers)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: missing system packages (tests that need them will fail): ${missing[*]}" >&2
  fi
fi

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[all,test]"
python -m pytest "$@"
