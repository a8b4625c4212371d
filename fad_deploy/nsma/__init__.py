"""Noise Subrange Model Array (paper section 3.3): n models, each trained on one
log-uniform sub-range of the shot noise a (partition.py), the per-image choice from a
sub-range table stored as data (select.py), where an image's noise level comes from
(noise_level.py, estimate.py), the loaded array (array.py), its manifest (manifest.py),
file denoising for `fad-denoise` (pipeline.py) and the Table 2 evaluation (evaluate.py)."""
