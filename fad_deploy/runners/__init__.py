"""One interface for every backend (torch, onnx-fp32/int8, tflite-fp32/int8, adb):
"denoise this packed RAW" and "time this". Pre/post-processing lives in base.py only."""
