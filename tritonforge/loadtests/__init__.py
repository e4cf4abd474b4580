"""Locust load tests against Triton over gRPC, with SLO gates."""
