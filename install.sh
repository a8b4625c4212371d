#!/usr/bin/env bash
# Set up fad-deploy in ./.venv: system library for tflite-support, then the pinned
# Python packages (torch 2.13.0 CPU build; tflite-support without its protobuf<4 pin, see
# requirements-no-deps.txt) and the package itself (editable, so the
# shipped weights in models/ are found).
set -euo pipefail
cd "$(dirname "$0")"
# ldconfig lives in /sbin, which a user's PATH may lack.
if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q "libusb-1.0.so.0"; then
  echo "installing Debian's libusb-1.0-0 (tflite-support's metadata writers need it)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q libusb-1.0-0 >/dev/null
  elif command -v sudo >/dev/null; then sudo apt-get install -y -q libusb-1.0-0 >/dev/null
  else echo "error: please install libusb-1.0-0 (apt-get install libusb-1.0-0)" >&2; exit 1; fi
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -r requirements-no-deps.txt
.venv/bin/pip install -q --no-deps -e .
echo "fad-deploy installed in $(pwd)/.venv (activate with: . .venv/bin/activate)"
