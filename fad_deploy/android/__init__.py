"""Android harness: run exported TFLite bundles on a phone through `adb` and TFLite's
`benchmark_model` (latency, memory, op profile, on-device denoise parity).

The same code drives a real phone and the stand-in `adb` the tests put on PATH; only the
executable differs.
"""
