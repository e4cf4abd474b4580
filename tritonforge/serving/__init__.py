"""The embedded Triton server: launcher, backend directory and the ONNX Runtime adapter for missing backends."""
