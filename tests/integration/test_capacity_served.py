"""Capacity search against the real embedded tritonserver serving `digits`: open-loop steps, each measured after its
warm-up, judged against the SLO, written to capacity.json. Nothing here depends on how fast the host is: the
search logic itself is tested on injected steps in tests/unit/loadtests/test_capacity.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tritonforge.errors import ConfigError
from tritonforge.loadtests.capacity import format_capacity, run_capacity
from tritonforge.loadtests.runner import LoadTestConfig
from tritonforge.loadtests.slo import SLOSpec

pytestmark = pytest.mark.integration


def test_an_impossible_slo_fails_at_the_first_step_and_the_search_is_written(
    triton_server: Any, tmp_path: Path
) -> None:
    # No server answers in a microsecond: the first step fails on p99 whatever the host's speed, and the search stops.
    template = LoadTestConfig(host=triton_server.grpc_url, model="digits", output_dir=tmp_path / "cap")
    slo = SLOSpec(p99_ms=0.001)

    report = run_capacity(template, slo, start_rps=50, factor=2, max_rps=400, step_s=2, refine_steps=2)

    table = format_capacity(report)
    assert [s.target_rps for s in report.steps] == [50], table
    (step,) = report.steps
    assert not step.passed and step.requests > 0, table
    assert any(reason.startswith("p99_ms ") for reason in step.broken), table
    assert report.knee_rps is None and report.first_failing_rps == 50
    assert "no knee: 'digits' missed the SLO already at the first rate, 50 req/s" in table
    document = json.loads((tmp_path / "cap" / "capacity.json").read_text(encoding="utf-8"))
    assert (document["found"], document["knee_rps"], document["step_s"], document["warmup_s"]) == (False, None, 2, 1)
    assert [s["passed"] for s in document["steps"]] == [False]
    assert (tmp_path / "cap" / "capacity.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads(Path(document["steps"][0]["summary"]).read_text(encoding="utf-8"))
    # The step's figures are those of its 2 measured seconds, after a 1 s warm-up (Locust ran 3 s).
    assert (summary["mode"], summary["rate_rps"], summary["run_time_s"]) == ("open", 50.0, 2)
    assert summary["requests"] == step.requests and summary["p99_ms"] == step.p99_ms
    assert summary["server"]["count_check"]["client_requests"] == summary["late"]["sent"]  # warm-up included
    assert "Resetting stats" in Path(summary["files"]["log"]).read_text(encoding="utf-8")

    # A rerun never deletes this search silently.
    with pytest.raises(ConfigError, match=r"already holds a capacity search \(capacity.json\); pass --overwrite"):
        run_capacity(template, slo, start_rps=50, max_rps=50, step_s=2)
    assert json.loads((tmp_path / "cap" / "capacity.json").read_text(encoding="utf-8")) == document
