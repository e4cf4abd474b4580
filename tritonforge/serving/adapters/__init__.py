"""Python-backend models that stand in for backends the running tritonserver lacks (loaded by Triton, not imported)."""
