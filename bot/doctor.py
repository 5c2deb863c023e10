"""`cadence doctor`: checks a deployment end to end and says what to fix.

It reads the configuration, asks the database (reachable, at the newest migration, tokens stored the way
the mode requires), asks Slack about every token it would use (`auth.test`, and the scopes Slack
reports in the `x-oauth-scopes` header against the ones manifest.yaml asks for), checks the Teams
settings, and looks at every engagement (time zones, ritual times in the hour daylight saving skips or
repeats, people the bot cannot reach). It changes nothing: no migration is applied, no token resealed.

Each finding is `ok`, a `warning` (works, but look at it) or a `problem` (something will fail); the
command exits 1 when there is any problem.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

from bot.logs import checked
from bot.settings import Settings
from bot.slack.installations import BOT_SCOPES
from bot.slack.port import DEFAULT_API_URL
from cadences.engagement_file import engagement_settings
from storage import chat_workspaces
from storage import engagements as engagement_repo
from storage.db import Database
from storage.secrets import SECRET_KEY_ENV, SecretKeyError, stored_form, unseal

Level = Literal["ok", "warning", "problem"]
MARKS: dict[Level, str] = {"ok": "✓", "warning": "!", "problem": "✗"}
TEAMS_APP_TYPES = ("MultiTenant", "SingleTenant", "UserAssignedMSI")
SLACK_TIMEOUT = 10


@dataclass(frozen=True)
class Finding:
    level: Level
    area: str
    text: str
    fix: str | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def ok(self, area: str, text: str) -> None:
        self.findings.append(Finding("ok", area, text))

    def warning(self, area: str, text: str, fix: str | None = None) -> None:
        self.findings.append(Finding("warning", area, text, fix))

    def problem(self, area: str, text: str, fix: str | None = None) -> None:
        self.findings.append(Finding("problem", area, text, fix))

    def count(self, level: Level) -> int:
        return sum(1 for f in self.findings if f.level == level)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("problem") else 0

    def render(self) -> str:
        """The findings grouped by area in the order checked, each fix under its line, and a verdict."""
        lines: list[str] = []
        areas = list(dict.fromkeys(f.area for f in self.findings))
        for area in areas:
            lines.append(area)
            for f in (f for f in self.findings if f.area == area):
                lines.append(f"  {MARKS[f.level]} {f.text}")
                if f.fix:
                    lines.append(f"      fix: {f.fix}")
        problems, warnings = self.count("problem"), self.count("warning")
        if problems:
            counts = f"{_n(problems, 'problem')}, {_n(warnings, 'warning')}"
            verdict = f"{counts}: fix the ✗ lines, then run `cadence doctor` again."
        elif warnings:
            verdict = f"No problems; {_n(warnings, 'warning')} worth a look."
        else:
            verdict = "Everything checked is fine."
        return "\n".join([*lines, "", verdict]) + "\n"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


async def diagnose(settings: Settings, db: Database) -> Report:
    """Every check, in order; the database-backed ones only when the database answers at the newest
    migration (a schema in the middle of an upgrade would only give confusing errors)."""
    report = Report()
    check_configuration(settings, report)
    database_ok = await check_database(settings, db, report)
    tokens: list[tuple[str, str]] = []
    if settings.slack_bot_token:
        tokens.append(("SLACK_BOT_TOKEN", settings.slack_bot_token))
    if database_ok:
        tokens += await check_stored_tokens(settings, db, report)
    if settings.has_slack or tokens:
        await check_slack_tokens(settings, tokens, report)
    if settings.has_teams:
        check_teams(settings, report)
    if database_ok:
        await check_engagements(settings, db, report)
    return report


# --- configuration -------------------------------------------------------------------------------------


def check_configuration(settings: Settings, report: Report) -> None:
    area = "Configuration"
    platforms = [name for name, on in (("Slack", settings.has_slack), ("Teams", settings.has_teams)) if on]
    mode = "production" if settings.production else "development"
    if platforms:
        report.ok(area, f"{' and '.join(platforms)} configured; {mode} mode")
    else:
        report.ok(area, f"no chat platform configured: `cadence run` opens the local console; {mode} mode")
    if settings.environment.strip().lower() not in ("development", "production"):
        report.warning(area, f"CADENCE_ENV is {settings.environment!r}", "set it to `production` or `development`")
    _check_secret_key(settings, report, area)
    _check_slack_settings(settings, report, area)
    try:
        checked(settings.log_level, settings.log_format)
    except ValueError as exc:
        report.problem(area, str(exc), "LOG_LEVEL: DEBUG, INFO, WARNING or ERROR; LOG_FORMAT: text or json")
    if settings.production and make_url(settings.database_url).get_backend_name() == "sqlite":
        report.warning(
            area,
            "production on SQLite: one process only",
            "use PostgreSQL (DATABASE_URL=postgresql+asyncpg://...) to run several `cadence run` processes",
        )


def _check_secret_key(settings: Settings, report: Report, area: str) -> None:
    problem = settings.secret_key_problem()
    if problem:
        report.problem(area, problem, f"set {SECRET_KEY_ENV} to the output of `cadence secrets new-key`")
    elif settings.secret_key:
        report.ok(area, f"{SECRET_KEY_ENV} is set: chat tokens are stored encrypted")
    else:
        report.warning(
            area,
            f"{SECRET_KEY_ENV} is not set: chat tokens are stored unencrypted (development only)",
            f"set {SECRET_KEY_ENV} to the output of `cadence secrets new-key`",
        )


def _check_slack_settings(settings: Settings, report: Report, area: str) -> None:
    s = settings
    if s.slack_bot_token and not s.slack_bot_token.startswith("xoxb-"):
        report.problem(area, "SLACK_BOT_TOKEN is not a bot token (xoxb-…)", "copy the Bot User OAuth Token")
    if s.slack_app_token and not s.slack_app_token.startswith("xapp-"):
        report.problem(area, "SLACK_APP_TOKEN is not an app-level token (xapp-…)", "create one with connections:write")
    if s.slack_app_token and not s.slack_bot_token:
        report.problem(area, "SLACK_APP_TOKEN (Socket Mode) is set without SLACK_BOT_TOKEN", "set SLACK_BOT_TOKEN")
    if bool(s.slack_client_id) != bool(s.slack_client_secret):
        report.problem(
            area,
            "only one of SLACK_CLIENT_ID and SLACK_CLIENT_SECRET is set",
            "set both (Basic Information → App Credentials) for the multi-workspace install, or neither",
        )
    wants_http = (s.slack_bot_token or s.slack_client_id) and not s.slack_app_token
    if wants_http and not s.slack_signing_secret:
        report.problem(
            area,
            "SLACK_SIGNING_SECRET is not set, so Slack's requests cannot be verified",
            "copy the Signing Secret (Basic Information → App Credentials)",
        )


# --- database ---------------------------------------------------------------------------------------


async def check_database(settings: Settings, db: Database, report: Report) -> bool:
    area = "Database"
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        current = await db.migrations_current()
    except Exception as exc:
        report.problem(
            area, f"{shown} does not answer: {exc.__class__.__name__}: {str(exc)[:200]}", "check DATABASE_URL"
        )
        return False
    if not current:
        report.problem(
            area,
            f"{shown} is not at the newest migration",
            "run `cadence db upgrade` (`cadence run` also upgrades on start)",
        )
        return False
    report.ok(area, f"{shown} answers and is at the newest migration")
    return True


async def check_stored_tokens(settings: Settings, db: Database, report: Report) -> list[tuple[str, str]]:
    """How each stored token is kept; returns the ones that can be opened, named, for `auth.test`."""
    area = "Database"
    async with db.session() as session:
        stored = await chat_workspaces.stored_tokens(session)
    usable: list[tuple[str, str]] = []
    clear = 0
    for platform, workspace_id, value in stored:
        try:
            token = unseal(value)
        except SecretKeyError as exc:
            report.problem(
                area, f"{platform} workspace {workspace_id}: {exc}", f"set the {SECRET_KEY_ENV} it was sealed with"
            )
            continue
        clear += stored_form(value) != "sealed"
        if platform == "slack":
            usable.append((f"the token of Slack workspace {workspace_id}", token))
    if clear and settings.secret_key:
        report.problem(
            area,
            f"{_n(clear, 'chat token')} stored unencrypted",
            "run `cadence secrets reseal` (once no process of an older version is running)",
        )
    elif clear and settings.production:
        report.problem(area, f"{_n(clear, 'chat token')} stored unencrypted in production", f"set {SECRET_KEY_ENV}")
    elif stored and not clear:
        report.ok(area, f"{_n(len(stored), 'stored chat token')}, all encrypted")
    return usable


# --- Slack -----------------------------------------------------------------------------------------------


async def check_slack_tokens(settings: Settings, tokens: Sequence[tuple[str, str]], report: Report) -> None:
    area = "Slack"
    if not tokens:
        report.ok(area, "no token yet: workspaces install the app at /slack/install")
        return
    url = settings.slack_api_url or DEFAULT_API_URL
    for name, token in tokens:
        client = AsyncWebClient(token=token, base_url=url if url.endswith("/") else url + "/", timeout=SLACK_TIMEOUT)
        try:
            response = await client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            report.problem(
                area,
                f"Slack refused {name}: {error or exc.__class__.__name__}",
                "reinstall the app in that workspace, or copy its current Bot User OAuth Token",
            )
            continue
        except (SlackClientError, OSError, TimeoutError) as exc:
            report.problem(area, f"could not reach Slack at {url} with {name}: {exc.__class__.__name__}", None)
            continue
        who = f"{response.get('team')} ({response.get('team_id')}) as {response.get('user')}"
        report.ok(area, f"{name} works for {who}")
        header = {k.lower(): v for k, v in response.headers.items()}.get("x-oauth-scopes")
        if header is None:
            report.warning(area, f"Slack did not report the scopes of {name}")
            continue
        granted = {scope.strip() for scope in str(header).split(",") if scope.strip()}
        missing = sorted(set(BOT_SCOPES) - granted)
        extra = sorted(granted - set(BOT_SCOPES))
        if missing:
            report.problem(
                area,
                f"{name} lacks scopes manifest.yaml asks for: {', '.join(missing)}",
                "add them under OAuth & Permissions (or update the app from manifest.yaml) and reinstall the app",
            )
        if extra:
            report.warning(
                area,
                f"{name} has scopes manifest.yaml does not ask for: {', '.join(extra)}",
                "remove them and reinstall (least privilege)",
            )


# --- Teams -----------------------------------------------------------------------------------------------


def check_teams(settings: Settings, report: Report) -> None:
    area = "Teams"
    s = settings
    before = report.count("problem")
    if s.teams_emulator and not s.teams_app_id:
        level_text = "CADENCE_TEAMS_EMULATOR: /api/messages accepts requests without authentication"
        if s.production:
            report.problem(area, level_text + " in production", "unset CADENCE_TEAMS_EMULATOR and set MicrosoftAppId")
        else:
            report.warning(area, level_text + " (local development only)")
        return
    app_type = s.teams_app_type or "MultiTenant"
    if app_type not in TEAMS_APP_TYPES:
        report.problem(area, f"MicrosoftAppType is {app_type!r}", f"use one of {', '.join(TEAMS_APP_TYPES)}")
    try:
        uuid.UUID(str(s.teams_app_id))
    except ValueError:
        report.problem(area, "MicrosoftAppId is not a GUID", "copy the Microsoft App ID of the Azure Bot")
    if app_type != "UserAssignedMSI" and not s.teams_app_password:
        report.problem(area, "MicrosoftAppPassword is not set", "create a client secret for the bot's app registration")
    if app_type in ("SingleTenant", "UserAssignedMSI") and not s.teams_tenant_id:
        report.problem(area, f"{app_type} needs MicrosoftAppTenantId", "set it to the tenant of the registration")
    if report.count("problem") == before:
        report.ok(area, f"{app_type} bot {s.teams_app_id} (its credentials are checked by Microsoft on first post)")


# --- engagements -----------------------------------------------------------------------------------------


def _zone_ok(name: str | None) -> bool:
    if not name:
        return True
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


async def check_engagements(settings: Settings, db: Database, report: Report) -> None:
    async with db.session() as session:
        engagements = await engagement_repo.list_engagements(session)
        if not engagements:
            report.warning("Engagements", "none yet", "run `cadence engagement apply FILE`")
            return
        for engagement in engagements:
            area = f"Engagement {engagement.slug}"
            before = len(report.findings)
            if not _zone_ok(engagement.timezone):
                report.problem(
                    area, f"time zone {engagement.timezone!r} is not an IANA zone", "fix `timezone:` and re-apply"
                )
            if engagement.paused:
                report.warning(area, "paused: no ritual runs", "resume it (`/cadence resume`), or reinstall the app")
            try:  # the same rules as the file, 02:xx ritual times included (DST skips or repeats them)
                engagement_settings(engagement)
            except ValidationError as exc:
                for error in exc.errors():
                    where = ".".join(str(part) for part in error["loc"])
                    report.problem(
                        area,
                        f"stored ritual settings: {where}: {error['msg'].removeprefix('Value error, ')}",
                        "fix the engagement file and re-apply it (`cadence engagement apply FILE`)",
                    )
            people = await chat_workspaces.active_people(session, engagement.id)
            for person in people:
                if not _zone_ok(person.timezone):
                    report.problem(
                        area, f"{person.key}'s time zone {person.timezone!r} is not an IANA zone", "fix it in the file"
                    )
            platforms = [p for p, on in (("slack", settings.has_slack), ("teams", settings.has_teams)) if on]
            linked = [p for p in platforms if await chat_workspaces.workspace_of(session, engagement.id, p) is not None]
            if platforms and not linked:
                report.warning(
                    area,
                    f"not linked to {' or '.join(p.capitalize() for p in platforms)} yet",
                    f"the CRO types `/cadence setup {engagement.slug}` (Teams: `cadence setup {engagement.slug}`) "
                    "in the review channel",
                )
            for platform in linked:
                known = await chat_workspaces.identities_of(session, engagement.id, platform)
                unknown = [p for p in people if p.id not in known]
                unreachable = [p.key for p in unknown if not p.email]
                by_email = [p.key for p in unknown if p.email]
                if unreachable:
                    report.problem(
                        area,
                        f"no {platform.capitalize()} id and no email for: {', '.join(unreachable)}",
                        f"add `{platform}:` or `email:` for them in the engagement file and re-apply",
                    )
                if by_email:
                    report.warning(
                        area,
                        f"no {platform.capitalize()} id yet for: {', '.join(by_email)} (looked up by email)",
                        f"add `{platform}:` for them in the engagement file if the lookup fails",
                    )
            if len(report.findings) == before:
                reach = f"{len(people)} people, all reachable" if linked else f"{len(people)} people"
                report.ok(area, f"{engagement.timezone}; {reach}; ritual times clear of the DST hour")
