"""The review-at-scale and scheduler-load benchmarks in quick mode, as CI runs them: each script must run
from the repository root, print its table and write its JSON (machine, command, figures) with figures
that make sense. These are smoke tests of the benchmarks, not timed tests: no figure is held to a target
here (a CI machine is not the benchmark machine), only to being measured at all.

The database each runs on is the `bench_backend` fixture (tests/conftest.py); how a script is run,
support/bench_scripts.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.bench_scripts import run_quick


@pytest.mark.slow
def test_review_quick_measures_the_snapshot_the_digest_and_the_floor(bench_backend: str, tmp_path: Path) -> None:
    table, results = run_quick("review", bench_backend, tmp_path)
    result = results[bench_backend]
    assert "review snapshot, 2,000 deals (median)" in table and "snapshot ÷ floor" in table
    big, many = result["big"], result["many"]
    assert big["deals"] == 2_000 and big["history_rows"] >= 2_000 * 15
    assert big["review_messages"] >= 2  # the post and at least one deal to discuss
    for timing in (big["floor"], big["snapshot"], big["digest"], many["snapshot"], many["digest_sampled"]):
        assert 0 < timing["median_ms"] <= timing["p95_ms"]
    assert big["snapshot"]["median_ms"] > big["floor"]["median_ms"]  # the floor is a floor
    assert many["engagements"] == 40 and many["snapshots_total_s"] > 0


@pytest.mark.slow
def test_scheduler_quick_creates_the_whole_batch_once_and_measures_it(bench_backend: str, tmp_path: Path) -> None:
    table, results = run_quick("scheduler", bench_backend, tmp_path)
    result = results[bench_backend]
    assert "batch lateness p99" in table
    engagements = result["engagements"]
    assert engagements == 100
    assert result["first_wakeup"] == "2026-11-30T17:00:00+00:00"  # Monday 09:00 in Los Angeles
    assert result["idle_heartbeat_created"] == 0  # nothing is due at 08:58
    batch = result["batch"]
    # Every engagement's review and 09:00 action-item reminder: each created once, planned once; the
    # review posts go out (no action item is due, so the reminders have nobody to remind).
    assert batch["created"] == batch["planned"] == 2 * engagements
    assert batch["sent"] == engagements and batch["failed"] == 0
    assert 0 <= batch["lateness_p50_s"] <= batch["lateness_p99_s"] <= batch["lateness_max_s"]
    assert 0 < result["startup_s"] and 0 < result["rss_after_startup_mb"] <= result["rss_peak_mb"]
