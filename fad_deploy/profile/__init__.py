"""Profilers: MACs and parameters (macs.py), activation memory with an arena planner
(memory.py), accelerator budget and roofline (accelerator.py), the largest exact tile an
accelerator's SRAM holds (tiling.py). All read the same traced graph (graph.py). MAC figures
are per megapixel of RAW input, i.e. per 4x512x512 packed tensor.
"""
