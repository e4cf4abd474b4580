"""Load one Triton model, as fast as users can go or on an arrival schedule: the locustfile of `tritonforge loadtest`.

    locust -f tritonforge/loadtests/locustfile.py --headless --host 127.0.0.1:8001 \
        --triton-model digits -u 4 -r 4 --run-time 30s
    locust ... -u 16 --triton-arrival poisson --triton-rate 200 --triton-total-users 16    # open loop

Tasks only; the gRPC plumbing, timing and options live in `triton_user.py`.
"""

from __future__ import annotations

import locust

# isort: split
from locust import constant, task

from tritonforge.loadtests.triton_user import TritonUser


class InferUser(TritonUser):
    """Sends one request after another with no pause, or on an arrival schedule.

    Without `--triton-arrival` this is a closed loop (load = users x server speed); with it, an open loop.
    """

    wait_time = constant(0)

    @task
    def infer_request(self) -> None:
        """One inference call (the open loop's waits for its scheduled start)."""
        self.send_next()


__all__ = ["InferUser", "locust"]
