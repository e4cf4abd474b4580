"""Locust load tests against Triton over gRPC, with SLO gates.

    from tritonforge.loadtests import LoadTestConfig, load_slo_file, run_loadtest

    slo = load_slo_file(Path("slo/digits.yaml"))["digits"]
    result = run_loadtest(LoadTestConfig(host="127.0.0.1:8001", model="digits", slo=slo, output_dir=Path("out")))
    assert result.passed, [check.name for check in result.missed]

Importing this package does not import Locust (which gevent-patches the interpreter): Locust only ever runs in
the subprocess the runner starts, on `locustfile.py` / `triton_user.py`.
"""

from __future__ import annotations

from tritonforge.loadtests.inputs import build_inputs, random_inputs, sample_inputs, save_inputs
from tritonforge.loadtests.report import LoadTestResult, format_table, read_locust_stats, write_summary
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest, run_with_deadline, validate_grpc_host
from tritonforge.loadtests.slo import (
    Comparison,
    Measurement,
    SLOCheck,
    SLOSpec,
    evaluate,
    load_model_slo,
    load_slo_file,
)

__all__ = [
    "Comparison",
    "LoadTestConfig",
    "LoadTestResult",
    "Measurement",
    "SLOCheck",
    "SLOSpec",
    "build_inputs",
    "evaluate",
    "format_table",
    "load_model_slo",
    "load_slo_file",
    "random_inputs",
    "read_locust_stats",
    "run_loadtest",
    "run_with_deadline",
    "sample_inputs",
    "save_inputs",
    "validate_grpc_host",
    "write_summary",
]
