"""The command line as a newcomer meets it: the demo, a piped console session, help and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cadence(
    *args: str, stdin: str = "", cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=180,
    )


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = cadence("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("demo", "console", "run", "simulate", "db", "engagement", "import"):
        assert name in result.stdout


def test_errors_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    result = cadence("--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db", "console", "--as", "dana", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no engagement yet" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("engagement:\n  slug: x\n  company: X\n  bogus: 1\n", encoding="utf-8")
    result = cadence(
        "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db", "engagement", "apply", str(bad), cwd=tmp_path
    )
    assert result.returncode == 2 and "bad.yaml:4" in result.stderr and "bogus" in result.stderr


@pytest.mark.slow
def test_demo_then_a_piped_console_session_records_history(tmp_path: Path) -> None:
    demo = cadence("demo", "--no-console", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "cadence-demo.db").exists()
    url = f"sqlite+aiosqlite:///{tmp_path}/cadence-demo.db"
    lines = (
        '/deal new "Globex" amount=120k close=eoq stage=discovery\n/deal list\n/deal Globex amount=130k\n'
        "/deal history Globex\n"
    )
    session = cadence("--database-url", url, "console", "--as", "priya", stdin=lines, cwd=tmp_path)
    assert session.returncode == 0, session.stderr
    out = session.stdout
    assert "Created Globex." in out
    assert "Your open deals" in out and "Globex — Discovery · $120,000" in out
    assert "Priya Natarajan (console) · update: amount: $120,000 → $130,000" in out
    again = cadence("demo", "--no-console", cwd=tmp_path)
    assert "already has" in again.stdout or "nothing" in again.stdout.lower()
