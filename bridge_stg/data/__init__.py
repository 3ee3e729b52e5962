"""Data pipeline: video reading, frame sampling, synthetic benchmark, datasets and model inputs."""
