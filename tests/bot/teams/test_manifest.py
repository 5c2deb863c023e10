"""The Teams app package: the manifest validates against Microsoft's v1.22 schema, lists every command
the bot understands, its icons are the sizes Teams asks for, and `cadence teams package` zips exactly
the manifest (with the bot's app id filled in) and the icons."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from bot.cli import main
from bot.teams.package import APP_DIR, PLACEHOLDER_ID, build_package, manifest
from cadences.catalog import build_router

SCHEMA = Path(__file__).resolve().parents[3].parent / "shared" / "schemas" / "teams-app-manifest.v1.22.schema.json"
APP_ID = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"


def schema_errors(data: dict[str, Any]) -> list[str]:
    if not SCHEMA.exists():
        pytest.skip(f"the Teams manifest schema is not at {SCHEMA} (../shared is absent outside the workplace)")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def checked_in() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((APP_DIR / "manifest.json").read_text(encoding="utf-8"))
    return data


def png_pixels(content: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGBA pixels of an 8-bit RGBA, non-interlaced PNG (what the icons are)."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at < len(content):
        (length,) = struct.unpack(">I", content[at : at + 4])
        kind = content[at + 4 : at + 8]
        chunks[kind] = chunks.get(kind, b"") + content[at + 8 : at + 8 + length]
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (8, 6, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 4 * width
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows)  # unfiltered rows, as written
    return width, height, [row[1 + 4 * x : 5 + 4 * x] for row in rows for x in range(width)]


def test_the_manifest_validates_against_the_v1_22_schema() -> None:
    data = checked_in()
    assert schema_errors(data) == []
    assert data["manifestVersion"] == "1.22" and data["id"] == PLACEHOLDER_ID
    assert data["$schema"] == "https://developer.microsoft.com/json-schemas/teams/v1.22/MicrosoftTeams.schema.json"
    [bot] = data["bots"]
    assert bot["botId"] == PLACEHOLDER_ID and bot["scopes"] == ["personal", "team", "groupChat"]
    assert bot["supportsFiles"] is False and bot["isNotificationOnly"] is False


def test_the_command_list_is_every_command_the_bot_understands() -> None:
    [bot] = checked_in()["bots"]
    [commands] = bot["commandLists"]
    assert commands["scopes"] == ["personal", "team", "groupChat"]
    titles = [c["title"] for c in commands["commands"]]
    assert titles == ["deal", "pipeline", "debrief", "cadence", "digest"]
    assert sorted(titles) == build_router().names
    assert all(c["description"].strip() for c in commands["commands"])


def test_the_icons_are_the_sizes_teams_asks_for() -> None:
    width, height, pixels = png_pixels((APP_DIR / "color.png").read_bytes())
    assert (width, height) == (192, 192) and all(p[3] == 255 for p in pixels)  # full colour, opaque
    width, height, pixels = png_pixels((APP_DIR / "outline.png").read_bytes())
    assert (width, height) == (32, 32)
    assert all(p[:3] == b"\xff\xff\xff" for p in pixels)  # white on transparent
    assert {p[3] for p in pixels} >= {0, 255}


def test_the_package_holds_exactly_the_manifest_and_icons_with_the_app_id(tmp_path: Path) -> None:
    path = build_package(APP_ID, tmp_path / "cadence-teams.zip")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        packed = json.loads(archive.read("manifest.json"))
        assert archive.read("color.png") == (APP_DIR / "color.png").read_bytes()
        assert archive.read("outline.png") == (APP_DIR / "outline.png").read_bytes()
    assert schema_errors(packed) == []
    assert packed["id"] == APP_ID and packed["bots"][0]["botId"] == APP_ID
    assert {k: v for k, v in packed.items() if k not in ("id", "bots")} == {
        k: v for k, v in checked_in().items() if k not in ("id", "bots")
    }
    again = build_package(APP_ID, tmp_path / "again.zip")
    assert again.read_bytes() == path.read_bytes()  # reproducible


def test_a_host_fills_in_the_developer_links() -> None:
    data = manifest(APP_ID, host="https://cadence.example.com/")
    assert schema_errors(data) == []
    assert data["developer"]["privacyUrl"] == "https://cadence.example.com/privacy"
    assert data["validDomains"] == ["cadence.example.com"]
    assert manifest(APP_ID, host="bot.example.com:8443")["validDomains"] == ["bot.example.com"]


@pytest.mark.parametrize("app_id", ["", "not-a-guid", PLACEHOLDER_ID, APP_ID + "0"])
def test_an_app_id_must_be_a_real_guid(app_id: str) -> None:
    with pytest.raises(ValueError, match="Microsoft App ID"):
        manifest(app_id)


def test_a_host_must_be_a_host_name() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        manifest(APP_ID, host="https://example.com/path with spaces")


def test_cadence_teams_package_uses_microsoft_app_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MicrosoftAppId", APP_ID)
    assert main(["teams", "package"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Wrote cadence-teams.zip")
    with zipfile.ZipFile(io.BytesIO((tmp_path / "cadence-teams.zip").read_bytes())) as archive:
        assert json.loads(archive.read("manifest.json"))["id"] == APP_ID
    other = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    assert main(["teams", "package", "-o", "custom.zip", "--app-id", other, "--host", "bot.example.com"]) == 0
    with zipfile.ZipFile(tmp_path / "custom.zip") as archive:
        packed = json.loads(archive.read("manifest.json"))
    assert packed["bots"][0]["botId"] == other and packed["validDomains"] == ["bot.example.com"]


def test_cadence_teams_package_without_an_app_id_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["teams", "package"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "cadence: error: set MicrosoftAppId (the Azure Bot's Microsoft App ID) or pass --app-id"
    assert main(["teams", "package", "--app-id", "nope"]) == 2
    assert "is not a Microsoft App ID" in capsys.readouterr().err
    assert not (tmp_path / "cadence-teams.zip").exists()
