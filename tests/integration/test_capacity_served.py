"""Capacity search against the real embedded tritonserver serving `digits`: open-loop steps until the SLO breaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tritonforge.loadtests.capacity import format_capacity, run_capacity
from tritonforge.loadtests.runner import LoadTestConfig
from tritonforge.loadtests.slo import SLOSpec

pytestmark = pytest.mark.integration


def test_capacity_search_finds_the_last_passing_step(triton_server: Any, tmp_path: Path) -> None:
    # 50 req/s is far below what two cores serve; 20000 req/s is far above what Locust and the server reach on
    # them (about 3-4k/s), so that step falls short of its target rate and must fail whatever else happens.
    template = LoadTestConfig(host=triton_server.grpc_url, model="digits", output_dir=tmp_path / "cap")
    slo = SLOSpec(p99_ms=2000.0, max_error_ratio=0.01)

    report = run_capacity(template, slo, start_rps=50, factor=400, max_rps=20_000, step_s=2, refine_steps=0, users=16)

    table = format_capacity(report)
    assert [s.target_rps for s in report.steps] == [50, 20_000], table
    low, high = report.steps
    assert low.passed, table
    assert low.achieved_rps >= 0.8 * 50
    assert not high.passed, table
    assert high.shortfall is not None and "achieved" in high.shortfall
    assert report.knee_rps == 50
    assert report.first_failing_rps == 20_000
    document = json.loads((tmp_path / "cap" / "capacity.json").read_text(encoding="utf-8"))
    assert document["knee_rps"] == 50
    assert [step["passed"] for step in document["steps"]] == [True, False]
    assert (tmp_path / "cap" / "capacity.png").read_bytes()[:4] == b"\x89PNG"
    for step in document["steps"]:
        assert Path(step["summary"]).is_file()
