"""The Teams app package: `manifest.json` and its two icons at the root of a zip, ready to upload
(Teams → Apps → Manage your apps → Upload an app, or the Teams admin centre).

The checked-in manifest (bot/teams/app/manifest.json) carries a placeholder GUID, because the app id
belongs to whoever registers the bot: the package fills in the bot's Microsoft App ID (MicrosoftAppId)
as both the app id and the bot id — one Azure Bot registration, the usual shape of a bot-only app — and,
when given, the public host in the developer links and valid domains. The zip is byte-for-byte the same
for the same inputs (fixed timestamps), so a package can be rebuilt and compared.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).parent / "app"
MANIFEST = "manifest.json"
ICONS = ("color.png", "outline.png")
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_HOST = "YOUR-HOST"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:\d{1,5})?$")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def manifest(app_id: str, *, host: str | None = None) -> dict[str, Any]:
    """The manifest for this bot registration. Raises ValueError when `app_id` is not a GUID (Azure shows
    it as the bot's "Microsoft App ID") or `host` is not a host name."""
    app_id = app_id.strip()
    if not _GUID.match(app_id) or app_id == PLACEHOLDER_ID:
        raise ValueError(f"{app_id!r} is not a Microsoft App ID (a GUID, from the Azure Bot's Configuration page)")
    data: dict[str, Any] = json.loads((APP_DIR / MANIFEST).read_text(encoding="utf-8"))
    data["id"] = app_id
    for bot in data["bots"]:
        bot["botId"] = app_id
    if host is not None:
        name = host.strip().removeprefix("https://").rstrip("/")
        if not _HOST.match(name):
            raise ValueError(f"{host!r} is not a host name (give the public host that serves `cadence run`)")
        developer = data["developer"]
        for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
            developer[key] = developer[key].replace(PLACEHOLDER_HOST, name)
        data["validDomains"] = [*data.get("validDomains", []), name.split(":")[0]]
    return data


def build_package(app_id: str, out_path: Path | str, *, host: str | None = None) -> Path:
    """Write the app package zip to `out_path` (its folder must exist) and return the path."""
    content = json.dumps(manifest(app_id, host=host), indent=2, ensure_ascii=False) + "\n"
    path = Path(out_path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_entry(MANIFEST), content.encode("utf-8"))
        for icon in ICONS:
            archive.writestr(_entry(icon), (APP_DIR / icon).read_bytes())
    return path


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
