"""The ack-latency and fan-out benchmarks in quick mode, as CI runs them: each script runs from the
repository root against real `cadence run` / engine processes and fake Slack workspaces, prints its
table and writes its JSON, and — what CI holds them to — no message is lost or sent twice: every command
is answered as an update, every planned nudge and review post reaches Slack exactly once (by the
delivery key each post carries). Latencies and wall times are reported, not held to a target here (a CI
machine is not the benchmark machine).

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


def run_quick(script: str, backend: str, results: Path) -> tuple[str, Any]:
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
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    document = json.loads((results / f"{script}-quick.json").read_text())
    assert document["command"] == f"python bench/{script}.py --quick --backend {backend}"
    assert document["machine"]["cores"] and document["machine"]["python"]
    return out.stdout, document["results"]


@pytest.mark.slow
def test_ack_quick_answers_every_command_and_delivers_every_nudge_once(backend: str, tmp_path: Path) -> None:
    table, results = run_quick("ack", backend, tmp_path)
    assert "Ack latency, send to HTTP response" in table
    result = results[backend]
    for run in (result["alone"], result["with_fanout"]):
        assert run["requests"] == 300 and run["errors"] == 0
        assert run["answers_updated"] == 300  # every command did its work after the ack
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
    fanout = result["with_fanout"]
    assert result["nudges_planned"] == fanout["fanout_dms"] == 60
    assert fanout["fanout_lost"] == 0 and fanout["fanout_duplicated"] == 0


@pytest.mark.slow
def test_fanout_quick_delivers_every_message_once_under_the_enforced_limits(backend: str, tmp_path: Path) -> None:
    table, results = run_quick("fanout", backend, tmp_path)
    assert "Fan-out at Slack's rate limits" in table
    runs = {run["run"]: run for run in results}
    expected = {"sqlite": ["sqlite, 1 process"], "postgresql": ["postgresql, 1 process", "postgresql, 2 processes"]}
    assert sorted(runs) == expected[backend]
    for run in runs.values():
        # 3 workspaces x 6 reps: a nudge per rep; a review per workspace with a thread reply per deal
        assert run["dm_deliveries"] == 18 and run["channel_deliveries"] == 3 * 7
        assert run["lost"] == 0 and run["duplicated"] == 0 and run["unexpected"] == 0
        assert run["db_statuses"] == {"sent": 18 + 21}
        assert run["calls"]["chat.postMessage"] == 39 + run["throttled"].get("chat.postMessage", 0)
        assert run["minimum_s"] > 0 and run["wall_s"] >= run["minimum_s"]
