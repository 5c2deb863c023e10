"""The review-at-scale and scheduler-load benchmarks in quick mode, as CI runs them: each script must run
from the repository root, print its table and write its JSON (machine, command, figures) with figures
that make sense. These are smoke tests of the benchmarks, not timed tests: no figure is held to a target
here (a CI machine is not the benchmark machine), only to being measured at all.

PostgreSQL is measured when a server answers on 127.0.0.1:5432; otherwise that part is skipped with the
reason (and in CI, where .ci/run starts the server, its absence fails the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, _pg_available, run_aside

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and (reason := run_aside(_pg_available())):
        if IN_CI:
            pytest.fail(f"{reason} (CI must run the PostgreSQL benchmarks; .ci/run starts the server)")
        pytest.skip(reason)
    return str(request.param)


def run_quick(script: str, backend: str, results: Path) -> tuple[str, dict[str, Any]]:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(results)}
    out = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--quick", "--backend", backend],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    document = json.loads((results / f"{script}-quick.json").read_text())
    assert document["command"] == f"python bench/{script}.py --quick --backend {backend}"
    assert document["machine"]["cores"] and document["machine"]["python"]
    return out.stdout, document["results"][backend]


@pytest.mark.slow
def test_review_quick_measures_the_snapshot_the_digest_and_the_floor(backend: str, tmp_path: Path) -> None:
    table, result = run_quick("review", backend, tmp_path)
    assert "review snapshot, 2,000 deals (median)" in table and "snapshot ÷ floor" in table
    big, many = result["big"], result["many"]
    assert big["deals"] == 2_000 and big["history_rows"] >= 2_000 * 15
    assert big["review_messages"] >= 2  # the post and at least one deal to discuss
    for timing in (big["floor"], big["snapshot"], big["digest"], many["snapshot"], many["digest_sampled"]):
        assert 0 < timing["median_ms"] <= timing["p95_ms"]
    assert big["snapshot"]["median_ms"] > big["floor"]["median_ms"]  # the floor is a floor
    assert many["engagements"] == 40 and many["snapshots_total_s"] > 0


@pytest.mark.slow
def test_scheduler_quick_creates_the_whole_batch_once_and_measures_it(backend: str, tmp_path: Path) -> None:
    table, result = run_quick("scheduler", backend, tmp_path)
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
