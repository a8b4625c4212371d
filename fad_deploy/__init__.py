"""fad-deploy: train, quantize, export and profile the Feature-Align RAW denoiser."""

__version__ = "0.1.0"
