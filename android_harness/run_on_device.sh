#!/usr/bin/env bash
# Measure the exported bundles (export/) on the connected Android phone: a thin wrapper
# of `fad-bench --device adb` that writes a time-stamped JSON under benchmarks/results/.
# Usage: android_harness/run_on_device.sh BENCHMARK_BINARY [fad-bench options...]
#   e.g. android_harness/run_on_device.sh ./benchmark_model --delegate xnnpack --delegate gpu
# Set FAD_DEVICE=adb:SERIAL when several devices are attached. See android_harness/README.md.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 BENCHMARK_BINARY [fad-bench options...] (see android_harness/README.md)" >&2
    exit 2
fi
binary=$1
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/benchmarks/results/android-$(date +%Y%m%d-%H%M%S).json"
mkdir -p "$(dirname "$out")"
exec fad-bench --device "${FAD_DEVICE:-adb}" --benchmark-binary "$binary" --json "$out" "$@"
