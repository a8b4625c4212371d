"""int8 quantization: FX graph-mode QAT and PTQ with TFLite-compatible fake-quant placement."""
