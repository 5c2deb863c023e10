"""Running a benchmark script in quick mode, as the CI smoke tests in tests/bench/ do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600


def run_quick(script: str, backend: str, results: Path) -> tuple[str, Any]:
    """`python bench/<script>.py --quick --backend <backend>` from the repository root, as the README says;
    its printed table and the `results` of the JSON it wrote (into `results`, not bench/results/)."""
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
