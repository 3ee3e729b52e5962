"""Command-line entry points (torch-free unless a command needs a model)."""
