"""The ack-latency and fan-out benchmarks in quick mode, as CI runs them: each script runs from the
repository root against real `cadence run` / engine processes and fake Slack workspaces, prints its
table and writes its JSON, and — what CI holds them to — no message is lost or sent twice: every command
is answered as an update, every planned nudge and review post reaches Slack exactly once (by the
delivery key each post carries). Latencies and wall times are reported, not held to a target here (a CI
machine is not the benchmark machine).

The database each runs on is the `bench_backend` fixture (tests/conftest.py); how a script is run,
support/bench_scripts.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.bench_scripts import run_quick


@pytest.mark.slow
def test_ack_quick_answers_every_command_and_delivers_every_nudge_once(bench_backend: str, tmp_path: Path) -> None:
    table, results = run_quick("ack", bench_backend, tmp_path)
    assert "Ack latency, send to HTTP response" in table
    result = results[bench_backend]
    for run in (result["alone"], result["with_fanout"]):
        assert run["requests"] == 300 and run["errors"] == 0
        assert run["answers_updated"] == 300  # every command did its work after the ack
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
    fanout = result["with_fanout"]
    assert result["nudges_planned"] == fanout["fanout_dms"] == 60
    assert fanout["fanout_lost"] == 0 and fanout["fanout_duplicated"] == 0


@pytest.mark.slow
def test_fanout_quick_delivers_every_message_once_under_the_enforced_limits(bench_backend: str, tmp_path: Path) -> None:
    table, results = run_quick("fanout", bench_backend, tmp_path)
    assert "Fan-out at Slack's rate limits" in table
    runs = {run["run"]: run for run in results}
    expected = {"sqlite": ["sqlite, 1 process"], "postgresql": ["postgresql, 1 process", "postgresql, 2 processes"]}
    assert sorted(runs) == expected[bench_backend]
    for run in runs.values():
        # 3 workspaces x 6 reps: a nudge per rep; a review per workspace with a thread reply per deal
        assert run["dm_deliveries"] == 18 and run["channel_deliveries"] == 3 * 7
        assert run["lost"] == 0 and run["duplicated"] == 0 and run["unexpected"] == 0
        assert run["db_statuses"] == {"sent": 18 + 21}
        assert run["calls"]["chat.postMessage"] == 39 + run["throttled"].get("chat.postMessage", 0)
        assert run["minimum_s"] > 0 and run["wall_s"] >= run["minimum_s"]
