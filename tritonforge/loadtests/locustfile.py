"""Load one Triton model as fast as each user can go: the locustfile `tritonforge loadtest` runs.

    locust -f tritonforge/loadtests/locustfile.py --headless --host 127.0.0.1:8001 \
        --triton-model digits -u 4 -r 4 --run-time 30s

Tasks only; the gRPC plumbing, timing and options live in `triton_user.py`.
"""

from __future__ import annotations

import locust

# isort: split
from locust import constant, task

from tritonforge.loadtests.triton_user import TritonUser


class InferUser(TritonUser):
    """Sends one request after another with no pause (a closed loop: load = users x server speed)."""

    wait_time = constant(0)

    @task
    def infer_request(self) -> None:
        """One inference call."""
        self.infer()


__all__ = ["InferUser", "locust"]
