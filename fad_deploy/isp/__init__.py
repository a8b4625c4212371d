"""Minimal forward ISP (RAW -> sRGB) and image-quality metrics."""
