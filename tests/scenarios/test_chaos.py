"""The crash-safety run in CI: `bench/chaos.py --quick` — two bot processes on PostgreSQL, SIGKILLed at
random at least ten times across two DST changes — delivers every due message exactly once, or skips it
with a recorded reason. (The full run, `bench/chaos.py` without `--quick`, kills at least 50 times.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 280


@pytest.mark.slow
def test_the_quick_crash_run_has_no_duplicate_and_no_unexplained_miss(pg_url: str, tmp_path: Path) -> None:
    # `pg_url` skips this test where no PostgreSQL runs (and fails it in CI); the run makes its own database.
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    log = tmp_path / "chaos-workers.log"
    assert done.returncode == 0, done.stdout + done.stderr + (log.read_text()[-4000:] if log.exists() else "")
    report = json.loads(out.read_text())
    assert (report["duplicates"], report["unexplained_misses"], report["problems"]) == (0, 0, [])
    assert report["kills"] >= 10
    assert report["recovered_by_find_sent"] >= 1  # a post went out and its process died before recording it
    assert report["deliveries_sent"] > 0 and report["deliveries_sent"] == report["posts"]
    assert len(report["dst_changes"]) >= 1
