"""The layering rule, enforced: `cadences/` and `storage/` never import a chat SDK or `bot/`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("slack_bolt", "slack_sdk", "botbuilder", "botframework", "aiohttp", "bot")
SCHEDULER_OWNER = ROOT / "cadences" / "scheduler.py"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["cadences", "storage"])
def test_core_packages_import_no_chat_sdk(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN)) for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_storage_knows_nothing_of_cadences() -> None:
    offenders = [str(p) for p in (ROOT / "storage").rglob("*.py") if "cadences" in _imports(p)]
    assert offenders == []


def test_only_the_scheduler_imports_apscheduler() -> None:
    users = [p for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts and "apscheduler" in _imports(p)]
    assert all(p == SCHEDULER_OWNER for p in users), users


def test_only_bot_teams_imports_the_bot_framework() -> None:
    """Microsoft archived the Bot Framework Python SDK: a move to its successor must touch only bot/teams/."""
    framework = {"botbuilder", "botframework", "msrest"}
    users = [
        p
        for package in ("bot", "cadences", "storage")
        for p in (ROOT / package).rglob("*.py")
        if _imports(p) & framework
    ]
    assert users and all((ROOT / "bot" / "teams") in p.parents for p in users), users
