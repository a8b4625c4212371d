"""Export targets (one small function per target: tflite.py, onnx.py), the TensorFlow
rebuild the TFLite path uses, the export folder's manifest, and validation against PyTorch."""
