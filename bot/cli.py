"""`cadence`: the command line. Every subcommand is listed by `cadence --help`; errors exit non-zero
with one clear line (the stack trace only with --debug)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.app import CadenceApp, SetupError, create_app, start_chat
from bot.console.repl import run_console
from bot.logs import configure_logging
from bot.settings import Settings
from cadences.engagement_file import (
    EXAMPLE_ENGAGEMENT,
    EngagementFileError,
    apply_engagement,
    export_engagement,
    load_engagement_file,
)
from storage import chat_workspaces
from storage import engagements as engagement_repo
from storage.models import Role
from storage.secrets import SECRET_KEY_ENV, new_key

DEMO_URL = "sqlite+aiosqlite:///./cadence-demo.db"
Command = Callable[[CadenceApp, argparse.Namespace], Awaitable[int]]


async def cmd_db_upgrade(app: CadenceApp, args: argparse.Namespace) -> int:
    print(f"Database {app.db.url} is at the newest migration.")
    return 0


async def cmd_engagement_apply(app: CadenceApp, args: argparse.Namespace) -> int:
    spec = load_engagement_file(Path(args.file))
    report = await apply_engagement(app.db, spec, now=app.clock.now())
    print(report.summary())
    return 0


async def cmd_engagement_export(app: CadenceApp, args: argparse.Namespace) -> int:
    text = await export_engagement(app.db, args.engagement or app.settings.engagement)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"Wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


async def cmd_import_deals(app: CadenceApp, args: argparse.Namespace) -> int:
    from cadences.deal_import import import_deals

    engagement = await app.engagement(args.engagement)
    ctx = app.context(engagement, "cli", "import")
    report = await import_deals(
        app.db,
        engagement.slug,
        Path(args.file),
        args.format,
        dry_run=args.dry_run,
        actor_key=args.as_name,
        today=ctx.today(),
        now=ctx.now(),
        skip_invalid=args.skip_invalid,
    )
    print(report.summary())
    return 1 if report.errors and not args.skip_invalid else 0


async def cmd_console(app: CadenceApp, args: argparse.Namespace) -> int:
    engagement = await app.engagement(args.engagement)
    await run_console(app, engagement, args.as_name or await _default_rep(app, engagement.id))
    return 0


async def _default_rep(app: CadenceApp, engagement_id: int) -> str:
    async with app.db.session() as session:
        everyone = await engagement_repo.people(session, engagement_id)
    reps = [p for p in everyone if p.role == Role.REP] or list(everyone)
    if not reps:
        raise SetupError("the engagement has no people; add them to the engagement file")
    return reps[0].key


async def cmd_demo(app: CadenceApp, args: argparse.Namespace) -> int:
    from cadences.demo_seed import seed_demo_pipeline

    spec = load_engagement_file(EXAMPLE_ENGAGEMENT)
    report = await apply_engagement(app.db, spec, now=app.clock.now())
    print(f"Demo database: {app.db.url}")
    print(report.summary())
    engagement = await app.engagement(spec.engagement.slug)
    today = app.context(engagement, "cli", "import").today()
    print((await seed_demo_pipeline(app.db, engagement.slug, today=today)).summary())
    if args.no_console:
        return 0
    await run_console(app, engagement, args.as_name or await _default_rep(app, engagement.id))
    return 0


async def cmd_run(app: CadenceApp, args: argparse.Namespace) -> int:
    if not (app.settings.has_slack or app.settings.has_teams):
        print(
            "No chat credentials (SLACK_* or MicrosoftApp*) are set, so Cadence runs in the local console. "
            "See the README to connect Slack or Teams."
        )
        engagement = await app.engagement(args.engagement)
        await run_console(app, engagement, args.as_name or await _default_rep(app, engagement.id), clock_running=True)
        return 0
    try:
        service = await start_chat(app)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    settle_heap()
    serving = []
    if app.settings.has_slack:
        serving.append(
            "Slack (" + ("Socket Mode" if app.settings.slack_app_token else f"{service.url}/slack/events") + ")"
        )
    if app.settings.has_teams:
        serving.append(f"Teams ({service.url}/api/messages)")
    print(
        f"Cadence is serving {' and '.join(serving)}; health check at {service.url}/healthz. Ctrl-C stops it.",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows: Ctrl-C still works
            loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await service.stop()  # finishes the work already acknowledged to Slack
    print("Stopped.", flush=True)
    return 0


def settle_heap() -> None:
    """Move everything start-up made (modules, the SDKs, SQLAlchemy's mappers: millions of objects that
    live as long as the process) out of the garbage collector's sight. A full collection otherwise walks
    them all, and while it does — about 100 ms on the benchmark machine — the event loop stops and every
    request in flight waits: bench/ack.py saw exactly those pauses as its p99."""
    gc.collect()
    gc.freeze()


async def cmd_simulate(app: CadenceApp, args: argparse.Namespace) -> int:
    from bot.simulation import run_simulation

    return await run_simulation(
        Path(args.engagement_file) if args.engagement_file else EXAMPLE_ENGAGEMENT, days=args.days, seed=args.seed
    )


async def cmd_teams_package(app: CadenceApp, args: argparse.Namespace) -> int:
    from bot.teams.package import build_package

    app_id = args.app_id or Settings().teams_app_id
    if not app_id:
        raise SetupError("set MicrosoftAppId (the Azure Bot's Microsoft App ID) or pass --app-id")
    try:
        path = build_package(app_id, Path(args.output), host=args.host)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    print(f"Wrote {path}: upload it in Teams (Apps → Manage your apps → Upload an app).")
    return 0


async def cmd_doctor(app: CadenceApp, args: argparse.Namespace) -> int:
    from bot.doctor import diagnose

    report = await diagnose(app.settings, app.db)
    sys.stdout.write(report.render())
    return report.exit_code


async def cmd_secrets_new_key(app: CadenceApp, args: argparse.Namespace) -> int:
    print(new_key())
    return 0


async def cmd_secrets_reseal(app: CadenceApp, args: argparse.Namespace) -> int:
    if not app.settings.secret_key:
        raise SetupError(f"set {SECRET_KEY_ENV} first (`cadence secrets new-key` makes one)")
    async with app.db.write() as session:
        count = await chat_workspaces.reseal_tokens(session)
    print(f"Resealed {count} stored chat token{'' if count == 1 else 's'} with the first key of {SECRET_KEY_ENV}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Run the operating cadence of a fractional CRO "
        "engagement in Slack, Microsoft Teams or a local console.",
    )
    parser.add_argument("--database-url", help="overrides DATABASE_URL (default: sqlite+aiosqlite:///./cadence.db)")
    parser.add_argument("--debug", action="store_true", help="show full stack traces and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="create cadence-demo.db with the example engagement and a seeded pipeline, then open the console as a rep",
    )
    demo.add_argument("--as", dest="as_name", help="who you are in the console (default: the first rep)")
    demo.add_argument("--no-console", action="store_true", help="set up the demo database and stop")
    demo.set_defaults(run=cmd_demo, demo=True)

    console = sub.add_parser("console", help="chat with the bot in this terminal (stdin may be a pipe)")
    console.add_argument("--as", dest="as_name", help="the person you are: a handle, name or email")
    console.add_argument("--engagement", help="engagement slug (when the database holds several)")
    console.set_defaults(run=cmd_console)

    run = sub.add_parser("run", help="serve Slack and/or Teams; with no chat credentials, the local console")
    run.add_argument("--as", dest="as_name", help="console identity when no chat credentials are set")
    run.add_argument("--engagement", help="engagement slug for the console")
    run.set_defaults(run=cmd_run)

    sim = sub.add_parser(
        "simulate",
        help="play a whole engagement through the real engine on a virtual clock and print every message the bot sends",
    )
    sim.add_argument("--engagement", dest="engagement_file", help="engagement file (default: the example)")
    sim.add_argument("--days", type=int, default=200, help="how many days from the engagement's start (200)")
    sim.add_argument("--seed", type=int, default=7, help="seed for the simulated people (7)")
    sim.set_defaults(run=cmd_simulate, standalone=True)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply database migrations (also done on every start)").set_defaults(
        run=cmd_db_upgrade
    )

    eng = sub.add_parser("engagement", help="engagement as code: apply or export the YAML file")
    eng_sub = eng.add_subparsers(dest="engagement_command", required=True, metavar="ACTION")
    apply = eng_sub.add_parser("apply", help="validate FILE and create or update the engagement (idempotent)")
    apply.add_argument("file")
    apply.set_defaults(run=cmd_engagement_apply)
    export = eng_sub.add_parser("export", help="write the engagement back as YAML")
    export.add_argument("--engagement", help="engagement slug (when the database holds several)")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.set_defaults(run=cmd_engagement_export)

    imp = sub.add_parser("import", help="import data from a CRM export").add_subparsers(
        dest="import_command", required=True, metavar="WHAT"
    )
    deals = imp.add_parser("deals", help="import deals from a HubSpot, Salesforce or generic CSV export")
    deals.add_argument("file")
    deals.add_argument("--format", choices=["hubspot", "salesforce", "generic"], default="generic")
    deals.add_argument("--dry-run", action="store_true", help="validate and report without writing")
    deals.add_argument("--skip-invalid", action="store_true", help="import the valid rows even if some fail")
    deals.add_argument("--engagement", help="engagement slug (when the database holds several)")
    deals.add_argument("--as", dest="as_name", help="the person recorded as importing (default: the CRO)")
    deals.set_defaults(run=cmd_import_deals)

    teams = sub.add_parser("teams", help="Microsoft Teams: the app package").add_subparsers(
        dest="teams_command", required=True, metavar="ACTION"
    )
    package = teams.add_parser("package", help="zip the Teams app package (manifest and icons) for upload")
    package.add_argument("-o", "--output", default="cadence-teams.zip", help="file to write (cadence-teams.zip)")
    package.add_argument("--app-id", help="the bot's Microsoft App ID (default: MicrosoftAppId)")
    package.add_argument("--host", help="the public host serving `cadence run`, for the app's developer links")
    package.set_defaults(run=cmd_teams_package, standalone=True)

    doctor = sub.add_parser(
        "doctor",
        help="check the configuration, database, Slack tokens and scopes, Teams settings and engagements; "
        "print what to fix (exit 1 when something is wrong)",
    )
    doctor.set_defaults(run=cmd_doctor, unstarted=True)

    secrets = sub.add_parser("secrets", help="the key that encrypts stored chat tokens").add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION"
    )
    secrets.add_parser("new-key", help=f"print a new random key for {SECRET_KEY_ENV}").set_defaults(
        run=cmd_secrets_new_key, standalone=True
    )
    secrets.add_parser(
        "reseal",
        help=f"encrypt every stored chat token again with the first key of {SECRET_KEY_ENV} "
        "(after setting a key for the first time, or to rotate: set NEW,OLD, reseal, then drop OLD)",
    ).set_defaults(run=cmd_secrets_reseal)
    return parser


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    if args.database_url:
        settings.database_url = args.database_url
    elif getattr(args, "demo", False):
        settings.database_url = DEMO_URL
    if getattr(args, "standalone", False):
        command: Command = args.run
        return await command(None, args)  # type: ignore[arg-type]
    app = create_app(settings)
    try:
        if not getattr(args, "unstarted", False):  # doctor looks at the database as it is
            await app.start()
        return await args.run(app, args)  # type: ignore[no-any-return]
    finally:
        await app.close()


def _log_level(args: argparse.Namespace, settings: Settings) -> str:
    """--debug wins; then LOG_LEVEL when it is set; else INFO for `cadence run` and WARNING for the rest
    (a console session or a one-off command should not be interleaved with log lines)."""
    if args.debug:
        return "DEBUG"
    if "log_level" in settings.model_fields_set or args.run is cmd_run:
        return settings.log_level
    return "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging(_log_level(args, settings), settings.log_format)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"cadence: error: {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"cadence: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args, settings))
    except (SetupError, EngagementFileError, LookupError, OSError) as exc:
        if args.debug:
            raise
        print(f"cadence: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
