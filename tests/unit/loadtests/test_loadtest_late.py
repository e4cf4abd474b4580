"""Late-start accounting of the open loop: the tally each Locust process keeps and the master merges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonforge.errors import TritonForgeError
from tritonforge.loadtests.report import LateTally, read_late_requests


def test_tally_counts_only_starts_beyond_the_threshold() -> None:
    tally = LateTally(threshold_ms=2.0)

    verdicts = [tally.record(ms) for ms in (0.0, 1.9, 2.0, 2.5, 40.0)]

    assert verdicts == [False, False, False, True, True]
    summary = tally.summary()
    assert (summary.sent, summary.late, summary.unsent) == (5, 2, 0)
    assert summary.max_ms == 40.0


def test_tally_percentiles_follow_the_late_starts() -> None:
    tally = LateTally(threshold_ms=1.0)
    for ms in [5.0] * 98 + [300.0, 1200.0]:
        tally.record(ms)

    summary = tally.summary()

    assert summary.p50_ms == 5.0
    assert summary.p99_ms == 300.0
    assert summary.max_ms == 1200.0


def test_tally_has_no_percentiles_when_nothing_was_late() -> None:
    tally = LateTally(threshold_ms=2.0)
    tally.record(0.5)

    summary = tally.summary()

    assert (summary.late, summary.p50_ms, summary.p99_ms, summary.max_ms) == (0, None, None, None)


def test_merged_worker_tallies_equal_one_tally_of_every_start() -> None:
    starts = [0.1, 3.0, 7.25, 15.0, 99.0, 250.0, 4321.0, 2.2, 0.0, 12.0]
    whole = LateTally(threshold_ms=2.0)
    for ms in starts:
        whole.record(ms)
    whole.record_unsent(3)
    first, second = LateTally(threshold_ms=2.0), LateTally(threshold_ms=2.0)
    for ms in starts[:4]:
        first.record(ms)
    for ms in starts[4:]:
        second.record(ms)
    second.record_unsent(3)
    master = LateTally(threshold_ms=2.0)

    master.merge(json.loads(json.dumps(first.to_message())))  # as it travels from a worker
    master.merge(json.loads(json.dumps(second.to_message())))

    assert master.summary() == whole.summary()
    assert master.summary().unsent == 3


def test_tally_forgets_what_it_reported_when_reset() -> None:
    tally = LateTally(threshold_ms=2.0)
    tally.record(10.0)
    tally.record_unsent(2)

    tally.reset()

    assert tally.to_message() == {"threshold_ms": 2.0, "sent": 0, "unsent": 0, "woke_late": 0, "late": []}


def test_read_late_requests_reads_the_file_the_master_writes(tmp_path: Path) -> None:
    tally = LateTally(threshold_ms=5.0)
    for ms in (1.0, 6.0, 8.0):
        tally.record(ms)
    path = tmp_path / "locust_late.json"
    path.write_text(json.dumps(tally.to_message()), encoding="utf-8")

    late = read_late_requests(path)

    assert (late.threshold_ms, late.sent, late.late, late.max_ms) == (5.0, 3, 2, 8.0)


def test_read_late_requests_raises_when_the_master_wrote_nothing(tmp_path: Path) -> None:
    with pytest.raises(TritonForgeError, match="Locust wrote no late-start tally"):
        read_late_requests(tmp_path / "locust_late.json")


def test_tally_tells_a_generator_that_woke_late_from_users_that_were_busy() -> None:
    tally = LateTally(threshold_ms=2.0)
    tally.record(9.0, was_idle=True)  # slept until its time and woke 9 ms after it
    tally.record(1.0, was_idle=True)  # on time
    tally.record(30.0, was_idle=False)  # its user was still busy with the request before
    master = LateTally(threshold_ms=2.0)

    master.merge(tally.to_message())

    assert (master.summary().late, master.summary().woke_late) == (2, 1)
