"""RAW data pipeline: Bayer handling, unprocessing, noise, photo sources, datasets, RAW readers."""
