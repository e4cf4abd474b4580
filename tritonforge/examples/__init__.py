"""Example models built from real, bundled data (no downloads)."""
