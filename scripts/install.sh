#!/usr/bin/env bash
# Installs AutoMLP Studio on a fresh Debian/Ubuntu machine: the system libraries Qt needs, then the
# package with its test extras, and a local PostgreSQL server with a test role (the store's tests run on
# SQLite and on PostgreSQL; without the server they skip the PostgreSQL cases). torch is pinned to 2.13.0 (CPU build on this machine's disk); on a
# machine with CUDA, the same pin takes torch's CUDA build from PyPI and the engine uses the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # Qt 6 xcb/offscreen platform plugins and fonts; xvfb for screenshots of the real window.
  packages="libegl1 libgl1 libglib2.0-0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libfreetype6
    libdbus-1-3 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
    libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1 libx11-xcb1 fonts-dejavu-core xvfb sqlite3
    postgresql"
  missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
  bash scripts/postgres_test_server.sh
fi

python3 -m pip install -q --disable-pip-version-check torch==2.13.0
python3 -m pip install -q --disable-pip-version-check -e ".[test,postgres]"
