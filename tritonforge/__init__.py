"""tritonforge: take a PyTorch model to a latency-validated NVIDIA Triton deployment, and keep it healthy."""

__version__ = "0.1.0"
