"""Conversions from a PyTorch model to a Triton model repository: export, verify, write configs and versions."""
