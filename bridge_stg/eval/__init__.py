"""Evaluation toolkit: protocols, metrics, prediction files, tables. Torch-free by design."""
